//! Writing with retries: a write that fails for a reason that is not the rows' is held and
//! retried, with capped backoff, until it succeeds or shutdown begins. Nothing is acknowledged
//! or requeued meanwhile: a requeue spends a delivery of each message (a quorum queue
//! dead-letters good messages past its delivery limit), and no new delivery arrives while the
//! prefetch window is full, so memory stays bounded. Readiness reports the held bulk.
//!
//! A bulk that keeps failing with the same SQLSTATE that may be the rows' fault (a statement
//! timeout, a trigger's exception; see [`crate::store::errors`]) is given up as a whole after
//! [`SAME_FAILURE_LIMIT`] tries, so that it is split instead of holding the queue forever. A
//! single message is given up that way (and dead-lettered with the error) only while the
//! database otherwise answers: then the trouble is the message, not the database.

use std::time::Duration;

use tokio::time::Instant;

use super::flush::Flusher;
use crate::{backoff::Backoff, message::Transaction, store::WriteError};

/// Tries of a bulk failing with the same suspect SQLSTATE before it is split.
pub const SAME_FAILURE_LIMIT: u32 = 3;

/// Why a write was given up.
#[derive(Debug)]
pub enum Failure {
    /// The rows were refused (a constraint, a value, a missing parent).
    Refused(WriteError),
    /// The same suspect error again and again.
    Repeated(WriteError),
    /// Shutdown began first: the messages go back to the queue.
    Stopping(WriteError),
}

/// Writes `transactions`, holding on to them through any failure that is not theirs; counters
/// move only once the write is committed and durable.
pub async fn write(flusher: &Flusher, transactions: &[&Transaction]) -> Result<(), Failure> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut failing_since: Option<Instant> = None;
    let mut hold = None;
    let mut same: Option<(String, u32)> = None;
    loop {
        let started = Instant::now();
        let error = match flusher.writer.write(transactions).await {
            Ok(written) => {
                if let Some(since) = failing_since {
                    tracing::info!(
                        held_s = since.elapsed().as_secs_f64(),
                        "the database is back: the held bulk is written"
                    );
                }
                let metrics = &flusher.metrics;
                flusher.health.set_database(true);
                metrics
                    .bulk_duration
                    .observe(started.elapsed().as_secs_f64());
                metrics.statements.inc_by(written.statements);
                metrics.add_committed(written.counts);
                return Ok(());
            }
            Err(error) if error.is_data() => return Err(Failure::Refused(error)),
            Err(error @ WriteError::Unresolved(_)) => return Err(Failure::Stopping(error)),
            Err(error) => error,
        };
        let since = *failing_since.get_or_insert(started);
        hold.get_or_insert_with(|| flusher.health.hold());
        if *flusher.shutdown.borrow() {
            return Err(Failure::Stopping(error));
        }
        if repeated(&mut same, &error) && (transactions.len() > 1 || flusher.health.database()) {
            return Err(Failure::Repeated(error));
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            %error,
            messages = transactions.len(),
            held_s = since.elapsed().as_secs_f64(),
            retry_in_ms = delay.as_millis() as u64,
            "write failed: holding the bulk and retrying"
        );
        flusher.metrics.retries.inc();
        let mut shutdown = flusher.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Err(Failure::Stopping(error)),
        }
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
