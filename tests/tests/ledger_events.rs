//! The ledger's events, as its own consumer publishes them (the expected payloads were computed
//! from the ledger's struct definitions by an independent script: `tests/fixtures/ledger-events`),
//! and better: confirmed by the broker before the message is acknowledged, with a stable id.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use bulk_recorder::message::Format;
use bulk_recorder_e2e::{
    exchange::{Received, TestExchange},
    ledger::{create_ledger_tables, fixture, insert_rows},
    *,
};
use lapin::{
    BasicProperties,
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
};
use serde_json::Value;
use uuid::Uuid;

const DRAIN: Duration = Duration::from_secs(60);
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn expected_payload(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/ledger-events")
        .join(format!("{name}.payload.json"));
    std::fs::read_to_string(path)
        .expect("fixture")
        .trim_end()
        .to_string()
}

/// Publishes `bodies` with the ledger's properties, the first with a request id and a trace.
async fn publish(queue: &TestQueue, bodies: Vec<Vec<u8>>, request_id: Option<&str>) {
    let connection = connect().await;
    bulk_recorder_publish::declare_queue(&connection, &queue.name)
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for body in bodies {
        let mut headers = FieldTable::default();
        if let Some(id) = request_id {
            headers.insert("X-Request-Id".into(), AMQPValue::LongString(id.into()));
            headers.insert(
                "Traceparent".into(),
                AMQPValue::LongString(TRACEPARENT.into()),
            );
        }
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        channel
            .basic_publish(
                "".into(),
                queue.name.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let _ = connection.close(200, "ok".into()).await;
}

async fn settle(recorder: &RunningRecorder, queue: &TestQueue, count: u64) {
    wait_until(DRAIN, "every message settled and acknowledged", || async {
        recorder.settled_messages() == count && broker_counts(&queue.name) == (0, 0)
    })
    .await;
}

/// Each fixture message leads to exactly the ledger's event: the payload byte for byte, the
/// envelope field by field; big-decimals to one overdraft event more; nil-decimal (refused)
/// and a message reusing an id with other content to none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledgers_messages_publish_exactly_its_events() {
    let db = TestDb::create().await;
    create_ledger_tables(&db).await;
    let queue = TestQueue::with_dead_letters().await;
    let (transactions, overdraft) = (
        TestExchange::topic("tx-events"),
        TestExchange::topic("od-events"),
    );
    transactions.declare().await;
    overdraft.declare().await;
    let cancel = fixture("cancel");
    let prerequisite = &cancel.expected["prerequisite_rows"]["transactions"];
    insert_rows(&db, "transaction", prerequisite.as_array().unwrap()).await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("BULK_RECORDER_MIGRATE", "false"),
            ("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE", &transactions.name),
            ("RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE", &overdraft.name),
            ("VERSION", "v4.0.0"),
        ],
    ));
    let groups: [&[&str]; 3] = [
        &[
            "approved",
            "pending",
            "noted",
            "big-decimals",
            "metadata",
            "cancel",
        ],
        &["commit", "route", "nil-decimal"],
        &["approved"],
    ];
    let mut settled = 0;
    for (i, names) in groups.iter().enumerate() {
        let bodies: Vec<_> = names.iter().map(|n| fixture(n).body).collect();
        settled += bodies.len() as u64;
        let request_id = (i == 0).then_some("req-approved-1");
        let (traced, rest) = bodies.split_at(1);
        publish(&queue, traced.to_vec(), request_id).await;
        publish(&queue, rest.to_vec(), None).await;
        settle(&recorder, &queue, settled).await;
    }
    // The approved transaction's id again, with another amount: conflicting, no event.
    let mut reused = bulk_recorder::message::decode(&fixture("approved").body, None, 1 << 20)
        .unwrap()
        .into_transaction()
        .unwrap();
    reused.amount = Some(bulk_recorder::message::Decimal::from_i64(1));
    queue
        .publish_transactions(std::slice::from_ref(&reused), Format::Json)
        .await;
    settle(&recorder, &queue, settled + 1).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    let events = transactions.take().await;
    let mut by_payload: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for event in &events {
        let payload = event.json()["payload"].to_string();
        by_payload.entry(payload).or_default().push(event);
    }
    let names = [
        "approved",
        "pending",
        "noted",
        "big-decimals",
        "metadata",
        "cancel",
        "commit",
        "route",
    ];
    assert_eq!(
        events.len(),
        names.len() + 1,
        "one each, the redelivered approved twice"
    );
    for name in names {
        let payload = expected_payload(name);
        let status = serde_json::from_str::<Value>(&payload).unwrap()["status"]["code"]
            .as_str()
            .unwrap()
            .to_string();
        let found = events
            .iter()
            .filter(|e| e.text().ends_with(&format!("\"payload\":{payload}}}")))
            .collect::<Vec<_>>();
        let copies = if name == "approved" { 2 } else { 1 };
        assert_eq!(found.len(), copies, "{name}: the payload byte for byte");
        for event in &found {
            assert_envelope(event, "transaction", &status);
            assert_eq!(event.routing_key, format!("midaz.transaction.{status}"));
        }
    }
    let approved: Vec<_> = events
        .iter()
        .filter(|e| {
            e.text()
                .contains("\"id\":\"0198a1c0-0001-7000-8000-000000000001\"")
        })
        .collect();
    assert_eq!(
        approved[0].message_id, approved[1].message_id,
        "a redelivery's event has the same id"
    );
    let traced = approved
        .iter()
        .find(|e| e.headers.get("X-Request-Id").map(String::as_str) == Some("req-approved-1"))
        .expect("the message's own request id");
    assert_eq!(traced.headers["Traceparent"], TRACEPARENT);
    let generated = approved
        .iter()
        .find(|e| e.headers["X-Request-Id"] != "req-approved-1");
    assert!(
        generated.is_some_and(|e| Uuid::parse_str(&e.headers["X-Request-Id"]).is_ok()),
        "one of its own otherwise"
    );

    let overdrafts = overdraft.take().await;
    assert_eq!(overdrafts.len(), 1, "{overdrafts:?}");
    let drawn = &overdrafts[0];
    assert_eq!(drawn.routing_key, "midaz.balance.overdraft.drawn");
    assert_envelope(drawn, "balance", "overdraft.drawn");
    let payload = &drawn.json()["payload"];
    assert_eq!(payload["accountId"], "3dc3de3c-4eb2-543f-82f9-c6a8f2c5661c");
    assert_eq!(
        payload["transactionId"],
        "0198a1c0-0006-7000-8000-000000000006"
    );
    assert_eq!(
        (
            payload["amount"].as_str(),
            payload["overdraftBalance"].as_str()
        ),
        (Some("20"), Some("20"))
    );
    assert!(chrono::DateTime::parse_from_rfc3339(payload["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(
        metrics.events_published_count("transaction"),
        events.len() as u64
    );
    assert_eq!(metrics.events_published_count("overdraft"), 1);
    assert_eq!(metrics.totals().transactions.conflicting, 1);
}

/// The ledger's `mmodel.Event` envelope, its keys in the struct's order.
fn assert_envelope(event: &Received, event_type: &str, action: &str) {
    assert_eq!(event.content_type.as_deref(), Some("application/json"));
    assert!(event.persistent, "delivery mode 2");
    assert!(event.message_id.is_some(), "a stable id to drop copies by");
    let prefix = format!(
        "{{\"source\":\"midaz\",\"eventType\":\"{event_type}\",\"action\":\"{action}\",\"timestamp\":\""
    );
    assert!(event.text().starts_with(&prefix), "{}", event.text());
    let json = event.json();
    assert!(chrono::DateTime::parse_from_rfc3339(json["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(json["version"], "v4.0.0");
    assert_eq!(
        json["organizationId"],
        "0198a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
    );
    assert_eq!(json["ledgerId"], "0198a1b2-c3d4-7f60-9b7c-8d9e0f1a2b3c");
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 8, "{keys:?}");
}

/// Five transactions queued, and a recorder publishing their events to `exchange`.
async fn five_messages_with_events_to(
    db: &TestDb,
    queue: &TestQueue,
    exchange: &TestExchange,
) -> RunningRecorder {
    let transactions: Vec<_> = (0..5)
        .map(|_| bulk_recorder_publish::sample_transaction(2))
        .collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    RunningRecorder::start(config(
        db,
        queue,
        &[("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE", &exchange.name)],
    ))
}

/// The events' exchange is not there yet (the broker's definitions not loaded): the messages
/// are written, held unacknowledged, and published and acknowledged once it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_an_exchange_not_there_yet_hold_their_messages() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let exchange = TestExchange::topic("tx-events");
    let recorder = five_messages_with_events_to(&db, &queue, &exchange).await;
    wait_until(DRAIN, "the rows committed", || async {
        db.count("transaction").await == 5
    })
    .await;
    recorder
        .assert_holds(&queue.name, 5, "held until their events are confirmed")
        .await;
    exchange.declare().await;
    wait_until(DRAIN, "acknowledged once published", || async {
        broker_counts(&queue.name) == (0, 0)
    })
    .await;
    recorder.stop().await;
    let events = exchange.take().await;
    let ids: std::collections::BTreeSet<_> = events
        .iter()
        .map(|e| e.json()["payload"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5, "every message's event");
    assert!(
        events
            .iter()
            .all(|e| e.routing_key == "midaz.transaction.APPROVED")
    );
}

/// An exchange that routes nowhere (nothing bound for the routing key: a topology that binds
/// only some statuses): the broker confirms and drops the events, as the ledger's own are
/// dropped. The messages are acknowledged, and the events counted unroutable, not published
/// (the switching guide has `bulk_recorder_events_published_total` follow the messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_an_exchange_routes_nowhere_are_counted_unroutable_not_published() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let exchange = TestExchange::topic("tx-events");
    exchange.declare_unbound().await;
    let recorder = five_messages_with_events_to(&db, &queue, &exchange).await;
    settle(&recorder, &queue, 5).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.events_published_count("transaction"), 0);
    assert_eq!(metrics.events_unroutable_count("transaction"), 5);
    assert!(exchange.take().await.is_empty());
}
