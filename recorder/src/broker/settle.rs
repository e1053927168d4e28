//! Settling messages with the broker, once their fate is known.
//!
//! Bulks are settled strictly in the order they were collected, which is what makes one
//! `multiple=true` ack per channel safe: every lower tag on that channel is then part of this
//! bulk, of an earlier settled bulk, or already settled alone. The exception is a message
//! waiting for its parent ("parked"): it stays unsettled while later bulks are acknowledged, so
//! on its channel a `multiple=true` ack (or nack) never reaches its tag; tags above it are
//! settled one by one until it is.

use std::collections::{BTreeMap, BTreeSet};

use lapin::{
    Channel,
    options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions},
};

use tokio::sync::mpsc;

use super::{Raw, Tag};
use crate::telemetry::metrics::Metrics;

/// What to tell the broker about each message of a bulk.
#[derive(Debug, Default)]
pub struct Settlement {
    pub ack: Vec<Tag>,
    pub reject: Vec<Rejected>,
    pub requeue: Vec<Tag>,
}

/// A message to dead-letter, and why.
#[derive(Debug)]
pub struct Rejected {
    pub tag: Tag,
    /// Labels `bulk_recorder_messages_rejected_total` and the `x-bulk-recorder-reason` header.
    pub reason: &'static str,
    pub error: String,
    /// The delivery as received, when dead letters are published with their reason.
    pub raw: Option<Raw>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the dead-letter outbox has stopped")]
    OutboxStopped,
    #[error("the waiting room has stopped")]
    WaitingRoomStopped,
}

/// Settles on one session's channels.
pub struct Settler {
    channels: Vec<Channel>,
    /// Rejected messages to publish with their reason ([`super::outbox`]), when configured.
    outbox: std::sync::Mutex<Option<mpsc::UnboundedSender<Rejected>>>,
    keeps_raw: bool,
    /// Parked tags per channel: no `multiple=true` settlement may reach them.
    parked: std::sync::Mutex<BTreeMap<usize, BTreeSet<u64>>>,
    metrics: std::sync::Arc<Metrics>,
}

impl Settler {
    /// Settles on `channels`; rejected messages go to `outbox` when dead letters are published
    /// with their reason, else they are rejected.
    pub fn new(
        channels: Vec<Channel>,
        outbox: Option<mpsc::UnboundedSender<Rejected>>,
        metrics: std::sync::Arc<Metrics>,
    ) -> Self {
        Self {
            channels,
            keeps_raw: outbox.is_some(),
            outbox: std::sync::Mutex::new(outbox),
            parked: Default::default(),
            metrics,
        }
    }

    /// No more rejections for the outbox: it finishes what it holds and stops.
    pub fn close_outbox(&self) {
        self.outbox.lock().expect("outbox").take();
    }

    /// Tells the broker. Rejections go first and one by one; then, when nothing is requeued,
    /// acks (`multiple=true` per channel as far as no parked message is reached). A mixed
    /// outcome settles each tag alone so that an ack can never cover a message being returned.
    pub async fn settle(&self, settlement: Settlement) -> Result<(), SettleError> {
        for rejected in settlement.reject {
            self.reject(rejected).await?;
        }
        if settlement.requeue.is_empty() {
            return self.ack(settlement.ack).await;
        }
        for tag in settlement.ack {
            self.ack_one(tag).await?;
        }
        self.requeue(settlement.requeue).await
    }

    /// Keeps `tag` out of every `multiple=true` settlement until [`Settler::unpark`].
    pub fn park(&self, tag: Tag) {
        let mut parked = self.parked.lock().expect("parked");
        parked.entry(tag.channel).or_default().insert(tag.delivery);
    }

    /// Call after the parked message was settled on its own.
    pub fn unpark(&self, tag: Tag) {
        let mut parked = self.parked.lock().expect("parked");
        if let Some(tags) = parked.get_mut(&tag.channel) {
            tags.remove(&tag.delivery);
        }
    }

    /// Per channel, the highest of `tags` that a `multiple=true` frame may cover (below the
    /// lowest parked tag); the others, to settle alone.
    fn by_floor(&self, tags: Vec<Tag>) -> (BTreeMap<usize, u64>, Vec<Tag>) {
        let parked = self.parked.lock().expect("parked");
        let mut multiple = BTreeMap::new();
        let mut alone = Vec::new();
        for tag in tags {
            let floor = parked.get(&tag.channel).and_then(|t| t.first().copied());
            if floor.is_some_and(|floor| tag.delivery > floor) {
                alone.push(tag);
            } else {
                let highest = multiple.entry(tag.channel).or_insert(tag.delivery);
                *highest = (*highest).max(tag.delivery);
            }
        }
        (multiple, alone)
    }

    async fn ack(&self, tags: Vec<Tag>) -> Result<(), SettleError> {
        let (multiple, alone) = self.by_floor(tags);
        for (channel, tag) in multiple {
            self.channels[channel]
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await?;
        }
        for tag in alone {
            self.ack_one(tag).await?;
        }
        Ok(())
    }

    /// Returns messages to the queue for another try.
    async fn requeue(&self, tags: Vec<Tag>) -> Result<(), SettleError> {
        let (multiple, alone) = self.by_floor(tags);
        for (channel, tag) in multiple {
            self.channels[channel].basic_nack(tag, nack(true)).await?;
        }
        for tag in alone {
            self.requeue_one(tag).await?;
        }
        Ok(())
    }

    /// Acknowledges one message alone.
    pub async fn ack_one(&self, tag: Tag) -> Result<(), SettleError> {
        self.channels[tag.channel]
            .basic_ack(tag.delivery, BasicAckOptions { multiple: false })
            .await?;
        Ok(())
    }

    /// Returns one message alone to the queue.
    pub async fn requeue_one(&self, tag: Tag) -> Result<(), SettleError> {
        self.channels[tag.channel]
            .basic_nack(tag.delivery, nack(false))
            .await?;
        Ok(())
    }

    /// Dead-letters one message: handed to the outbox (parked until its copy is confirmed, then
    /// acknowledged and unparked there) when a target is configured, else rejected without
    /// requeue (to the queue's dead-letter exchange, if any) and unparked.
    pub async fn reject(&self, rejected: Rejected) -> Result<(), SettleError> {
        if rejected.raw.is_some()
            && let Some(outbox) = self.outbox.lock().expect("outbox").as_ref()
        {
            self.park(rejected.tag);
            return outbox
                .send(rejected)
                .map_err(|_| SettleError::OutboxStopped);
        }
        self.channels[rejected.tag.channel]
            .basic_reject(rejected.tag.delivery, BasicRejectOptions { requeue: false })
            .await?;
        self.unpark(rejected.tag);
        self.metrics.reject(rejected.reason);
        Ok(())
    }

    /// Whether rejected messages keep their delivery for the outbox.
    pub fn keeps_raw(&self) -> bool {
        self.keeps_raw
    }
}

fn nack(multiple: bool) -> BasicNackOptions {
    BasicNackOptions {
        multiple,
        requeue: true,
    }
}
