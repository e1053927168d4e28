//! Writing with retries: a write that fails for a reason that is not the rows' is held and
//! retried, with capped backoff, until it succeeds or the shutdown's budget is spent
//! ([`crate::shutdown`]): the same rule as every step after the commit ([`super::policy`]).
//! Nothing is acknowledged or requeued meanwhile: a requeue spends a delivery of each message
//! (a quorum queue dead-letters good messages past its delivery limit), and no new delivery
//! arrives while the prefetch window is full, so memory stays bounded. Readiness reports the
//! held bulk.
//!
//! A bulk that keeps failing with the same SQLSTATE that may be the rows' fault (a statement
//! timeout, a trigger's exception; see [`crate::store::commit::errors`]) is given up as a whole after
//! [`SAME_FAILURE_LIMIT`] tries, so that it is split instead of holding the queue forever. A
//! single message is given up that way (and dead-lettered with the error) only on evidence
//! from the write path that the database takes other writes: another write committed after
//! this message first failed. Without it the message is deferred once (its siblings are tried
//! first) and then held. A cancelled statement (57014: a statement timeout, an administrator's
//! cancel) is load, not data: a single message is deferred, then held, never given up for it.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    backoff::Backoff,
    message::Transaction,
    shutdown::Shutdown,
    store::{WriteError, Writer},
    telemetry::{health::Health, metrics::Metrics},
};

/// Tries of a bulk failing with the same suspect SQLSTATE before it is split.
pub const SAME_FAILURE_LIMIT: u32 = 3;

/// `query_canceled`: a statement timeout or an administrator's cancel.
const QUERY_CANCELED: &str = "57014";

/// Why a write was given up.
#[derive(Debug)]
pub enum Failure {
    /// The rows were refused (a constraint, a value, a missing parent).
    Refused(WriteError),
    /// The same suspect error again and again (for a single message: while other writes
    /// commit).
    Repeated(WriteError),
    /// A single message failing again and again with no evidence yet that other writes pass:
    /// try its siblings first, then write it again with this commit count as `suspect_since`.
    Deferred(WriteError, u64),
    /// The shutdown's budget ran out first: the messages go back to the queue.
    Stopping(WriteError),
}

/// What a held write needs.
pub struct WritePath<'a> {
    pub writer: &'a Writer,
    pub health: &'a Arc<Health>,
    pub metrics: &'a Metrics,
    pub shutdown: &'a Shutdown,
}

impl WritePath<'_> {
    /// Writes `transactions`, holding on to them through any failure that is not theirs;
    /// counters move only once the write is committed and durable. `suspect_since`: for a
    /// message deferred before, the commit count when it first failed. Returns the
    /// transactions found stored with other content.
    pub async fn write(
        &self,
        transactions: &[&Transaction],
        mut suspect_since: Option<u64>,
    ) -> Result<Vec<uuid::Uuid>, Failure> {
        let deferred_before = suspect_since.is_some();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failing_since: Option<Instant> = None;
        let mut hold = None;
        let mut same: Option<(String, u32)> = None;
        loop {
            let started = Instant::now();
            let error = match self.writer.write(transactions).await {
                Ok(written) => {
                    self.written(&written, started, failing_since);
                    return Ok(written.conflicting);
                }
                Err(error) if error.is_data() => return Err(Failure::Refused(error)),
                Err(error @ WriteError::Unresolved(_)) => return Err(Failure::Stopping(error)),
                Err(error) => error,
            };
            let since = *failing_since.get_or_insert(started);
            let commits_before = *suspect_since.get_or_insert(self.health.commits());
            hold.get_or_insert_with(|| self.health.hold());
            if self.shutdown.expired() {
                return Err(Failure::Stopping(error));
            }
            if repeated(&mut same, &error) {
                if transactions.len() > 1 {
                    return Err(Failure::Repeated(error));
                }
                let cancelled = error.suspect_code().as_deref() == Some(QUERY_CANCELED);
                if !cancelled && self.health.commits() > commits_before {
                    return Err(Failure::Repeated(error));
                }
                if !deferred_before {
                    return Err(Failure::Deferred(error, commits_before));
                }
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
            if !self.shutdown.pause(delay).await {
                return Err(Failure::Stopping(error));
            }
        }
    }

    fn written(
        &self,
        written: &crate::store::Written,
        started: Instant,
        failing_since: Option<Instant>,
    ) {
        if let Some(since) = failing_since {
            tracing::info!(
                held_s = since.elapsed().as_secs_f64(),
                "the database is back: the held bulk is written"
            );
        }
        self.health.set_database(true);
        self.health.committed();
        self.metrics
            .bulk_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.statements.inc_by(written.statements);
        self.metrics.add_committed(written.counts);
    }
}

/// Counts consecutive failures with the same suspect SQLSTATE; true at the limit.
fn repeated(same: &mut Option<(String, u32)>, error: &WriteError) -> bool {
    match (error.suspect_code(), same.as_mut()) {
        (Some(code), Some((last, count))) if *last == code => {
            *count += 1;
            *count >= SAME_FAILURE_LIMIT
        }
        (Some(code), _) => {
            *same = Some((code, 1));
            false
        }
        (None, _) => {
            *same = None;
            false
        }
    }
}
