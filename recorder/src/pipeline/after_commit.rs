//! After the COMMIT, one stage: what the ledger's consumer leaves besides rows, before the
//! messages are acknowledged. Its metadata in the document store ([`crate::ledger::metadata`])
//! and its events ([`crate::ledger::events`]) are each a step of the one policy
//! ([`super::policy`]): retried until done, holding the bulk's settlement (and every clock that
//! leads to a dead letter) meanwhile, given up only when the shutdown's budget runs out. The
//! dead-letter outbox follows the same policy, holding only its own message. The Redis cleanup
//! ([`crate::ledger::backup`]) is queued, never waited for (a late one is harmless).

use std::{collections::HashSet, sync::Arc};

use uuid::Uuid;

use super::{
    collector::Pending,
    policy::{Expired, Policy},
};
use crate::{
    ledger::{backup::Cleanup, events, events::Events, metadata, metadata::MetadataStore},
    telemetry::metrics::Metrics,
};

/// The ledger's side effects, each when configured, and the policy they follow.
pub struct AfterCommit {
    pub metadata: Option<MetadataStore>,
    pub events: Option<Events>,
    pub cleanup: Option<Cleanup>,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
}

impl AfterCommit {
    /// After `messages` were committed: their documents stored and their events confirmed
    /// (not for the transactions in `conflicting`: their messages changed nothing), then the
    /// Redis cleanup queued. `Expired` when the shutdown's budget ran out first.
    pub async fn run(&self, messages: &[Pending], conflicting: &[Uuid]) -> Result<(), Expired> {
        let conflicting: HashSet<Uuid> = conflicting.iter().copied().collect();
        match &self.metadata {
            Some(store) => {
                if let Some(mut work) = store.prepare(messages, &conflicting, &self.metrics) {
                    self.policy.until_done(&metadata::STEP, &mut work).await?;
                }
            }
            None => self.count_not_stored(messages, &conflicting),
        }
        if let Some(events) = &self.events
            && let Some(mut work) = events.prepare(messages, &conflicting, &self.metrics)
        {
            self.policy.until_done(&events::STEP, &mut work).await?;
        }
        if let Some(cleanup) = &self.cleanup {
            cleanup.after_commit(messages);
        }
        Ok(())
    }

    /// Without `MONGODB_URL`: the messages whose metadata is not kept anywhere (a conflicting
    /// one changed nothing, so it loses nothing).
    fn count_not_stored(&self, messages: &[Pending], conflicting: &HashSet<Uuid>) {
        for message in messages
            .iter()
            .filter(|m| m.transaction.has_metadata() && !conflicting.contains(&m.transaction.id))
        {
            self.metrics.metadata_not_stored();
            tracing::debug!(transaction_id = %message.transaction.id, "metadata not stored (no MONGODB_URL)");
        }
    }
}
