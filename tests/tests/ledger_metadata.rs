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
