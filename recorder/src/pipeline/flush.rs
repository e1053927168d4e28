//! Writing one bulk and deciding the fate of each of its messages.
//!
//! - committed (and durable as the server is configured): every message is acknowledged;
//! - the database unavailable, silent or refusing for a reason that is not the rows' fault:
//!   the bulk is held and retried with capped backoff for as long as it takes ([`retry`]);
//!   messages go back to the queue only when the shutdown's budget runs out
//!   ([`crate::shutdown`]);
//! - refused on data, or failing again and again with the same error that may be the rows'
//!   (a statement timeout, a trigger's exception): the bulk is split and each part written on
//!   its own, parents before children, so one bad message costs only itself. With
//!   `BULK_RECORDER_FALLBACK_ENABLED` (the default) the parts are single messages; without it
//!   the bulk is halved until the refused message stands alone (no one-message writes for
//!   the good ones, no endless requeue). A message refused alone is dead-lettered with the
//!   database's error; one failing alone again and again is tried again after its siblings,
//!   and dead-lettered only once another write committed meanwhile ([`retry`]);
//! - a transaction whose parent is not stored yet (in another recorder's bulk that has not
//!   committed, or in a later message of this queue) is handed to the waiting room
//!   ([`super::parents`]) and settled from there, without holding anything else back.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use super::{
    after_commit::AfterCommit,
    collector::Pending,
    retry::{Failure, WritePath},
};
use crate::{
    broker::settle::{Rejected, Settlement},
    message::Transaction,
    pipeline::collector::Bulk,
    shutdown::Shutdown,
    store::{Writer, statements::merge::generations},
    telemetry::{
        health::Health,
        metrics::Metrics,
        traces::{self, Traces},
    },
};

/// Writes bulks; shared by the bulks in flight and the waiting room.
pub struct Flusher {
    pub writer: Writer,
    pub fallback: bool,
    /// How long a transaction whose parent is missing waits; zero: it is rejected at once.
    pub parent_wait: Duration,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
    /// What the ledger's consumer does after a commit (metadata, events, its Redis backup).
    pub after_commit: AfterCommit,
    /// Spans, when traces are on.
    pub traces: Option<Arc<Traces>>,
    /// The queue, for spans.
    pub queue: String,
}

/// What became of a bulk: what to tell the broker now, and the messages waiting for a parent.
#[derive(Debug, Default)]
pub struct Flushed {
    pub settlement: Settlement,
    pub parked: Vec<Pending>,
}

impl Flusher {
    /// Writes `bulk` and decides each message's fate; never returns before its rows are
    /// committed and durable, refused, parked, or given back at shutdown. Traced as one span.
    pub async fn flush(&self, bulk: Bulk) -> Flushed {
        let span = self
            .traces
            .as_ref()
            .map(|traces| traces.bulk(&self.queue, bulk.messages.iter().map(|m| &m.context)));
        traces::within(span, self.flush_untraced(bulk)).await
    }

    async fn flush_untraced(&self, bulk: Bulk) -> Flushed {
        self.metrics.flushed(bulk.trigger, bulk.messages.len());
        let mut flushed = Flushed::default();
        let mut groups = VecDeque::from([(parents_first(bulk.messages), None)]);
        let mut split = false;
        while let Some((group, suspect_since)) = groups.pop_front() {
            match self.write(&group, suspect_since).await {
                Ok(()) => flushed.ack(group),
                Err(Failure::Stopping(error)) => {
                    let left = group.len() + groups.iter().map(|(g, _)| g.len()).sum::<usize>();
                    tracing::warn!(%error, messages = left, "the shutdown's budget ran out with messages not done: returning them to the queue");
                    self.metrics.shutdown_requeued.inc_by(left as u64);
                    flushed.requeue(group);
                    groups.into_iter().for_each(|(g, _)| flushed.requeue(g));
                    break;
                }
                Err(Failure::Deferred(error, since)) => {
                    tracing::warn!(
                        %error,
                        request_id = group[0].context.request_id(),
                        transaction_id = %group[0].transaction.id,
                        "a message fails alone again and again: writing the others first"
                    );
                    groups.push_back((group, Some(since)));
                }
                Err(Failure::Refused(error) | Failure::Repeated(error)) if group.len() == 1 => {
                    let message = group.into_iter().next().expect("one message");
                    self.refused_alone(message, &error, &mut flushed);
                }
                Err(Failure::Refused(error) | Failure::Repeated(error)) => {
                    if !split {
                        split = true;
                        self.metrics.fallbacks.inc();
                    }
                    tracing::warn!(messages = group.len(), %error, fallback = self.fallback, "bulk refused: writing it in parts");
                    for part in self.parts(group).into_iter().rev() {
                        groups.push_front((part, None));
                    }
                }
            }
        }
        flushed
    }

    /// Writes the transactions of `messages` (see [`WritePath::write`] for `suspect_since`),
    /// then what the ledger's consumer leaves besides (its metadata, its events: both before
    /// the acknowledgement; its Redis backup cleanup, queued).
    pub async fn write(
        &self,
        messages: &[Pending],
        suspect_since: Option<u64>,
    ) -> Result<(), Failure> {
        let transactions: Vec<&Transaction> = messages.iter().map(|m| &*m.transaction).collect();
        let conflicting = self
            .write_path()
            .write(&transactions, suspect_since)
            .await?;
        self.after_commit
            .run(messages, &conflicting)
            .await
            .map_err(|_| {
                Failure::Stopping(crate::store::WriteError::Unresolved(
                    "the rows are committed, but not yet their metadata or events",
                ))
            })
    }

    fn write_path(&self) -> WritePath<'_> {
        WritePath {
            writer: &self.writer,
            health: &self.health,
            metrics: &self.metrics,
            shutdown: &self.shutdown,
        }
    }

    /// A bulk refused as a whole, in the parts to write next: single messages (fallback) or
    /// halves.
    fn parts(&self, group: Vec<Pending>) -> Vec<Vec<Pending>> {
        if self.fallback {
            return group.into_iter().map(|m| vec![m]).collect();
        }
        let mut first = group;
        let second = first.split_off(first.len() / 2);
        vec![first, second]
    }

    /// A message refused on its own: it waits for its parent, or it is dead-lettered.
    fn refused_alone(
        &self,
        message: Pending,
        error: &crate::store::WriteError,
        flushed: &mut Flushed,
    ) {
        if error.is_missing_parent() && !self.parent_wait.is_zero() {
            tracing::info!(
                transaction_id = %message.transaction.id,
                request_id = message.context.request_id(),
                parent = ?message.transaction.parent_transaction_id,
                "its parent transaction is not stored yet: waiting for it"
            );
            flushed.parked.push(message);
            return;
        }
        let reason = if error.is_missing_parent() {
            "missing_parent"
        } else {
            "database"
        };
        let rejected = self.rejected(message, reason, error.to_string());
        flushed.settlement.reject.push(rejected);
    }

    /// A message to dead-letter, logged and traced with what identifies it.
    pub fn rejected(&self, message: Pending, reason: &'static str, error: String) -> Rejected {
        if let Some(traces) = &self.traces {
            traces.rejected(&message.context, &self.queue, reason, &error);
        }
        rejected(message, reason, error)
    }
}

impl Flushed {
    fn ack(&mut self, group: Vec<Pending>) {
        self.settlement.ack.extend(group.iter().map(|m| m.tag));
    }

    fn requeue(&mut self, group: Vec<Pending>) {
        self.settlement.requeue.extend(group.iter().map(|m| m.tag));
    }
}

/// A message to dead-letter, logged with what identifies it.
fn rejected(message: Pending, reason: &'static str, error: String) -> Rejected {
    tracing::warn!(
        delivery_tag = message.tag.delivery,
        message_id = message.message_id.as_deref().unwrap_or(""),
        request_id = message.context.request_id(),
        transaction_id = %message.transaction.id,
        reason,
        %error,
        "message rejected: its rows were refused by PostgreSQL"
    );
    Rejected {
        tag: message.tag,
        reason,
        error,
        raw: message.raw,
    }
}

/// The messages in an order that writes each parent before its children, arrival order
/// otherwise.
pub fn parents_first(messages: Vec<Pending>) -> Vec<Pending> {
    let ids: Vec<_> = messages.iter().map(|m| m.transaction.id).collect();
    let parents: Vec<_> = messages
        .iter()
        .map(|m| m.transaction.parent_transaction_id)
        .collect();
    let depths = generations(&ids, &parents);
    let mut ordered: Vec<(usize, Pending)> = depths.into_iter().zip(messages).collect();
    ordered.sort_by_key(|(depth, _)| *depth);
    ordered.into_iter().map(|(_, m)| m).collect()
}
