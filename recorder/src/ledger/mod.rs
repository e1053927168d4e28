//! What the ledger's own consumer does around each message besides writing rows, that a
//! recorder replacing it does too: its metadata in its document store ([`metadata`]), its
//! events ([`events`], bodies in [`event_body`] written as Go writes JSON, [`go_json`]), and its
//! Redis backup acknowledged ([`backup`]).
//!
//! A message is acknowledged only when its metadata is stored and its events are confirmed
//! (each when configured): both are retried, holding the messages and readiness, until they
//! are, or shutdown returns the messages to the queue (their rows are then found stored, and
//! the rest is done again: an upsert that changes nothing, events with the same ids). The Redis
//! cleanup is queued and never waited for (a late one is harmless).

pub mod backup;
pub mod event_body;
pub mod events;
pub mod go_json;
pub mod metadata;
mod redis_client;

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    backoff::Backoff,
    pipeline::collector::Pending,
    telemetry::{health::Health, metrics::Metrics, traces},
};

/// How long a side effect may take before readiness says the messages are held.
const SLOW: Duration = Duration::from_secs(1);

/// The ledger's side effects, each when configured.
#[derive(Default)]
pub struct LedgerSide {
    pub cleanup: Option<backup::Cleanup>,
    pub metadata: Option<metadata::MetadataStore>,
    pub events: Option<events::Events>,
}

/// What the side effects report to.
pub struct Reporting<'a> {
    pub health: &'a Arc<Health>,
    pub metrics: &'a Metrics,
    pub shutdown: &'a watch::Receiver<bool>,
}

impl LedgerSide {
    /// After `messages` were committed: their metadata stored and their events confirmed
    /// (not for the transactions in `conflicting`: their messages changed nothing), the Redis
    /// cleanup queued. False when shutdown came first.
    pub async fn after_commit(
        &self,
        messages: &[Pending],
        conflicting: &[Uuid],
        report: &Reporting<'_>,
    ) -> bool {
        let conflicting: HashSet<Uuid> = conflicting.iter().copied().collect();
        match &self.metadata {
            Some(store) => {
                if !store_metadata(store, messages, &conflicting, report).await {
                    return false;
                }
            }
            None => {
                for message in messages.iter().filter(|m| m.transaction.has_metadata()) {
                    report.metrics.metadata_not_stored();
                    tracing::debug!(transaction_id = %message.transaction.id, "metadata not stored (no MONGODB_URL)");
                }
            }
        }
        if let Some(events) = &self.events
            && !events
                .publish(
                    messages,
                    &conflicting,
                    report.health,
                    report.metrics,
                    report.shutdown,
                )
                .await
        {
            return false;
        }
        if let Some(cleanup) = &self.cleanup {
            cleanup.after_commit(messages);
        }
        true
    }
}

/// Stores the metadata of `messages`, retrying (readiness held) until it is or shutdown.
async fn store_metadata(
    store: &metadata::MetadataStore,
    messages: &[Pending],
    conflicting: &HashSet<Uuid>,
    report: &Reporting<'_>,
) -> bool {
    let mut documents = metadata::Documents::default();
    for t in messages
        .iter()
        .map(|m| &m.transaction)
        .filter(|t| !conflicting.contains(&t.id))
    {
        if let Some(m) = &t.metadata {
            documents.transactions.insert(t.id, m);
        }
        for op in &t.operations {
            if let Some(m) = &op.metadata {
                documents.operations.insert(op.id, m);
            }
        }
    }
    if documents.is_empty() {
        return true;
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut hold = None;
    loop {
        let attempt = traces::step("store metadata", store.store(&documents, report.metrics));
        let mut stop = report.shutdown.clone();
        // Every call is bounded; shutdown does not wait for the bound either.
        let result = tokio::select! {
            result = report.health.hold_while_slow(attempt, SLOW, &mut hold) => result,
            _ = async { drop(stop.wait_for(|s| *s).await) } => return false,
        };
        match result {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(%error, "metadata not stored: holding its messages and retrying");
                hold.get_or_insert_with(|| report.health.hold_aside());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = async { drop(stop.wait_for(|s| *s).await) } => return false,
        }
    }
}
