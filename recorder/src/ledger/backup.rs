//! The ledger's Redis backup (stub until the Redis client lands).

use std::sync::Arc;

use crate::{config::RedisConfig, pipeline::collector::Pending, telemetry::metrics::Metrics};

pub struct Cleanup;

impl Cleanup {
    pub async fn start(_: &RedisConfig, _: Arc<Metrics>) -> Self {
        Cleanup
    }

    pub async fn after_commit(&self, _messages: &[Pending]) {}
}
