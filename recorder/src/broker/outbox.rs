//! The dead-letter outbox: a rejected message leaves the pipeline at once, and its copy is
//! published here, on the dead letters' own connection, one at a time.
//!
//! The message stays unacknowledged (parked: no `multiple=true` settlement reaches it) until
//! the broker confirms its copy; then it is acknowledged alone. A copy is a step of the
//! after-commit policy ([`crate::pipeline::policy`]) that holds only its own message: a copy
//! the broker does not confirm within [`OVERDUE`] (a memory or disk alarm blocks publishers: it
//! is waited for on the same connection, never published again elsewhere) or refuses (a target
//! that routes nowhere, an exchange that does not exist yet) holds readiness off and is tried
//! again with backoff for as long as it takes, while the bulks around it go on, acknowledged as
//! usual. Only when the shutdown's budget runs out do the messages whose copy is not confirmed
//! go back to the queue.
//!
//! The connection is made on the first letter, not with the session: an exchange missing at
//! start-up (a typo, topology not loaded yet) holds only the rejected messages, never the
//! consumption. The session's start checks it once, to say so early.
//!
//! `bulk_recorder_messages_rejected_total` and `..._dead_lettered_total` move once the
//! original is acknowledged, once per message whatever the tries.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::{
    dead_letter::{DeadLetterError, DeadLetters, Target},
    settle::{Rejected, SettleError, Settler},
};
use crate::{
    pipeline::policy::{Attempt, Policy, Step},
    telemetry::{health::Holds, metrics::Metrics},
};

/// How long a copy may wait for its confirm before readiness goes off.
pub const OVERDUE: Duration = Duration::from_secs(5);

/// A dead letter holds only its own message.
pub const STEP: Step = Step {
    name: "dead letter",
    holds: Holds::Aside,
    slow: OVERDUE,
};

/// The longest the start-up check of the target may take.
const CHECK_FOR: Duration = Duration::from_secs(10);

/// Where the outbox publishes, and what it reports to.
pub struct Outbox {
    pub url: String,
    pub queue: String,
    pub target: Target,
    pub pod: String,
    pub settler: Arc<Settler>,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
}

/// One letter, until its copy is confirmed.
struct Delivery<'a> {
    outbox: &'a Outbox,
    publisher: &'a mut Option<DeadLetters>,
    letter: &'a Rejected,
}

impl Attempt for Delivery<'_> {
    type Output = ();
    type Error = DeadLetterError;

    async fn attempt(&mut self) -> Result<(), DeadLetterError> {
        let raw = self
            .letter
            .raw
            .as_ref()
            .expect("a parked letter keeps its delivery");
        if self.publisher.is_none() {
            *self.publisher = Some(self.outbox.open().await?);
        }
        let open = self.publisher.as_ref().expect("opened");
        let published = open
            .publish(raw, self.letter.reason, &self.letter.error)
            .await;
        if published
            .as_ref()
            .is_err_and(DeadLetterError::is_connection)
        {
            // Made again on the next try (dropping it closes it).
            *self.publisher = None;
        }
        published
    }
}

impl Outbox {
    /// Runs until `letters` is closed: every copy published, or given back once the shutdown's
    /// budget ran out; an error when the original cannot be settled any more (the session is
    /// over).
    pub async fn run(
        self,
        mut letters: mpsc::UnboundedReceiver<Rejected>,
    ) -> Result<(), SettleError> {
        let mut publisher = self.check().await;
        while let Some(letter) = letters.recv().await {
            self.metrics.dead_letters_pending.inc();
            let mut delivery = Delivery {
                outbox: &self,
                publisher: &mut publisher,
                letter: &letter,
            };
            let published = self.policy.until_done(&STEP, &mut delivery).await;
            self.metrics.dead_letters_pending.dec();
            let tag = letter.tag;
            if published.is_ok() {
                self.settler.ack_one(tag).await?;
                self.metrics.reject(letter.reason);
                self.metrics.dead_lettered(letter.reason);
            } else {
                tracing::warn!(
                    delivery_tag = tag.delivery,
                    reason = letter.reason,
                    "the shutdown's budget ran out before the dead letter was confirmed: the \
                     message goes back to the queue"
                );
                self.metrics.shutdown_requeued.inc();
                self.settler.requeue_one(tag).await?;
            }
            self.settler.unpark(tag);
        }
        if let Some(publisher) = publisher {
            let left = self.policy.shutdown.left(super::CLOSE_TIMEOUT);
            let _ = tokio::time::timeout(left, publisher.close()).await;
        }
        Ok(())
    }

    /// Opens the dead letters' connection once at the start, to say at once when the target
    /// is missing; nothing waits for it.
    async fn check(&self) -> Option<DeadLetters> {
        match tokio::time::timeout(CHECK_FOR, self.open()).await {
            Ok(Ok(publisher)) => Some(publisher),
            Ok(Err(error)) => {
                tracing::warn!(
                    exchange = self.target.exchange,
                    %error,
                    "the dead-letter exchange cannot be used yet (BULK_RECORDER_DEAD_LETTER_EXCHANGE): \
                     rejected messages wait unacknowledged until it can, everything else goes on"
                );
                None
            }
            Err(_) => None,
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
