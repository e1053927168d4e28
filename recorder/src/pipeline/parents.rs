//! The waiting room: messages whose `parentTransactionId` is not stored yet.
//!
//! The parent may be in a bulk of another recorder that has not committed, or behind the child
//! in this queue. A child waiting in the bulk that delivered it would stop every bulk after it
//! (they are settled in order), and with the prefetch window full the parent could not even be
//! delivered. So a refused child is parked here instead: the bulk settles without it, the
//! session's acknowledgements never reach its tag (see [`crate::broker::settle`]), and this task
//! retries it with backoff, parents first, until it is written (acknowledged), or
//! `BULK_RECORDER_MISSING_PARENT_WAIT_MS` is over (dead-lettered as `missing_parent`).
//!
//! At shutdown it keeps going until the session's last bulk is settled (the parent may be in
//! it), tries every child once more, and returns those still waiting to the queue (not
//! rejected: their parents may come later); all of it within the shutdown's budget.
//!
//! The wait is counted on the writes' clock ([`crate::telemetry::health`]): time during which
//! writes went through. While the database is down or a bulk's settlement is held (a write,
//! its documents, its events), the parent's own bulk may be the one held, so the wait does not
//! run; after an outage every child is tried again before its wait can end.
//!
//! A parked message keeps one unacknowledged delivery of its channel: a window full of children
//! waiting for parents that come later in the same queue is only freed by their deadline.
//!
//! The task ends with an error when it cannot settle (the session's channels are gone): the
//! session ends with it and reconnects, and the broker redelivers what was not settled.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::{
    collector::Pending,
    flush::{Flusher, parents_first},
    retry::Failure,
};
use crate::{
    backoff::Backoff,
    broker::settle::{SettleError, Settler},
    shutdown::Shutdown,
};

/// A child and the writes' clock when it was parked.
struct Waiting {
    message: Pending,
    parked_at: Duration,
}

/// What woke the waiting room.
enum Wake {
    /// Boxed: a parked child is rare, and the other variants are empty.
    Arrived(Box<Pending>),
    /// The session settled its last bulk: no more children come.
    SessionOver,
    Retry,
    Expired,
}

/// Runs until the session's settlement ends (`parked` closed) and no child waits, or, at
/// shutdown, until the children left after a last try are returned to the queue; an error when
/// a message cannot be settled (the session must end).
pub async fn wait_for_parents(
    flusher: Arc<Flusher>,
    settler: Arc<Settler>,
    mut parked: mpsc::UnboundedReceiver<Pending>,
    shutdown: Shutdown,
) -> Result<(), SettleError> {
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut session_over = false;
    let ended = loop {
        flusher.metrics.parked.set(waiting.len() as i64);
        let wake = tokio::select! {
            arrived = parked.recv(), if !session_over => arrived.map_or(Wake::SessionOver, |m| Wake::Arrived(Box::new(m))),
            _ = tokio::time::sleep(backoff.next_delay()), if !waiting.is_empty() => Wake::Retry,
            _ = shutdown.wait_expired() => Wake::Expired,
        };
        match wake {
            Wake::Arrived(message) => {
                let parked_at = flusher.health.write_clock();
                waiting.push(Waiting {
                    message: *message,
                    parked_at,
                });
                backoff.reset();
                continue;
            }
            Wake::Expired => break requeue(&flusher, &settler, waiting).await,
            Wake::SessionOver => session_over = true,
            Wake::Retry => {}
        }
        if waiting.is_empty() {
            if session_over {
                break Ok(());
            }
            continue;
        }
        match retry(&flusher, &settler, std::mem::take(&mut waiting)).await {
            Ok(Some(still)) if session_over && shutdown.requested() => {
                break requeue(&flusher, &settler, still).await;
            }
            Ok(Some(still)) => waiting = still,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    flusher.metrics.parked.set(0);
    ended
}

/// One round over the waiting messages; the ones still waiting, or `None` when the shutdown's
/// budget ran out (they were requeued).
async fn retry(
    flusher: &Flusher,
    settler: &Settler,
    waiting: Vec<Waiting>,
) -> Result<Option<Vec<Waiting>>, SettleError> {
    let mut parked_at: std::collections::HashMap<_, _> = waiting
        .iter()
        .map(|w| (w.message.tag, w.parked_at))
        .collect();
    let messages = waiting.into_iter().map(|w| w.message).collect();
    let mut still = Vec::new();
    let mut ordered = parents_first(messages).into_iter();
    while let Some(message) = ordered.next() {
        let parked_at = parked_at.remove(&message.tag).expect("one per message");
        let tag = message.tag;
        // Evidence for a failing write: other bulks commit while it waits here.
        let since = Some(flusher.health.commits());
        match flusher.write(std::slice::from_ref(&message), since).await {
            Ok(()) => {
                settler.ack_one(tag).await?;
                settler.unpark(tag);
            }
            Err(Failure::Refused(error)) if error.is_missing_parent() => {
                let waited = flusher.health.write_clock().saturating_sub(parked_at);
                if waited < flusher.parent_wait {
                    still.push(Waiting { message, parked_at });
                    continue;
                }
                let error = format!(
                    "its parent transaction {} was not stored within {:?} of writes going \
                     through (BULK_RECORDER_MISSING_PARENT_WAIT_MS)",
                    message
                        .transaction
                        .parent_transaction_id
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    flusher.parent_wait
                );
                // Parked until its dead letter is confirmed (see `Settler::reject`).
                settler
                    .reject(flusher.rejected(message, "missing_parent", error))
                    .await?;
            }
            // Not returned when evidence is asked from the start; waits like a missing parent.
            Err(Failure::Deferred(..)) => still.push(Waiting { message, parked_at }),
            Err(Failure::Refused(error) | Failure::Repeated(error)) => {
                settler
                    .reject(flusher.rejected(message, "database", error.to_string()))
                    .await?;
            }
            Err(Failure::Stopping(_)) => {
                let rest = still
                    .into_iter()
                    .chain(std::iter::once(Waiting { message, parked_at }))
                    .chain(ordered.map(|message| Waiting {
                        message,
                        parked_at: Duration::ZERO,
                    }));
                requeue(flusher, settler, rest.collect()).await?;
                return Ok(None);
            }
        }
    }
    Ok(Some(still))
}

/// Returns the waiting messages to the queue (shutdown: their parents may come later).
async fn requeue(
    flusher: &Flusher,
    settler: &Settler,
    waiting: Vec<Waiting>,
) -> Result<(), SettleError> {
    if !waiting.is_empty() {
        tracing::info!(
            messages = waiting.len(),
            "shutting down with children still waiting for their parents: returning them to the queue"
        );
        flusher
            .metrics
            .shutdown_requeued
            .inc_by(waiting.len() as u64);
    }
    for Waiting { message, .. } in waiting {
        settler.requeue_one(message.tag).await?;
        settler.unpark(message.tag);
    }
    Ok(())
}
