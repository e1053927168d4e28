//! The ledger's metadata in its document store (a MongoDB-wire server: SecantusDB here), as its
//! own consumer writes it: one document per transaction and per operation that carries a
//! metadata map, upserted once, whatever redeliveries come; a message is acknowledged only once
//! its documents are stored, and a store that goes away holds the messages, loses nothing and
//! writes no row twice.

use std::time::Duration;

use bulk_recorder::message::{Format, Metadata, Transaction};
use bulk_recorder_e2e::{
    ledger::{create_ledger_tables, fixture, insert_rows},
    mongo::{OwnMongo, TestMongo, mongodb_url},
    proxy::PgProxy,
    *,
};
use bulk_recorder_publish::sample_transaction;
use mongodb::bson::{Bson, Document};
use serde_json::{Value, json};

const DRAIN: Duration = Duration::from_secs(60);

fn metadata(value: Value) -> Metadata {
    value.as_object().expect("a map").clone()
}

/// A transaction with metadata on itself and on its first operation (an empty map).
fn with_metadata() -> Transaction {
    let mut t = sample_transaction(2);
    t.metadata = Some(metadata(json!({"order": "A-17", "lines": 3, "vip": true})));
    t.operations[0].metadata = Some(Metadata::new());
    t
}

/// A stored document's metadata as JSON, numbers as the doubles the store holds.
fn stored_metadata(document: &Document) -> Value {
    let metadata = document
        .get_document("metadata")
        .expect("a metadata document");
    Bson::Document(metadata.clone()).into_relaxed_extjson()
}

/// Expected metadata with every number a double, as the ledger's Go decoding makes it.
fn as_doubles(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().expect("a number")),
        Value::Array(items) => Value::Array(items.iter().map(as_doubles).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), as_doubles(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn entity_ids(documents: &[Document]) -> Vec<String> {
    documents
        .iter()
        .map(|d| d.get_str("entity_id").expect("entity_id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledgers_messages_leave_exactly_its_documents_once_each_when_delivered_twice() {
    let db = TestDb::create().await;
    create_ledger_tables(&db).await;
    let queue = TestQueue::new();
    let store = TestMongo::new(&mongodb_url());
    let cancel = fixture("cancel");
    insert_rows(
        &db,
        "transaction",
        cancel.expected["prerequisite_rows"]["transactions"]
            .as_array()
            .unwrap(),
    )
    .await;
    let json_message = with_metadata();
    let first = [
        "approved",
        "pending",
        "noted",
        "big-decimals",
        "metadata",
        "cancel",
    ];
    let then = ["commit", "route"];
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("BULK_RECORDER_MIGRATE", "false"),
            ("MONGODB_URL", &store.url),
            ("MONGODB_DATABASE", &store.name),
        ],
    ));
    // Each group twice, the copy in a later bulk (a redelivery).
    let mut published = 0;
    for names in [&first[..], &first[..], &then[..], &then[..]] {
        let bodies = names
            .iter()
            .map(|n| (fixture(n).body, "application/json"))
            .collect::<Vec<_>>();
        published += bodies.len() as u64;
        queue.publish_raw(bodies).await;
        wait_until(DRAIN, "every message settled", || async {
            recorder.settled_messages() == published
        })
        .await;
    }
    for _ in 0..2 {
        published += 1;
        queue
            .publish_transactions(std::slice::from_ref(&json_message), Format::Json)
            .await;
        wait_until(DRAIN, "every message settled and acknowledged", || async {
            recorder.settled_messages() == published && broker_counts(&queue.name) == (0, 0)
        })
        .await;
    }
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    // The ledger's own: only `metadata` carries any (its `mongo_metadata_not_in_postgres`).
    let expected = &fixture("metadata").expected["mongo_metadata_not_in_postgres"];
    let ledger_tx = fixture("metadata").transaction_id().to_string();
    let transactions = store.documents("transaction").await;
    let mut wanted = vec![ledger_tx.clone(), json_message.id.to_string()];
    wanted.sort();
    assert_eq!(entity_ids(&transactions), wanted, "one document each");
    for document in &transactions {
        assert_eq!(document.get_str("entity_name").unwrap(), "Transaction");
        assert!(document.get_datetime("created_at").is_ok());
        assert!(document.get_datetime("updated_at").is_ok());
        let id = document.get_str("entity_id").unwrap();
        let want = if id == ledger_tx {
            as_doubles(&expected["transaction"])
        } else {
            as_doubles(&Value::Object(json_message.metadata.clone().unwrap()))
        };
        assert_eq!(stored_metadata(document), want, "{id}");
    }
    let operations = store.documents("operation").await;
    let mut wanted: Vec<String> = expected["operations"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    wanted.push(json_message.operations[0].id.to_string());
    wanted.sort();
    assert_eq!(entity_ids(&operations), wanted, "one document each");
    for document in &operations {
        assert_eq!(document.get_str("entity_name").unwrap(), "Operation");
        let id = document.get_str("entity_id").unwrap();
        let want = expected["operations"].get(id).map_or(json!({}), as_doubles);
        assert_eq!(stored_metadata(document), want, "{id}");
    }
    assert!(
        store
            .index_keys("transaction")
            .await
            .iter()
            .any(|i| i.get_str("name") == Ok("entity_id_1")),
        "the ledger's index on entity_id"
    );
    let count = |c, r| metrics.metadata_documents_count(c, r);
    assert_eq!(
        (
            count("transaction", "written"),
            count("operation", "written")
        ),
        (2, 3)
    );
    assert_eq!(
        (
            count("transaction", "existed"),
            count("operation", "existed")
        ),
        (2, 3),
        "the second deliveries found them"
    );
    assert_eq!(metrics.metadata_not_stored_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_store_that_goes_away_holds_the_messages_and_loses_nothing() {
    let Some(mut own) = OwnMongo::start() else {
        return;
    };
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let store = TestMongo::new(&own.url());
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("MONGODB_URL", &own.url()),
            ("MONGODB_DATABASE", &store.name),
        ],
    ));
    let first: Vec<_> = (0..5).map(|_| with_metadata()).collect();
    queue.publish_transactions(&first, Format::Json).await;
    wait_until(DRAIN, "the first stored and acknowledged", || async {
        recorder.committed_transactions() == 5 && broker_counts(&queue.name) == (0, 0)
    })
    .await;

    own.stop();
    let second: Vec<_> = (0..5).map(|_| with_metadata()).collect();
    queue.publish_transactions(&second, Format::Json).await;
    wait_until(DRAIN, "the rows committed", || async {
        db.count("transaction").await == 10
    })
    .await;
    recorder
        .assert_holds(
            &queue.name,
            5,
            "not acknowledged while their metadata is not stored",
        )
        .await;

    own.restart();
    wait_until(DRAIN, "acknowledged once the store is back", || async {
        broker_counts(&queue.name) == (0, 0)
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    assert_eq!(
        (totals.transactions.inserted, totals.transactions.ignored),
        (10, 0),
        "no row written twice"
    );
    let all: Vec<_> = first.iter().chain(&second).collect();
    let mut ids: Vec<String> = all.iter().map(|t| t.id.to_string()).collect();
    ids.sort();
    assert_eq!(entity_ids(&store.documents("transaction").await), ids);
    assert_eq!(store.documents("operation").await.len(), 10);
}

/// A proxy in front of the shared document store, and the `MONGODB_URL` through it (with
/// `query` added).
async fn store_behind_proxy(query: &str) -> (PgProxy, String) {
    let address = mongodb_url()
        .trim_start_matches("mongodb://")
        .trim_end_matches('/')
        .to_string();
    let proxy = PgProxy::start(&address).await;
    let url = format!(
        "mongodb://127.0.0.1:{}/?directConnection=true{query}",
        proxy.port
    );
    (proxy, url)
}

fn recorder_for(db: &TestDb, queue: &TestQueue, url: &str, store: &TestMongo) -> RunningRecorder {
    RunningRecorder::start(config(
        db,
        queue,
        &[("MONGODB_URL", url), ("MONGODB_DATABASE", &store.name)],
    ))
}

async fn publish_and_settle(recorder: &RunningRecorder, queue: &TestQueue, batch: &[Transaction]) {
    let before = recorder.settled_messages();
    queue.publish_transactions(batch, Format::Json).await;
    wait_until(DRAIN, "settled and acknowledged", || async {
        recorder.settled_messages() == before + batch.len() as u64
            && broker_counts(&queue.name) == (0, 0)
    })
    .await;
}

/// `{w: "majority"}` as BSON puts it in a command.
const MAJORITY: &[u8] = b"\x02w\x00\x09\x00\x00\x00majority\x00";

/// Without a write concern in `MONGODB_URL`, every command asks for `w: "majority"` (a PSA
/// replica set or a server before 5.0 would acknowledge `w: 1`, which a failover rolls back);
/// the URL's own concern wins. Read on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_written_with_majority_unless_the_url_names_a_write_concern() {
    for (query, majority) in [("", true), ("&w=1", false)] {
        let (db, queue) = (TestDb::create().await, TestQueue::new());
        let store = TestMongo::new(&mongodb_url());
        let (proxy, url) = store_behind_proxy(query).await;
        proxy.record_requests();
        let recorder = recorder_for(&db, &queue, &url, &store);
        publish_and_settle(&recorder, &queue, &[with_metadata(), with_metadata()]).await;
        recorder.stop().await;
        assert_eq!(store.documents("transaction").await.len(), 2, "{query}");
        assert!(proxy.requests_contain(b"writeConcern"), "{query}");
        assert_eq!(proxy.requests_contain(MAJORITY), majority, "{query}");
    }
}

/// A bulk whose documents weigh more than a command may (30 of 700 KB: 21 MB; the server
/// refuses a command over 16 MiB) goes in several commands, each within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_of_documents_over_sixteen_mebibytes_goes_in_commands_the_server_takes() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let store = TestMongo::new(&mongodb_url());
    let (proxy, url) = store_behind_proxy("").await;
    let heavy: Vec<Transaction> = (0..30)
        .map(|i| {
            let mut t = sample_transaction(1);
            t.metadata = Some(metadata(
                json!({"note": format!("{i}{}", "x".repeat(700_000))}),
            ));
            t
        })
        .collect();
    queue.publish_transactions(&heavy, Format::Json).await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("MONGODB_URL", &url),
            ("MONGODB_DATABASE", &store.name),
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "3000"),
        ],
    ));
    wait_until(DRAIN, "stored and acknowledged", || async {
        recorder.committed_transactions() == 30 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.bulk_size.get_sample_count(), 1, "one bulk");
    assert_eq!(store.documents("transaction").await.len(), 30);
    let largest = proxy.largest_mongo_request();
    assert!(
        largest <= 16 * 1024 * 1024 + 16 * 1024,
        "a command of {largest} bytes"
    );
}

/// The ledger's `{entity_id: 1}` index already there under another name (`idx_entity`), and a
/// different index holding the default name (`entity_id_1` on `{entity_id: -1}`, so that the
/// recorder cannot make its own): neither holds a message. The index is looked for by its key
/// and made best-effort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_the_store_will_not_make_holds_no_message() {
    use mongodb::{IndexModel, bson::doc, options::IndexOptions};
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let store = TestMongo::new(&mongodb_url());
    let database = store.database().await;
    for (collection, keys, name) in [
        ("transaction", doc! {"entity_id": 1}, "idx_entity"),
        ("operation", doc! {"entity_id": -1}, "entity_id_1"),
    ] {
        let index = IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().name(name.to_string()).build())
            .build();
        database
            .collection::<Document>(collection)
            .create_index(index)
            .await
            .expect("the operator's own index");
    }
    let recorder = recorder_for(&db, &queue, &mongodb_url(), &store);
    let batch: Vec<_> = (0..5).map(|_| with_metadata()).collect();
    publish_and_settle(&recorder, &queue, &batch).await;
    recorder.stop().await;
    assert_eq!(store.documents("transaction").await.len(), 5);
    assert_eq!(store.documents("operation").await.len(), 5);
}

/// The answer to an `update` lost after the store ran it (the proxy cuts the connection): the
/// retry finds the documents there, and they are still counted `written`, once, not `existed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_whose_answer_is_lost_are_counted_written_once() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let store = TestMongo::new(&mongodb_url());
    let (proxy, url) = store_behind_proxy("").await;
    let recorder = recorder_for(&db, &queue, &url, &store);
    publish_and_settle(&recorder, &queue, &[with_metadata()]).await;
    proxy.cut_answer_to(b"\x04updates\x00");
    let batch: Vec<_> = (0..3).map(|_| with_metadata()).collect();
    publish_and_settle(&recorder, &queue, &batch).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(proxy.cuts(), 1, "one answer lost");
    let count = |c, r| metrics.metadata_documents_count(c, r);
    assert_eq!(
        (
            count("transaction", "written"),
            count("transaction", "existed")
        ),
        (4, 0)
    );
    assert_eq!(
        (count("operation", "written"), count("operation", "existed")),
        (4, 0)
    );
    assert_eq!(store.documents("transaction").await.len(), 4);
}

/// Without `MONGODB_URL`, a message found conflicting (its id stored with other content) changed
/// nothing: its metadata is not counted as not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_message_is_not_counted_as_metadata_not_stored() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    let original = with_metadata();
    let mut conflicting = original.clone();
    conflicting.amount = Some(bulk_recorder::message::Decimal::from_i64(1));
    publish_and_settle(&recorder, &queue, std::slice::from_ref(&original)).await;
    publish_and_settle(&recorder, &queue, std::slice::from_ref(&conflicting)).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.totals().transactions.conflicting, 1);
    assert_eq!(
        metrics.metadata_not_stored_count(),
        1,
        "only the stored one"
    );
}
