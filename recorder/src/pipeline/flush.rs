//! Writing one bulk and deciding the fate of each of its messages.
//!
//! - committed: every message is acknowledged (after COMMIT, never before);
//! - the database unavailable, silent or refusing for a reason that is not the rows' fault:
//!   the bulk is held and retried with capped backoff for as long as it takes. Readiness turns
//!   false, and no new delivery arrives meanwhile (the prefetch window is full), so memory
//!   stays bounded. Messages go back to the queue only at shutdown: requeueing on a timer
//!   would spend their delivery limit and dead-letter good messages during a long outage;
//! - refused on data with fallback on: each message is written on its own, parents before
//!   children, so one bad message costs only itself; the bad ones are rejected without requeue
//!   (dead-lettered). A transaction whose parent is not stored yet (in a bulk of another
//!   recorder that has not committed) is retried for `parent_wait`, then rejected as
//!   `missing_parent`;
//! - refused on data with fallback off: the bulk is requeued whole, nothing was committed.

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, time::Instant};

use crate::{
    backoff::Backoff,
    broker::settle::Outcome,
    message::Transaction,
    pipeline::collector::{Bulk, Pending},
    store::{Writer, db::WriteError, merge::generations},
    telemetry::{health::Health, metrics::Metrics},
};

/// Writes bulks; shared by the bulks in flight.
pub struct Flusher {
    pub writer: Writer,
    pub fallback: bool,
    /// How long a transaction whose parent is missing is retried before it is rejected.
    pub parent_wait: Duration,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub shutdown: watch::Receiver<bool>,
}

impl Flusher {
    /// Writes `bulk` and returns what to settle; never returns before the rows are committed,
    /// refused, or given back at shutdown.
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
            Err(error) if error.is_data() && self.fallback => {
                tracing::warn!(messages = bulk.messages.len(), %error, "bulk refused on data, writing its messages one by one");
                self.metrics.fallbacks.inc();
                self.one_at_a_time(&bulk.messages).await
            }
            Err(error) if error.is_data() => {
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
            Err(error) => {
                tracing::warn!(messages = bulk.messages.len(), %error, "shutting down with a bulk not written: returning its messages to the queue");
                Outcome {
                    requeue: tags(),
                    ..Default::default()
                }
            }
        }
    }

    async fn one_at_a_time(&self, messages: &[Pending]) -> Outcome {
        let mut outcome = Outcome::default();
        let mut waiting = Vec::new();
        let ordered = parents_first(messages);
        for (n, message) in ordered.iter().enumerate() {
            match self.write_with_retry(&[&message.transaction]).await {
                Ok(()) => outcome.ack.push(message.tag),
                Err(error) if error.is_missing_parent() => waiting.push(*message),
                Err(error) if error.is_data() => {
                    self.reject(message, "database", &error, &mut outcome)
                }
                Err(_) => {
                    // Shutdown: this one, those not tried and those waiting go back.
                    outcome.requeue.extend(ordered[n..].iter().map(|m| m.tag));
                    outcome.requeue.extend(waiting.iter().map(|m| m.tag));
                    return outcome;
                }
            }
        }
        if !waiting.is_empty() {
            self.wait_for_parents(waiting, &mut outcome).await;
        }
        outcome
    }

    /// Retries transactions whose parent is not stored yet until it is, or `parent_wait` is
    /// over. Its parent may be in another recorder's bulk that has not committed yet.
    async fn wait_for_parents(&self, mut waiting: Vec<&Pending>, outcome: &mut Outcome) {
        tracing::info!(
            transactions = waiting.len(),
            wait_ms = self.parent_wait.as_millis() as u64,
            "transactions whose parent is not stored yet: waiting for it"
        );
        let deadline = Instant::now() + self.parent_wait;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                for message in waiting {
                    let error = format!(
                        "its parent transaction {} was not stored within {:?} \
                         (BULK_RECORDER_MISSING_PARENT_WAIT_MS)",
                        message
                            .transaction
                            .parent_transaction_id
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        self.parent_wait
                    );
                    self.reject(message, "missing_parent", &error, outcome);
                }
                return;
            }
            self.pause(backoff.next_delay().min(left)).await;
            let mut still = Vec::with_capacity(waiting.len());
            for (n, message) in waiting.iter().enumerate() {
                match self.write_with_retry(&[&message.transaction]).await {
                    Ok(()) => outcome.ack.push(message.tag),
                    Err(error) if error.is_missing_parent() => still.push(*message),
                    Err(error) if error.is_data() => {
                        self.reject(message, "database", &error, outcome)
                    }
                    Err(_) => {
                        outcome.requeue.extend(still.iter().map(|m| m.tag));
                        outcome.requeue.extend(waiting[n..].iter().map(|m| m.tag));
                        return;
                    }
                }
            }
            waiting = still;
        }
    }

    fn reject(
        &self,
        message: &Pending,
        reason: &'static str,
        error: &dyn std::fmt::Display,
        outcome: &mut Outcome,
    ) {
        tracing::warn!(
            delivery_tag = message.tag.delivery,
            message_id = message.message_id.as_deref().unwrap_or(""),
            transaction_id = %message.transaction.id,
            reason,
            %error,
            "message rejected: its rows were refused by PostgreSQL"
        );
        self.metrics.reject(reason);
        outcome.reject.push(message.tag);
    }

    /// Writes, holding on to the rows through any failure that is not theirs, until they are
    /// committed or shutdown begins; counters move after COMMIT only.
    async fn write_with_retry(&self, transactions: &[&Transaction]) -> Result<(), WriteError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failing_since: Option<Instant> = None;
        loop {
            let started = Instant::now();
            match self.writer.write(transactions).await {
                Ok(written) => {
                    if let Some(since) = failing_since {
                        tracing::info!(
                            held_s = since.elapsed().as_secs_f64(),
                            "the database is back: the held bulk is written"
                        );
                        self.health.set_holding(false);
                    }
                    self.health.set_database(true);
                    self.metrics
                        .bulk_duration
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.statements.inc_by(written.statements);
                    self.metrics.add_committed(written.counts);
                    return Ok(());
                }
                Err(error) if error.is_data() => {
                    if failing_since.is_some() {
                        self.health.set_holding(false);
                    }
                    return Err(error);
                }
                Err(error) => {
                    let since = *failing_since.get_or_insert(started);
                    self.health.set_holding(true);
                    if *self.shutdown.borrow() {
                        self.health.set_holding(false);
                        return Err(error);
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        %error,
                        messages = transactions.len(),
                        held_s = since.elapsed().as_secs_f64(),
                        retry_in_ms = delay.as_millis() as u64,
                        "write failed: holding the bulk and retrying"
                    );
                    self.metrics.retries.inc();
                    self.pause(delay).await;
                }
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

/// The messages in an order that writes each parent before its children, arrival order
/// otherwise.
fn parents_first(messages: &[Pending]) -> Vec<&Pending> {
    let ids: Vec<_> = messages.iter().map(|m| m.transaction.id).collect();
    let parents: Vec<_> = messages
        .iter()
        .map(|m| m.transaction.parent_transaction_id)
        .collect();
    let depths = generations(&ids, &parents);
    let mut ordered: Vec<(usize, &Pending)> = depths.into_iter().zip(messages).collect();
    ordered.sort_by_key(|(depth, _)| *depth);
    ordered.into_iter().map(|(_, m)| m).collect()
}
