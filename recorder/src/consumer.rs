//! One consuming channel: decodes each delivery and hands it to the collector.
//!
//! Decoding happens here, on each channel's own task, so that the collector only ever sees
//! valid transactions and a bad message is rejected at once, alone, without a database trip.

use std::sync::Arc;

use futures::StreamExt;
use lapin::{Channel, Consumer};
use tokio::sync::mpsc;

use crate::{
    broker::{self, Tag},
    collector::Pending,
    message::decode,
    metrics::Metrics,
};

/// Runs until the consumer is cancelled (Ok) or the channel fails (Err).
pub async fn consume(
    index: usize,
    mut consumer: Consumer,
    channel: Channel,
    out: mpsc::Sender<Pending>,
    max_message_bytes: usize,
    metrics: Arc<Metrics>,
) -> Result<(), lapin::Error> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let tag = Tag {
            channel: index,
            delivery: delivery.delivery_tag,
        };
        let properties = &delivery.properties;
        let content_type = properties.content_type().as_ref().map(|c| c.as_str());
        let message_id = properties.message_id().as_ref().map(|m| m.to_string());
        match decode(&delivery.data, content_type, max_message_bytes) {
            Ok(transaction) => {
                let pending = Pending {
                    tag,
                    message_id,
                    transaction,
                };
                if out.send(pending).await.is_err() {
                    break;
                }
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
                broker::reject(&channel, tag.delivery).await?;
            }
        }
    }
    Ok(())
}
