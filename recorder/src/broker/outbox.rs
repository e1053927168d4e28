//! The dead-letter outbox: a rejected message leaves the pipeline at once, and its copy is
//! published here, on the dead letters' own connection, one at a time.
//!
//! The message stays unacknowledged (parked: no `multiple=true` settlement reaches it) until
//! the broker confirms its copy; then it is acknowledged alone. A copy the broker does not
//! confirm within [`OVERDUE`] (a memory or disk alarm blocks publishers) or refuses (a target
//! that routes nowhere) holds readiness off and is tried again with backoff, for as long as it
//! takes: the bulks around it go on, acknowledged as usual. At shutdown each copy gets
//! [`super::CLOSE_TIMEOUT`]; the messages whose copy is not confirmed go back to the queue.
//!
//! `bulk_recorder_messages_rejected_total` and `..._dead_lettered_total` move once the
//! original is acknowledged, once per message whatever the tries.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};

use super::{
    dead_letter::{DeadLetterError, DeadLetters, Target},
    settle::{Rejected, SettleError, Settler},
};
use crate::{
    backoff::Backoff,
    telemetry::{health::Health, metrics::Metrics},
};

/// How long a copy may wait for its confirm before readiness goes off.
pub const OVERDUE: Duration = Duration::from_secs(5);

/// Where the outbox publishes, and what it reports to.
pub struct Outbox {
    pub url: String,
    pub queue: String,
    pub target: Target,
    pub pod: String,
    pub settler: Arc<Settler>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

impl Outbox {
    /// Runs (with `publisher` opened by the session, or none yet) until `letters` is closed (every copy published, or given back at shutdown); an
    /// error when the original cannot be settled any more (the session is over).
    pub async fn run(
        self,
        mut publisher: Option<DeadLetters>,
        mut letters: mpsc::UnboundedReceiver<Rejected>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), SettleError> {
        while let Some(letter) = letters.recv().await {
            self.metrics.dead_letters_pending.inc();
            let published = self.deliver(&mut publisher, &letter, &shutdown).await;
            self.metrics.dead_letters_pending.dec();
            let tag = letter.tag;
            if published {
                self.settler.ack_one(tag).await?;
                self.metrics.reject(letter.reason);
                self.metrics.dead_lettered(letter.reason);
            } else {
                tracing::warn!(
                    delivery_tag = tag.delivery,
                    "shutting down before the dead letter was confirmed: the message goes back \
                     to the queue"
                );
                self.settler.requeue_one(tag).await?;
            }
            self.settler.unpark(tag);
        }
        if let Some(publisher) = publisher {
            publisher.close().await;
        }
        Ok(())
    }

    /// Publishes `letter` until the broker confirms it; false when shutdown came first.
    async fn deliver(
        &self,
        publisher: &mut Option<DeadLetters>,
        letter: &Rejected,
        shutdown: &watch::Receiver<bool>,
    ) -> bool {
        let raw = letter
            .raw
            .as_ref()
            .expect("a parked letter keeps its delivery");
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut hold = None;
        loop {
            let attempt = async {
                if publisher.is_none() {
                    *publisher = Some(self.open().await?);
                }
                let open = publisher.as_ref().expect("opened");
                open.publish(raw, letter.reason, &letter.error).await
            };
            let error = match self.confirmed(attempt, &mut hold, shutdown).await {
                Some(Ok(())) => return true,
                Some(Err(error)) => error,
                None => return false,
            };
            tracing::error!(%error, reason = letter.reason, "a dead letter was not accepted: the message stays unacknowledged, retrying");
            hold.get_or_insert_with(|| self.health.hold_aside());
            if error.is_connection() {
                *publisher = None;
            }
            if *shutdown.borrow() {
                return false;
            }
            let mut stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
    }

    /// Awaits one publish and its confirm, holding readiness once it is [`OVERDUE`]; `None` when
    /// shutdown began and it did not finish within [`super::CLOSE_TIMEOUT`].
    async fn confirmed(
        &self,
        attempt: impl Future<Output = Result<(), DeadLetterError>>,
        hold: &mut Option<crate::telemetry::health::Hold>,
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Result<(), DeadLetterError>> {
        tokio::pin!(attempt);
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                done = &mut attempt => return Some(done),
                _ = tokio::time::sleep(OVERDUE), if hold.is_none() => {
                    tracing::warn!(
                        overdue_s = OVERDUE.as_secs(),
                        "the broker does not confirm a dead letter (a memory or disk alarm?): \
                         holding its message unacknowledged"
                    );
                    *hold = Some(self.health.hold_aside());
                }
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    return tokio::time::timeout(super::CLOSE_TIMEOUT, attempt).await.ok();
                }
            }
        }
    }

    async fn open(&self) -> Result<DeadLetters, DeadLetterError> {
        Ok(DeadLetters::open(
            &self.url,
            &self.queue,
            self.target.clone(),
            self.pod.clone(),
        )
        .await?)
    }
}
