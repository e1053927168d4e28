//! Dead letters that say why, and replay: with `BULK_RECORDER_DEAD_LETTER_EXCHANGE` set, every
//! rejected message reaches it unchanged with the reason, the error and the pod in headers, and
//! is acknowledged only once the broker confirmed the copy (a target that routes nowhere loses
//! nothing); `bulk-recorder replay` moves them back by reason once the cause is fixed.

use std::time::Duration;

use bulk_recorder::message::{Format, Transaction};
use bulk_recorder_e2e::{exchange::TestExchange, *};
use bulk_recorder_publish::{encode, sample_transaction};
use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use uuid::Uuid;

const DRAIN: Duration = Duration::from_secs(60);
const ROUTING_KEY: &str = "rejected";

/// A direct exchange of this test's own, its queue bound (or not yet) by [`ROUTING_KEY`].
struct DeadLetterTarget(TestExchange);

impl std::ops::Deref for DeadLetterTarget {
    type Target = TestExchange;

    fn deref(&self) -> &TestExchange {
        &self.0
    }
}

impl DeadLetterTarget {
    async fn new(bound: bool) -> Self {
        let target = Self(TestExchange::direct("dlx", ROUTING_KEY));
        target.declare_unbound().await;
        if bound {
            target.bind().await;
        }
        target
    }

    fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("BULK_RECORDER_DEAD_LETTER_EXCHANGE", self.name.as_str()),
            ("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY", ROUTING_KEY),
            ("POD_NAME", "recorder-pod-7"),
        ]
    }

    /// The dead letters, read and put back: (reason, error, pod, body, message id, x-trace).
    async fn letters(&self) -> Vec<[String; 6]> {
        let mut letters: Vec<[String; 6]> = self
            .peek()
            .await
            .into_iter()
            .map(|got| {
                [
                    got.header("x-bulk-recorder-reason").to_string(),
                    got.header("x-bulk-recorder-error").to_string(),
                    got.header("x-bulk-recorder-pod").to_string(),
                    String::from_utf8_lossy(&got.body).into_owned(),
                    got.message_id.clone().unwrap_or_default(),
                    got.header("x-trace").to_string(),
                ]
            })
            .collect();
        letters.sort();
        letters
    }
}

/// A malformed body, published with a message id and a header of the producer's own.
async fn publish_malformed(queue: &TestQueue) {
    bulk_recorder_publish::declare_queue(&connect().await, &queue.name)
        .await
        .unwrap();
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert("x-trace".into(), AMQPValue::LongString("abc".into()));
    let properties = BasicProperties::default()
        .with_message_id("bad-json".into())
        .with_headers(headers)
        .with_delivery_mode(2);
    channel
        .basic_publish(
            "".into(),
            queue.name.as_str().into(),
            BasicPublishOptions::default(),
            b"{\"id\": ",
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = connection.close(200, "ok".into()).await;
}

/// Refused by PostgreSQL (a timestamp 7000 years ago), decoded fine in the ledger's format.
fn poison() -> Transaction {
    let mut t = sample_transaction(2);
    t.created_at = chrono::DateTime::from_timestamp(-220_898_664_000, 0).unwrap();
    t
}

fn replay(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(recorder_binary())
        .arg("replay")
        .args(args)
        .env("RABBITMQ_URL", rabbitmq_url())
        .output()
        .expect("bulk-recorder replay runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_messages_say_why_and_replay_moves_them_back_by_reason() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let dead = DeadLetterTarget::new(true).await;
    let good: Vec<_> = (0..3).map(|_| sample_transaction(2)).collect();
    let parent = sample_transaction(1);
    let mut orphan = sample_transaction(1);
    orphan.parent_transaction_id = Some(parent.id);
    queue.publish_transactions(&good, Format::Json).await;
    publish_malformed(&queue).await;
    let envelope =
        std::fs::read(bulk_recorder_e2e::ledger::fixture_dir().join("engine-envelope.json"))
            .unwrap();
    queue
        .publish_raw(vec![
            (envelope, "application/json"),
            (encode(&poison(), Format::Midaz), "application/json"),
            (encode(&orphan, Format::Json), "application/json"),
        ])
        .await;
    let mut env = dead.env().to_vec();
    env.push(("BULK_RECORDER_MISSING_PARENT_WAIT_MS", "0"));
    let recorder = RunningRecorder::start(config(&db, &queue, &env));
    wait_until(DRAIN, "every message settled", || async {
        recorder.settled_messages() == 7 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    let letters = dead.letters().await;
    let reasons: Vec<&str> = letters.iter().map(|l| l[0].as_str()).collect();
    assert_eq!(
        reasons,
        ["database", "malformed", "missing_parent", "unsupported"]
    );
    for [reason, error, pod, ..] in &letters {
        assert_eq!(pod, "recorder-pod-7", "{reason}");
        assert!(!error.is_empty(), "{reason}: the error text");
    }
    let malformed = &letters[1];
    assert_eq!(malformed[3], "{\"id\": ", "the body unchanged");
    assert_eq!(
        (malformed[4].as_str(), malformed[5].as_str()),
        ("bad-json", "abc")
    );
    assert!(
        letters[3][1].contains("write-behind envelope v1"),
        "{}",
        letters[3][1]
    );
    for reason in ["database", "malformed", "missing_parent", "unsupported"] {
        assert_eq!(recorder.metrics.dead_lettered_count(reason), 1, "{reason}");
    }

    // A dry run moves nothing; replaying the missing parent's child once the parent is stored
    // moves it alone.
    let (ok, out) = replay(&[
        "--from",
        &dead.queue.name,
        "--to-queue",
        &queue.name,
        "--dry-run",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("would move reason=missing_parent messages=1"),
        "{out}"
    );
    assert_eq!(TestQueue::ready(&dead.queue.name).await, 4);
    queue
        .publish_transactions(std::slice::from_ref(&parent), Format::Json)
        .await;
    wait_until(DRAIN, "the parent stored", || async {
        recorder.committed_transactions() == 4
    })
    .await;
    let (ok, out) = replay(&[
        "--from",
        &dead.queue.name,
        "--to-queue",
        &queue.name,
        "--reason",
        "missing_parent",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("moved reason=missing_parent messages=1"),
        "{out}"
    );
    assert!(out.contains("3 left"), "{out}");
    wait_until(DRAIN, "the child stored", || async {
        stored_transaction_ids(&db).await.contains(&orphan.id)
    })
    .await;
    assert_eq!(TestQueue::ready(&dead.queue.name).await, 3);

    // A destination that routes nowhere: nothing is lost, the command says so and fails.
    let nowhere = DeadLetterTarget::new(false).await;
    let (ok, out) = replay(&[
        "--from",
        &dead.queue.name,
        "--to-exchange",
        &nowhere.name,
        "--routing-key",
        "x",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("routed nowhere"), "{out}");
    assert_eq!(
        TestQueue::ready(&dead.queue.name).await,
        3,
        "still in the dead-letter queue"
    );
    recorder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_broker_cannot_route_is_never_lost() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let dead = DeadLetterTarget::new(false).await;
    publish_malformed(&queue).await;
    let good: Vec<_> = (0..5).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&good, Format::Json).await;
    let recorder = RunningRecorder::start(config(&db, &queue, &dead.env()));
    wait_until(DRAIN, "the good messages stored meanwhile", || async {
        recorder.committed_transactions() == 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        broker_counts(&queue.name),
        (0, 1),
        "not acknowledged while its dead letter goes nowhere; the others are"
    );
    assert_eq!(TestQueue::ready(&dead.queue.name).await, 0);
    assert_eq!(
        recorder.metrics.rejected_total(),
        0,
        "counted before it happened"
    );
    assert!(
        !recorder.health.ready(),
        "readiness says a dead letter waits"
    );
    dead.bind().await;
    wait_until(DRAIN, "dead-lettered once the target routes", || async {
        broker_counts(&queue.name) == (0, 0)
    })
    .await;
    assert_eq!(TestQueue::ready(&dead.queue.name).await, 1);
    assert_eq!(
        (
            recorder.metrics.rejected("malformed"),
            recorder.metrics.dead_lettered_count("malformed")
        ),
        (1, 1),
        "counted once, whatever the tries"
    );
    recorder.stop().await;
}

/// A dead letter the broker routes nowhere (the default `amq.direct` exchange, a routing key
/// bound to nothing) while a child waits for a parent that never comes: the child cannot be
/// dead-lettered, and nothing behind it stops: a later child and its parent are stored within
/// seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_routes_nowhere_stops_nothing_behind_it() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let nowhere = format!("br-test-nowhere-{}", Uuid::new_v4().simple());
    let orphan = {
        let mut t = sample_transaction(1);
        t.parent_transaction_id = Some(Uuid::new_v4());
        t
    };
    queue
        .publish_transactions(std::slice::from_ref(&orphan), Format::Json)
        .await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("BULK_RECORDER_DEAD_LETTER_EXCHANGE", "amq.direct"),
            ("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY", &nowhere),
            ("BULK_RECORDER_MISSING_PARENT_WAIT_MS", "300"),
        ],
    ));
    wait_until(DRAIN, "the orphan's dead letter refused", || async {
        recorder.metrics.dead_letters_pending.get() == 1
    })
    .await;
    let parent = sample_transaction(1);
    let mut child = sample_transaction(1);
    child.parent_transaction_id = Some(parent.id);
    queue
        .publish_transactions(std::slice::from_ref(&child), Format::Json)
        .await;
    queue
        .publish_transactions(std::slice::from_ref(&parent), Format::Json)
        .await;
    wait_until(
        Duration::from_secs(20),
        "the child and its parent stored",
        || async {
            let stored = stored_transaction_ids(&db).await;
            stored.contains(&child.id) && stored.contains(&parent.id)
        },
    )
    .await;
    assert_eq!(
        broker_counts(&queue.name),
        (0, 1),
        "only the orphan unacknowledged"
    );
    assert_eq!(recorder.metrics.rejected_total(), 0);
    recorder.stop().await;
    assert_eq!(
        broker_counts(&queue.name),
        (1, 0),
        "the orphan back in the queue at shutdown"
    );
}

/// A quorum dead-letter queue with a delivery limit (RabbitMQ 4 gives every quorum queue one of
/// 20; 3 here): a requeue spends a delivery, and past the limit the broker drops the message.
/// Dry runs and replays by reason must leave what they do not move as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_dry_runs_never_spend_what_they_leave_behind() {
    let dlq = format!("br-test-dlq-{}", Uuid::new_v4().simple());
    let dead_letters = TestQueue {
        name: dlq.clone(),
        dead_letters: None,
    };
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(3));
    channel
        .queue_declare(dlq.as_str().into(), QueueDeclareOptions::durable(), args)
        .await
        .unwrap();
    // Confirmed, so that both are in the quorum queue's log before the first pass reads it.
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for reason in ["database", "missing_parent"] {
        let properties = bulk_recorder::broker::dead_letter::with_reason(
            &BasicProperties::default().with_message_id(reason.into()),
            reason,
            "as the recorder wrote it",
            "recorder-pod-7",
        );
        let confirmation = channel
            .basic_publish(
                "".into(),
                dlq.as_str().into(),
                BasicPublishOptions::default(),
                reason.as_bytes(),
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirmation.is_ack(), "the {reason} dead letter stored");
    }
    let _ = connection.close(200, "ok".into()).await;

    let target = TestQueue::new();
    bulk_recorder_publish::declare_queue(&connect().await, &target.name)
        .await
        .unwrap();
    for pass in 0..6 {
        let (ok, out) = replay(&["--from", &dlq, "--to-queue", &target.name, "--dry-run"]);
        assert!(ok, "{out}");
        assert!(out.contains("would move 2 in all"), "pass {pass}: {out}");
    }
    for pass in 0..3 {
        let (ok, out) = replay(&[
            "--from",
            &dlq,
            "--to-queue",
            &target.name,
            "--reason",
            "missing_parent",
        ]);
        assert!(ok, "{out}");
        let moved = if pass == 0 { 1 } else { 0 };
        assert!(
            out.contains(&format!("moved {moved} in all, 1 left")),
            "pass {pass}: {out}"
        );
    }
    assert_eq!(
        TestQueue::ready(&dlq).await,
        1,
        "the database one is still there"
    );
    assert_eq!(
        TestQueue::ready(&target.name).await,
        1,
        "moved exactly once"
    );
    drop(dead_letters);
}
