//! Settling messages with the broker, once their fate is known.
//!
//! Bulks are settled strictly in the order they were collected, which is what makes one
//! `multiple=true` ack per channel safe: every lower tag on that channel is then part of this
//! bulk, of an earlier settled bulk, or already settled alone.

use std::collections::BTreeMap;

use lapin::{
    Channel,
    options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions},
};

use super::Tag;

/// What to tell the broker about each message of a bulk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub ack: Vec<Tag>,
    pub reject: Vec<Tag>,
    pub requeue: Vec<Tag>,
}

/// Tells the broker. Rejections go first and one by one; then, when nothing is requeued, one
/// `multiple=true` ack per channel covers the rest. A mixed outcome settles each tag alone so
/// that an ack can never cover a message being returned.
pub async fn settle(channels: &[Channel], outcome: Outcome) -> Result<(), lapin::Error> {
    for tag in &outcome.reject {
        reject(&channels[tag.channel], tag.delivery).await?;
    }
    if outcome.requeue.is_empty() {
        return ack_up_to(channels, outcome.ack).await;
    }
    if outcome.ack.is_empty() && outcome.reject.is_empty() {
        return requeue_up_to(channels, outcome.requeue).await;
    }
    for tag in outcome.ack {
        ack_one(&channels[tag.channel], tag.delivery).await?;
    }
    for tag in outcome.requeue {
        requeue_one(&channels[tag.channel], tag.delivery).await?;
    }
    Ok(())
}

/// The highest delivery tag per channel among `tags`.
pub fn highest_per_channel(tags: impl IntoIterator<Item = Tag>) -> BTreeMap<usize, u64> {
    let mut highest = BTreeMap::new();
    for tag in tags {
        let entry = highest.entry(tag.channel).or_insert(tag.delivery);
        *entry = (*entry).max(tag.delivery);
    }
    highest
}

/// Acknowledges with `multiple=true`, one frame per channel up to its highest tag in `tags`.
///
/// Correct only because bulks are settled in the order they were collected: every lower tag on
/// that channel is then part of this bulk, of an earlier settled bulk, or already rejected.
pub async fn ack_up_to(
    channels: &[Channel],
    tags: impl IntoIterator<Item = Tag>,
) -> Result<(), lapin::Error> {
    for (channel, tag) in highest_per_channel(tags) {
        channels[channel]
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(())
}

/// Returns messages to the queue for another try, one frame per channel.
pub async fn requeue_up_to(
    channels: &[Channel],
    tags: impl IntoIterator<Item = Tag>,
) -> Result<(), lapin::Error> {
    for (channel, tag) in highest_per_channel(tags) {
        channels[channel]
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await?;
    }
    Ok(())
}

/// Acknowledges one message alone.
pub async fn ack_one(channel: &Channel, delivery: u64) -> Result<(), lapin::Error> {
    channel
        .basic_ack(delivery, BasicAckOptions { multiple: false })
        .await
}

/// Returns one message alone to the queue.
pub async fn requeue_one(channel: &Channel, delivery: u64) -> Result<(), lapin::Error> {
    channel
        .basic_nack(
            delivery,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
}

/// Rejects one message for good: the queue's dead-letter exchange gets it when it has one.
pub async fn reject(channel: &Channel, delivery: u64) -> Result<(), lapin::Error> {
    channel
        .basic_reject(delivery, BasicRejectOptions { requeue: false })
        .await
}
