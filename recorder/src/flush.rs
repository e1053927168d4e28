//! Writing one bulk and deciding the fate of each of its messages.
//!
//! - committed: every message is acknowledged (after COMMIT, never before);
//! - refused on data with fallback on: each message is written on its own, so one bad message
//!   costs only itself; the bad ones are rejected without requeue (dead-lettered);
//! - refused on data with fallback off: the bulk is requeued whole, nothing was committed;
//! - the database unavailable: retried with capped backoff, nothing acknowledged meanwhile;
//!   after `retry_for`, or at shutdown, the messages are requeued.

use std::{sync::Arc, time::Duration};

use lapin::Channel;
use tokio::{sync::watch, time::Instant};

use crate::{
    backoff::Backoff,
    broker::{self, Tag},
    collector::{Bulk, Pending},
    db::WriteError,
    health::Health,
    message::Transaction,
    metrics::Metrics,
    store::Writer,
};

/// What to tell the broker about each message of a bulk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub ack: Vec<Tag>,
    pub reject: Vec<Tag>,
    pub requeue: Vec<Tag>,
}

/// Writes bulks; shared by the bulks in flight.
pub struct Flusher {
    pub writer: Writer,
    pub fallback: bool,
    pub retry_for: Duration,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: watch::Receiver<bool>,
}

impl Flusher {
    /// Writes `bulk` and returns what to settle; never returns before the rows are committed
    /// or given up on.
    pub async fn flush(&self, bulk: Bulk) -> Outcome {
        self.metrics.flushed(bulk.trigger, bulk.messages.len());
        let tags = || bulk.messages.iter().map(|m| m.tag).collect::<Vec<_>>();
        let transactions: Vec<&Transaction> =
            bulk.messages.iter().map(|m| &m.transaction).collect();
        match self.write_with_retry(&transactions).await {
            Ok(()) => Outcome {
                ack: tags(),
                ..Default::default()
            },
            Err(WriteError::Data(error)) if self.fallback => {
                tracing::warn!(messages = bulk.messages.len(), %error, "bulk refused on data, writing its messages one by one");
                self.metrics.fallbacks.inc();
                self.one_at_a_time(&bulk.messages).await
            }
            Err(WriteError::Data(error)) => {
                tracing::error!(
                    messages = bulk.messages.len(), %error,
                    "bulk refused on data and BULK_RECORDER_FALLBACK_ENABLED=false: requeueing it whole"
                );
                // Do not spin on a poison bulk: it will come straight back.
                self.pause(Duration::from_secs(1)).await;
                Outcome {
                    requeue: tags(),
                    ..Default::default()
                }
            }
            Err(WriteError::Transient(error)) => {
                tracing::error!(messages = bulk.messages.len(), %error, "giving up on this bulk for now: requeueing it");
                Outcome {
                    requeue: tags(),
                    ..Default::default()
                }
            }
        }
    }

    async fn one_at_a_time(&self, messages: &[Pending]) -> Outcome {
        let mut outcome = Outcome::default();
        for (i, message) in messages.iter().enumerate() {
            match self.write_with_retry(&[&message.transaction]).await {
                Ok(()) => outcome.ack.push(message.tag),
                Err(WriteError::Data(error)) => {
                    tracing::warn!(
                        delivery_tag = message.tag.delivery,
                        message_id = message.message_id.as_deref().unwrap_or(""),
                        transaction_id = %message.transaction.id,
                        reason = "database",
                        %error,
                        "message rejected: its rows were refused by PostgreSQL"
                    );
                    self.metrics.reject("database");
                    outcome.reject.push(message.tag);
                }
                Err(WriteError::Transient(_)) => {
                    outcome.requeue.extend(messages[i..].iter().map(|m| m.tag));
                    break;
                }
            }
        }
        outcome
    }

    /// Writes, retrying transient failures with capped backoff; counters move after COMMIT.
    async fn write_with_retry(&self, transactions: &[&Transaction]) -> Result<(), WriteError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let first_failure = Instant::now();
        loop {
            let started = Instant::now();
            match self.writer.write(transactions).await {
                Ok(written) => {
                    self.health.set_database(true);
                    self.metrics
                        .bulk_duration
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.statements.inc_by(written.statements);
                    self.metrics.add_committed(written.counts);
                    return Ok(());
                }
                Err(WriteError::Transient(error)) => {
                    self.health.set_database(false);
                    if first_failure.elapsed() >= self.retry_for || *self.shutdown.borrow() {
                        return Err(WriteError::Transient(error));
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "database unavailable, retrying");
                    self.metrics.retries.inc();
                    self.pause(delay).await;
                }
                Err(data) => return Err(data),
            }
        }
    }

    /// Sleeps, waking early at shutdown.
    async fn pause(&self, delay: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

/// Tells the broker. Rejections go first and one by one; then, when nothing is requeued, one
/// `multiple=true` ack per channel covers the rest. A mixed outcome settles each tag alone so
/// that an ack can never cover a message being returned.
pub async fn settle(channels: &[Channel], outcome: Outcome) -> Result<(), lapin::Error> {
    for tag in &outcome.reject {
        broker::reject(&channels[tag.channel], tag.delivery).await?;
    }
    if outcome.requeue.is_empty() {
        return broker::ack_up_to(channels, outcome.ack).await;
    }
    if outcome.ack.is_empty() && outcome.reject.is_empty() {
        return broker::requeue_up_to(channels, outcome.requeue).await;
    }
    for tag in outcome.ack {
        broker::ack_one(&channels[tag.channel], tag.delivery).await?;
    }
    for tag in outcome.requeue {
        broker::requeue_one(&channels[tag.channel], tag.delivery).await?;
    }
    Ok(())
}
