//! One consuming channel: decodes each delivery and hands it to the collector.
//!
//! Decoding happens here, on each channel's own task, so that the collector only ever sees
//! valid transactions and a bad message is rejected at once, alone, without a database trip.
//! The content type is not consulted: the format is configured, or read from the body.

use std::sync::Arc;

use futures::StreamExt;
use lapin::{Channel, Consumer};
use tokio::sync::mpsc;

use crate::{
    broker::{Tag, settle},
    message::{Decoded, Format, decode},
    pipeline::collector::Pending,
    telemetry::metrics::Metrics,
};

/// Runs until the consumer is cancelled (Ok) or the channel fails (Err).
pub async fn consume(
    index: usize,
    mut consumer: Consumer,
    channel: Channel,
    out: mpsc::Sender<Pending>,
    format: Option<Format>,
    max_message_bytes: usize,
    metrics: Arc<Metrics>,
) -> Result<(), lapin::Error> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let tag = Tag {
            channel: index,
            delivery: delivery.delivery_tag,
        };
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string());
        match decode(&delivery.data, format, max_message_bytes) {
            Ok(Decoded::Transaction {
                transaction,
                format,
            }) => {
                metrics.decoded(format);
                let pending = Pending {
                    tag,
                    message_id,
                    transaction: *transaction,
                };
                if out.send(pending).await.is_err() {
                    break;
                }
            }
            Ok(Decoded::Skip { reason }) => {
                // It carries no rows, so nothing can be lost by acknowledging it now (alone:
                // lower tags may still be in a bulk).
                tracing::debug!(delivery_tag = tag.delivery, reason, "message skipped");
                metrics.skip(reason);
                settle::ack_one(&channel, tag.delivery).await?;
            }
            Err(error) => {
                tracing::warn!(
                    delivery_tag = tag.delivery,
                    channel = index,
                    message_id = message_id.as_deref().unwrap_or(""),
                    reason = error.reason(),
                    %error,
                    "message rejected without requeue"
                );
                metrics.reject(error.reason());
                settle::reject(&channel, tag.delivery).await?;
            }
        }
    }
    Ok(())
}
