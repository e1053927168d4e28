//! One consuming channel: decodes each delivery and hands it to the collector.
//!
//! Decoding happens here, on each channel's own task, so that the collector only ever sees
//! valid transactions and a bad message is rejected at once, alone, without a database trip.
//! The content type is not consulted: the format is configured, or read from the body.
//!
//! The consumer ends when the session cancels it at shutdown. Any other end is the broker's
//! doing (`basic.cancel`: the queue was deleted, a quorum queue's leader moved, a consumer
//! timeout) and ends the session, so that it reconnects with every consumer instead of going on
//! with fewer.

use std::sync::Arc;

use futures::StreamExt;
use lapin::Consumer;
use tokio::sync::mpsc;

use crate::{
    broker::{
        Raw, Tag,
        settle::{Rejected, SettleError, Settler},
    },
    message::{DecodeError, Decoded, Format, decode},
    pipeline::collector::Pending,
    shutdown::Shutdown,
    telemetry::{metrics::Metrics, traces::Traces},
};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("channel {channel}: {source}")]
    Broker {
        channel: usize,
        #[source]
        source: lapin::Error,
    },
    #[error("channel {0}: settling a message it decoded: {1}")]
    Settle(usize, #[source] SettleError),
    #[error(
        "the broker cancelled the consumer of channel {0} (the queue deleted, its leader moved, \
         or a consumer timeout): reconnecting"
    )]
    Cancelled(usize),
}

/// How a channel's deliveries are read.
#[derive(Clone)]
pub struct Decoding {
    pub format: Option<Format>,
    pub max_message_bytes: usize,
    pub metrics: Arc<Metrics>,
    /// Keep each message's trace context (traces or events are on).
    pub keep_trace: bool,
    /// Where a rejected message's span goes, when traces are on.
    pub traces: Option<Arc<Traces>>,
    /// The queue, for spans.
    pub queue: String,
}

/// Runs until the consumer is cancelled at shutdown (Ok), or fails (Err).
pub async fn consume(
    index: usize,
    mut consumer: Consumer,
    settler: Arc<Settler>,
    out: mpsc::Sender<Pending>,
    decoding: Decoding,
    shutdown: Shutdown,
) -> Result<(), ConsumeError> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|source| ConsumeError::Broker {
            channel: index,
            source,
        })?;
        let Some(pending) = decode_one(index, delivery, &settler, &decoding).await? else {
            continue;
        };
        if out.send(pending).await.is_err() {
            return Ok(());
        }
    }
    tracing::debug!(channel = index, "consumer ended");
    if shutdown.requested() {
        Ok(())
    } else {
        Err(ConsumeError::Cancelled(index))
    }
}

/// A delivery that cannot be written.
struct Refused<'a> {
    tag: Tag,
    message_id: Option<&'a str>,
    context: &'a super::context::MessageContext,
    raw: Option<Raw>,
}

impl Refused<'_> {
    /// Said in the log and the trace, then dead-lettered (or rejected) with its reason.
    async fn reject(
        self,
        error: DecodeError,
        settler: &Settler,
        decoding: &Decoding,
    ) -> Result<(), SettleError> {
        tracing::warn!(
            delivery_tag = self.tag.delivery,
            channel = self.tag.channel,
            message_id = self.message_id.unwrap_or(""),
            request_id = self.context.request_id(),
            reason = error.reason(),
            %error,
            "message rejected without requeue"
        );
        if let Some(traces) = &decoding.traces {
            traces.rejected(
                self.context,
                &decoding.queue,
                error.reason(),
                &error.to_string(),
            );
        }
        let rejected = Rejected {
            tag: self.tag,
            reason: error.reason(),
            error: error.to_string(),
            raw: self.raw,
        };
        settler.reject(rejected).await
    }
}

/// A delivery for the collector, or `None` when it was settled here: acknowledged (nothing to
/// write) or dead-lettered (it cannot be written).
async fn decode_one(
    index: usize,
    delivery: lapin::message::Delivery,
    settler: &Settler,
    decoding: &Decoding,
) -> Result<Option<Pending>, ConsumeError> {
    let tag = Tag {
        channel: index,
        delivery: delivery.delivery_tag,
    };
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string());
    let context = super::context::MessageContext::of(&delivery.properties, decoding.keep_trace);
    let decoded = decode(&delivery.data, decoding.format, decoding.max_message_bytes);
    let raw = settler.keeps_raw().then_some(Raw {
        body: delivery.data,
        properties: delivery.properties,
        routing_key: delivery.routing_key.to_string(),
    });
    let settled = match decoded {
        Ok(Decoded::Transaction {
            transaction,
            format,
            bookkeeping,
        }) => {
            decoding.metrics.decoded(format);
            return Ok(Some(Pending {
                tag,
                message_id,
                transaction,
                bookkeeping,
                context,
                raw,
            }));
        }
        Ok(Decoded::Skip { reason }) => {
            // The ledger's "nothing to persist": acknowledged now (alone: lower tags may still
            // be in a bulk), and said loudly enough to notice a producer that suddenly sends
            // nothing else.
            tracing::warn!(
                delivery_tag = tag.delivery,
                message_id = message_id.as_deref().unwrap_or(""),
                request_id = context.request_id(),
                reason,
                "message acknowledged without rows (the ledger's empty QueueData)"
            );
            decoding.metrics.skip(reason);
            settler.ack_one(tag).await
        }
        Err(error) => {
            let refused = Refused {
                tag,
                message_id: message_id.as_deref(),
                context: &context,
                raw,
            };
            refused.reject(error, settler, decoding).await
        }
    };
    settled.map_err(|e| ConsumeError::Settle(index, e))?;
    Ok(None)
}
