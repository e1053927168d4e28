//! The broker cancels the recorder's consumers (`basic.cancel`): here because the queue is
//! deleted under it (RabbitMQ also cancels when a quorum queue's leader moves, or on a consumer
//! timeout). The recorder must notice (readiness off), reconnect with every consumer, and never
//! put a plain queue in the place of one that an operator declared with arguments.

use std::time::Duration;

use bulk_recorder::message::Format;
use bulk_recorder_e2e::*;
use bulk_recorder_publish::sample_transaction;
use lapin::options::QueueDeleteOptions;

const DRAIN: Duration = Duration::from_secs(60);

async fn delete_queue(queue: &str) {
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = connection.close(200, "ok".into()).await;
}

async fn store(queue: &TestQueue, db: &TestDb, expected: usize) {
    let batch: Vec<_> = (0..5).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&batch, Format::Json).await;
    wait_until(DRAIN, "the batch stored", || async {
        db.count("transaction").await as usize == expected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_that_an_operator_declared_is_waited_for_not_recreated() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let recorder =
        RunningRecorder::start(config(&db, &queue, &[("RABBITMQ_NUMBERS_OF_WORKERS", "2")]));
    wait_until(DRAIN, "ready", || async { recorder.health.ready() }).await;
    store(&queue, &db, 5).await;

    delete_queue(&queue.name).await;
    wait_until(
        DRAIN,
        "readiness off once its consumers are cancelled",
        || async { !recorder.health.ready() },
    )
    .await;
    // Long enough for several reconnection attempts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        queue_listing(&queue.name),
        None,
        "the recorder must not declare a plain queue in place of the quorum queue"
    );
    assert!(!recorder.health.ready());

    // The operator declares it again, as it was: the recorder resumes on it.
    let dlq = queue.dead_letters.clone().expect("dlq");
    declare_quorum_with_dead_letters(&queue.name, &dlq, None).await;
    wait_until(DRAIN, "ready again", || async { recorder.health.ready() }).await;
    store(&queue, &db, 10).await;
    let listing = queue_listing(&queue.name).expect("the queue");
    assert_eq!(listing["type"], "quorum");
    recorder.stop().await;
    assert_eq!(broker_counts(&queue.name), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_the_recorder_declared_is_declared_again() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let recorder =
        RunningRecorder::start(config(&db, &queue, &[("RABBITMQ_NUMBERS_OF_WORKERS", "2")]));
    wait_until(DRAIN, "ready", || async { recorder.health.ready() }).await;
    store(&queue, &db, 5).await;
    delete_queue(&queue.name).await;
    wait_until(DRAIN, "the queue declared again", || async {
        queue_listing(&queue.name).is_some()
    })
    .await;
    wait_until(DRAIN, "ready again, every consumer back", || async {
        recorder.health.ready()
            && rabbitmqctl_json("list_queues", &["name", "consumers"])
                .iter()
                .any(|row| row["name"] == queue.name.as_str() && row["consumers"] == 2)
    })
    .await;
    store(&queue, &db, 10).await;
    recorder.stop().await;
}
