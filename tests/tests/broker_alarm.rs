//! A RabbitMQ memory alarm (a node of this test's own: an alarm blocks every publisher of the
//! node). The broker then stops reading from every connection that publishes: a dead letter
//! published on the consuming connection would stop every acknowledgement with it. Dead
//! letters have a connection of their own: the good messages are stored and acknowledged, the
//! rejected one waits unacknowledged (readiness off, counted pending) until the alarm clears.

use std::{collections::HashMap, time::Duration};

use bulk_recorder::{config::Config, message::Format};
use bulk_recorder_e2e::{rabbit_node::RabbitNode, *};
use bulk_recorder_publish::{content_type, encode, sample_transaction};
use lapin::{
    Connection, ConnectionProperties, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};

const DRAIN: Duration = Duration::from_secs(60);

/// The work queue, a dead-letter exchange and its bound queue, on `node`.
async fn topology(node: &RabbitNode) -> Connection {
    let connection = Connection::connect(&node.url(), ConnectionProperties::default())
        .await
        .expect("the test's node");
    let channel = connection.create_channel().await.unwrap();
    for queue in ["work", "dead"] {
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    channel
        .exchange_declare(
            "dlx".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            "dead".into(),
            "dlx".into(),
            "dead".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    connection
}

/// A recorder of one worker on the node's queue `work`, with `extra` variables.
fn config(node: &RabbitNode, db: &TestDb, extra: &[(&str, &str)]) -> Config {
    let url = node.url();
    let vars: HashMap<String, String> = [
        ("RABBITMQ_URL", url.as_str()),
        ("RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE", "work"),
        ("DATABASE_URL", db.url.as_str()),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Config::from_vars(&vars).unwrap()
}

async fn ready(connection: &Connection, queue: &str) -> u32 {
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_memory_alarm_good_messages_are_acknowledged_while_a_dead_letter_waits() {
    let Some(node) = RabbitNode::start() else {
        return;
    };
    let connection = topology(&node).await;
    let good: Vec<_> = (0..10).map(|_| sample_transaction(2)).collect();
    let mut bodies = vec![(b"{\"id\": ".to_vec(), "application/json")];
    bodies.extend(
        good.iter()
            .map(|t| (encode(t, Format::Json), content_type(Format::Json))),
    );
    bulk_recorder_publish::publish_bodies(&connection, "work", bodies)
        .await
        .unwrap();
    node.memory_alarm(true);

    let db = TestDb::create().await;
    let recorder = RunningRecorder::start(config(
        &node,
        &db,
        &[
            ("BULK_RECORDER_DEAD_LETTER_EXCHANGE", "dlx"),
            ("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY", "dead"),
        ],
    ));
    wait_until(
        DRAIN,
        "the good messages stored and acknowledged",
        || async {
            recorder.committed_transactions() == 10 && ready(&connection, "work").await == 0
        },
    )
    .await;
    wait_until(
        DRAIN,
        "readiness off for the waiting dead letter",
        || async { !recorder.health.ready() },
    )
    .await;
    assert_eq!(recorder.metrics.dead_letters_pending.get(), 1);
    assert_eq!(
        recorder.metrics.rejected_total(),
        0,
        "not dead-lettered yet"
    );
    assert_eq!(stored_transaction_ids(&db).await.len(), 10);

    node.memory_alarm(false);
    wait_until(DRAIN, "dead-lettered once the alarm clears", || async {
        recorder.metrics.rejected("malformed") == 1
    })
    .await;
    assert_eq!(ready(&connection, "dead").await, 1);
    assert_eq!(recorder.metrics.dead_letters_pending.get(), 0);
    recorder.stop().await;
    let _ = connection.close(200, "ok".into()).await;
}

/// The ledger's events under a memory alarm: the broker confirms nothing, so no message is
/// acknowledged (its rows are stored, its event is not), and a shutdown meanwhile waits for the
/// confirms only as long as its budget: the recorder stops in time, the messages go back to the
/// queue (counted), for the event to be published when they come again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_memory_alarm_unconfirmed_events_hold_the_acks_and_shutdown_only_its_budget() {
    let Some(node) = RabbitNode::start() else {
        return;
    };
    let connection = topology(&node).await;
    publish_work(&connection, 5).await;
    node.memory_alarm(true);

    let db = TestDb::create().await;
    // The node's default exchange for topics: it exists, so only the alarm stops events.
    let recorder = RunningRecorder::start(config(
        &node,
        &db,
        &[
            ("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE", "amq.topic"),
            ("BULK_RECORDER_SHUTDOWN_TIMEOUT_MS", "5000"),
        ],
    ));
    wait_until(DRAIN, "the rows committed", || async {
        recorder.committed_transactions() == 5
    })
    .await;
    assert_eq!(stored_transaction_ids(&db).await.len(), 5);
    wait_until(DRAIN, "readiness off while events wait", || async {
        !recorder.health.ready()
    })
    .await;
    assert_eq!(ready(&connection, "work").await, 0, "all delivered");

    stops_within_the_budget_returning(recorder, &node, connection, 5).await;
}

/// SIGTERM while `held` messages cannot be finished under the alarm: the recorder stops within
/// its 5 s budget, and they are back in the queue, counted.
async fn stops_within_the_budget_returning(
    recorder: RunningRecorder,
    node: &RabbitNode,
    connection: Connection,
    held: u32,
) {
    let metrics = recorder.metrics.clone();
    let stopping = std::time::Instant::now();
    recorder.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(7),
        "stopped in {:?}, within the 5 s budget",
        stopping.elapsed()
    );
    assert_eq!(metrics.shutdown_requeued.get(), u64::from(held));
    wait_until(DRAIN, "the messages back in the queue", || async {
        ready(&connection, "work").await == held
    })
    .await;
    node.memory_alarm(false);
    let _ = connection.close(200, "ok".into()).await;
}

/// Publishes `n` transactions to the node's queue `work`.
async fn publish_work(connection: &Connection, n: usize) {
    let messages: Vec<_> = (0..n).map(|_| sample_transaction(2)).collect();
    bulk_recorder_publish::publish_bodies(
        connection,
        "work",
        messages
            .iter()
            .map(|t| (encode(t, Format::Json), content_type(Format::Json))),
    )
    .await
    .unwrap();
}

/// An alarm longer than the confirm timeout: the events' connection is blocked, not silent, so
/// the recorder waits on it instead of publishing the event again on a new one (every copy
/// on a blocked socket is routed once the alarm clears). One message, one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_held_by_a_long_alarm_is_published_once() {
    let Some(node) = RabbitNode::start() else {
        return;
    };
    let connection = topology(&node).await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            "events".into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            "events".into(),
            "amq.topic".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish_work(&connection, 1).await;
    node.memory_alarm(true);
    let db = TestDb::create().await;
    let recorder = RunningRecorder::start(config(
        &node,
        &db,
        &[("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE", "amq.topic")],
    ));
    wait_until(DRAIN, "the row committed, its event held", || async {
        recorder.committed_transactions() == 1 && !recorder.health.ready()
    })
    .await;
    // Past the 30 s after which a silent connection is given up.
    tokio::time::sleep(Duration::from_secs(40)).await;
    node.memory_alarm(false);
    wait_until(DRAIN, "published and acknowledged", || async {
        recorder.metrics.events_published_count("transaction") == 1 && recorder.health.ready()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(
        ready(&connection, "events").await,
        1,
        "one copy of its event"
    );
    assert_eq!(metrics.events_published_count("transaction"), 1);
    let _ = connection.close(200, "ok".into()).await;
}

/// Dead letters waiting under an alarm (twenty of them, one at a time): a shutdown returns them
/// all to the queue within its one budget, not a bound per letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_held_by_an_alarm_go_back_within_the_shutdown_budget() {
    let Some(node) = RabbitNode::start() else {
        return;
    };
    let connection = topology(&node).await;
    let bodies = (0..20).map(|_| (b"{\"id\": ".to_vec(), "application/json"));
    bulk_recorder_publish::publish_bodies(&connection, "work", bodies)
        .await
        .unwrap();
    node.memory_alarm(true);
    let db = TestDb::create().await;
    let recorder = RunningRecorder::start(config(
        &node,
        &db,
        &[
            ("BULK_RECORDER_DEAD_LETTER_EXCHANGE", "dlx"),
            ("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY", "dead"),
            ("BULK_RECORDER_SHUTDOWN_TIMEOUT_MS", "5000"),
        ],
    ));
    wait_until(DRAIN, "every letter waiting", || async {
        ready(&connection, "work").await == 0 && recorder.metrics.dead_letters_pending.get() == 1
    })
    .await;
    stops_within_the_budget_returning(recorder, &node, connection, 20).await;
}
