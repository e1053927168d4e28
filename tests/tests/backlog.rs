//! The queue's backlog as the recorder reads it (a passive declare every 5 s on a channel of its
//! own): what an autoscaler and an alert on a growing backlog use.

use std::time::Duration;

use bulk_recorder::message::Format;
use bulk_recorder_e2e::*;
use bulk_recorder_publish::sample_transaction;

const DRAIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_and_the_consumers_are_exported() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let recorder =
        RunningRecorder::start(config(&db, &queue, &[("RABBITMQ_NUMBERS_OF_WORKERS", "2")]));
    wait_until(
        DRAIN,
        "an empty queue read, with both consumers",
        || async {
            recorder.metrics.backlog() == Some(0)
                && recorder
                    .metrics
                    .render()
                    .contains("bulk_recorder_queue_consumers 2")
        },
    )
    .await;
    // The database goes away: the recorder holds what it has, the rest waits in the queue.
    db.allow_connections(false).await;
    db.terminate_backends().await;
    let batch: Vec<_> = (0..300).map(|_| sample_transaction(1)).collect();
    queue.publish_transactions(&batch, Format::Json).await;
    wait_until(DRAIN, "the backlog read", || async {
        let (ready, _) = broker_counts(&queue.name);
        ready > 200 && recorder.metrics.backlog() == Some(ready)
    })
    .await;
    db.allow_connections(true).await;
    wait_until(
        DRAIN,
        "drained, and the backlog read back to zero",
        || async {
            recorder.committed_transactions() == 300 && recorder.metrics.backlog() == Some(0)
        },
    )
    .await;
    recorder.stop().await;
}
