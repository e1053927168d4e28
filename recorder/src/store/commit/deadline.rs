//! One deadline for all the round-trips of a write, so that a silent connection (half-open, or a
//! server that stopped answering) fails the write instead of stalling the pipeline.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use super::errors::WriteError;

/// The time a write may take, all its round-trips together.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// Awaits one database call, at most until the deadline.
    pub async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, WriteError> {
        match tokio::time::timeout_at(self.at, call).await {
            Ok(result) => result.map_err(WriteError::classify),
            Err(_) => Err(WriteError::TimedOut(self.budget, what)),
        }
    }
}
