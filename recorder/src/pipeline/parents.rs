//! The waiting room: messages whose `parentTransactionId` is not stored yet.
//!
//! The parent may be in a bulk of another recorder that has not committed, or behind the child
//! in this queue. A child waiting in the bulk that delivered it would stop every bulk after it
//! (they are settled in order), and with the prefetch window full the parent could not even be
//! delivered. So a refused child is parked here instead: the bulk settles without it, the
//! session's acknowledgements never reach its tag (see [`crate::broker::settle`]), and this task
//! retries it with backoff, parents first, until it is written (acknowledged), or
//! `BULK_RECORDER_MISSING_PARENT_WAIT_MS` is over (dead-lettered as `missing_parent`), or
//! shutdown begins (returned to the queue, not rejected: its parent may come later).
//!
//! A parked message keeps one unacknowledged delivery of its channel: a window full of children
//! waiting for parents that come later in the same queue is only freed by their deadline.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::{
    collector::Pending,
    flush::{Flusher, parents_first, rejected},
    retry::Failure,
};
use crate::{backoff::Backoff, broker::settle::Settler};

/// Runs until shutdown (parked messages are requeued) or until the session ends (`parked` closed,
/// or the channels gone: the broker redelivers what was not settled).
pub async fn wait_for_parents(
    flusher: Arc<Flusher>,
    settler: Arc<Settler>,
    mut parked: mpsc::UnboundedReceiver<Pending>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut waiting: Vec<(Pending, Instant)> = Vec::new();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let stopping = tokio::select! {
            arrived = parked.recv() => match arrived {
                Some(message) => {
                    waiting.push((message, Instant::now() + flusher.parent_wait));
                    backoff.reset();
                    continue;
                }
                None if waiting.is_empty() => return,
                None => false,
            },
            _ = tokio::time::sleep(backoff.next_delay()), if !waiting.is_empty() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stopping {
            requeue(&settler, waiting).await;
            return;
        }
        match retry(&flusher, &settler, std::mem::take(&mut waiting)).await {
            Some(still) => waiting = still,
            None => return,
        }
    }
}

/// One round over the waiting messages; the ones still waiting, or `None` when the session can
/// no longer settle (or shutdown began: they were requeued).
async fn retry(
    flusher: &Flusher,
    settler: &Settler,
    waiting: Vec<(Pending, Instant)>,
) -> Option<Vec<(Pending, Instant)>> {
    let (messages, deadlines): (Vec<_>, Vec<_>) = waiting.into_iter().unzip();
    let mut deadlines: std::collections::HashMap<_, _> =
        messages.iter().map(|m| m.tag).zip(deadlines).collect();
    let mut still = Vec::new();
    let mut ordered = parents_first(messages).into_iter();
    while let Some(message) = ordered.next() {
        let deadline = deadlines
            .remove(&message.tag)
            .expect("a deadline per message");
        let tag = message.tag;
        let outcome = match flusher.write(std::slice::from_ref(&message)).await {
            Ok(()) => settler.ack_one(tag).await,
            Err(Failure::Refused(error)) if error.is_missing_parent() => {
                if Instant::now() < deadline {
                    still.push((message, deadline));
                    continue;
                }
                let error = format!(
                    "its parent transaction {} was not stored within {:?} \
                     (BULK_RECORDER_MISSING_PARENT_WAIT_MS)",
                    message
                        .transaction
                        .parent_transaction_id
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    flusher.parent_wait
                );
                settler
                    .reject(rejected(message, "missing_parent", error))
                    .await
            }
            Err(Failure::Refused(error) | Failure::Repeated(error)) => {
                settler
                    .reject(rejected(message, "database", error.to_string()))
                    .await
            }
            Err(Failure::Stopping(_)) => {
                let rest = still
                    .into_iter()
                    .chain(std::iter::once((message, deadline)))
                    .chain(ordered.map(|m| (m, Instant::now())));
                requeue(settler, rest.collect()).await;
                return None;
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "cannot settle a message that waited for its parent: the session ends, the broker redelivers it");
            return None;
        }
        settler.unpark(tag);
    }
    Some(still)
}

/// Returns the waiting messages to the queue (shutdown: their parents may come later).
async fn requeue(settler: &Settler, waiting: Vec<(Pending, Instant)>) {
    for (message, _) in waiting {
        if settler.requeue_one(message.tag).await.is_err() {
            return;
        }
        settler.unpark(message.tag);
    }
}
