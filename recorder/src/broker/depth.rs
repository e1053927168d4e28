//! The queue's backlog: a passive declare every few seconds, on a channel of its own, exported as
//! `bulk_recorder_queue_messages` (ready) and `bulk_recorder_queue_consumers`, and reported to
//! the BulkRecorder's status. It is what an autoscaler (KEDA, an HPA on this metric) and an alert
//! on a growing backlog read.

use std::{sync::Arc, time::Duration};

use lapin::{Channel, options::QueueDeclareOptions, types::FieldTable};

use crate::telemetry::metrics::Metrics;

/// How often the depth is read.
pub const EVERY: Duration = Duration::from_secs(5);

/// Reads the depth of `queue` on `channel` until a read fails (the connection closed, or the
/// queue deleted, which closes the channel and ends the session too).
pub async fn poll(channel: Channel, queue: String, metrics: Arc<Metrics>) {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    loop {
        match channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => metrics.queue_depth(q.message_count(), q.consumer_count()),
            Err(error) => {
                tracing::debug!(%error, queue, "cannot read the queue's depth");
                return;
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
