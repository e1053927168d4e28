//! The ledger's companions (its documents, its events, the dead-letter outbox) keep the older
//! promises with them on: a SIGTERM with bulks in flight stores, publishes and acknowledges
//! what it holds (nothing committed goes back to the queue); a hold of the events does not use
//! up a child's parent wait; a dead-letter exchange that is not there holds only its own
//! message.

use std::time::Duration;

use bulk_recorder::message::{Format, Metadata, Transaction};
use bulk_recorder_e2e::{
    exchange::TestExchange,
    mongo::{OwnMongo, TestMongo, mongodb_url},
    *,
};
use bulk_recorder_publish::sample_transaction;

const DRAIN: Duration = Duration::from_secs(60);

/// A transaction whose metadata the ledger keeps in its document store.
fn with_metadata(operations: usize) -> Transaction {
    let mut t = sample_transaction(operations);
    let mut metadata = Metadata::new();
    metadata.insert("order".into(), "A-17".into());
    t.metadata = Some(metadata);
    t
}

async fn broker_counts_async(queue: &str) -> (u64, u64) {
    let queue = queue.to_string();
    tokio::task::spawn_blocking(move || broker_counts(&queue))
        .await
        .expect("rabbitmqctl")
}

/// The drop-in configuration: the ledger's events (bound) and its document store.
fn drop_in<'a>(events: &'a TestExchange, store: &'a TestMongo) -> [(&'static str, &'a str); 3] {
    [
        ("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE", events.name.as_str()),
        ("MONGODB_URL", store.url.as_str()),
        ("MONGODB_DATABASE", store.name.as_str()),
    ]
}

/// The scenario of a deploy: a partial bulk held by a long flush timeout, then SIGTERM. Its rows,
/// documents and events are all made, and the messages acknowledged: none comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_partial_bulk_stores_publishes_and_acknowledges_it() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let (events, store) = (
        TestExchange::topic("tx-events"),
        TestMongo::new(&mongodb_url()),
    );
    events.declare().await;
    let port = free_port();
    let mut vars = env(&db, &queue, &drop_in(&events, &store));
    vars.insert("BULK_RECORDER_FLUSH_TIMEOUT_MS".into(), "60000".into());
    vars.insert("METRICS_ADDR".into(), format!("127.0.0.1:{port}"));
    let mut child = spawn_recorder(vars);
    wait_until(Duration::from_secs(30), "ready", || async {
        matches!(http_get(port, "/readyz").await, Some((200, _)))
    })
    .await;
    let transactions: Vec<_> = (0..7).map(|_| with_metadata(5)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    wait_until(DRAIN, "7 messages held by the recorder", || async {
        broker_counts_async(&queue.name).await == (0, 7)
    })
    .await;
    assert_eq!(db.count("transaction").await, 0, "held, not yet written");

    terminate_within(&mut child, Duration::from_secs(20), "exits promptly").await;
    assert_eq!(db.count("transaction").await, 7);
    assert_eq!(db.count("operation").await, 35);
    assert_eq!(
        broker_counts_async(&queue.name).await,
        (0, 0),
        "all seven acknowledged, none back in the queue"
    );
    assert_eq!(events.take().await.len(), 7, "each message's event");
    assert_eq!(store.documents("transaction").await.len(), 7);
}

/// SIGTERM while the queue drains with events and documents on: every bulk in flight is
/// finished, so no message whose rows are stored goes back to the queue (each would come again,
/// be counted `ignored`, publish its event twice and spend a delivery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_drain_returns_nothing_committed_to_the_queue() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let (events, store) = (
        TestExchange::topic("tx-events"),
        TestMongo::new(&mongodb_url()),
    );
    events.declare().await;
    let transactions: Vec<_> = (0..1500)
        .map(|i| {
            if i % 4 == 0 {
                with_metadata(1)
            } else {
                sample_transaction(1)
            }
        })
        .collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let recorder = RunningRecorder::start(config(&db, &queue, &drop_in(&events, &store)));
    wait_until(DRAIN, "the first bulks committed", || async {
        recorder.committed_transactions() >= 200
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    let stored = stored_transaction_ids(&db).await;
    let back = u64::from(TestQueue::ready(&queue.name).await);
    assert!(stored.len() < transactions.len(), "stopped mid-drain");
    assert_eq!(
        stored.len() as u64 + back,
        transactions.len() as u64,
        "each message either stored and acknowledged, or back in the queue unwritten"
    );
    assert_eq!(metrics.shutdown_requeued.get(), 0, "nothing given up");
    assert_eq!(metrics.totals().transactions.inserted, stored.len() as u64);
    assert_eq!(
        events.take().await.len(),
        stored.len(),
        "one event per stored message, none twice"
    );
    let with_documents = transactions
        .iter()
        .filter(|t| t.metadata.is_some() && stored.contains(&t.id))
        .count();
    assert_eq!(store.documents("transaction").await.len(), with_documents);
}

/// What holds every bulk's settlement after its rows are committed.
enum Hold {
    /// The events' exchange is not declared yet.
    Events(TestExchange),
    /// The document store is stopped (its database dropped before the server, when dropped).
    Documents(TestMongo, OwnMongo),
}

impl Hold {
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Hold::Events(exchange) => vec![(
                "RABBITMQ_TRANSACTION_EVENTS_EXCHANGE",
                exchange.name.clone(),
            )],
            Hold::Documents(store, own) => vec![
                ("MONGODB_URL", own.url()),
                ("MONGODB_DATABASE", store.name.clone()),
            ],
        }
    }

    async fn release(&mut self) {
        match self {
            Hold::Events(exchange) => exchange.declare().await,
            Hold::Documents(_, own) => own.restart(),
        }
    }
}

/// A child whose parent comes later, while `hold` holds every bulk (two other messages written,
/// their settlement held): the parent is delivered but cannot be written while both bulks in
/// flight are held. The hold is three times the child's wait; the child must not be
/// dead-lettered for it.
async fn a_hold_does_not_use_up_a_childs_parent_wait(mut hold: Hold) {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let parent = with_metadata(2);
    let mut child = with_metadata(2);
    child.parent_transaction_id = Some(parent.id);
    let mut vars = hold.env();
    vars.push(("BULK_RECORDER_MISSING_PARENT_WAIT_MS", "3000".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let recorder = RunningRecorder::start(config(&db, &queue, &vars));
    queue
        .publish_transactions(std::slice::from_ref(&child), Format::Json)
        .await;
    wait_until(DRAIN, "the child waiting for its parent", || async {
        recorder.metrics.parked.get() == 1
    })
    .await;
    for i in 0..2 {
        queue
            .publish_transactions(&[with_metadata(1)], Format::Json)
            .await;
        wait_until(DRAIN, "written, its settlement held", || async {
            db.count("transaction").await == i + 1
        })
        .await;
    }
    queue
        .publish_transactions(std::slice::from_ref(&parent), Format::Json)
        .await;
    wait_until(DRAIN, "the parent delivered", || async {
        broker_counts_async(&queue.name).await == (0, 4)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(db.count("transaction").await, 2, "the parent not written");

    hold.release().await;
    wait_until(DRAIN, "all four stored and acknowledged", || async {
        db.count("transaction").await == 4 && broker_counts_async(&queue.name).await == (0, 0)
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.rejected_total(), 0, "nothing dead-lettered");
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().expect("dlq")).await,
        0
    );
    assert!(stored_transaction_ids(&db).await.contains(&child.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_of_the_events_does_not_use_up_a_childs_parent_wait() {
    a_hold_does_not_use_up_a_childs_parent_wait(Hold::Events(TestExchange::topic("tx-events")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_of_the_document_store_does_not_use_up_a_childs_parent_wait() {
    let Some(mut own) = OwnMongo::start() else {
        return;
    };
    let store = TestMongo::new(&own.url());
    own.stop();
    a_hold_does_not_use_up_a_childs_parent_wait(Hold::Documents(store, own)).await;
}

/// `BULK_RECORDER_DEAD_LETTER_EXCHANGE` names an exchange not declared yet (a typo, topology
/// re-created after a broker restart): the good messages are stored and acknowledged, the bad
/// one waits unacknowledged, and it is dead-lettered once the exchange exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_exchange_not_there_yet_holds_only_its_own_message() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let dead = TestExchange::direct("dlx", "rejected");
    let good: Vec<_> = (0..100).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&good, Format::Json).await;
    queue
        .publish_raw(vec![(b"{\"id\": ".to_vec(), "application/json")])
        .await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("BULK_RECORDER_DEAD_LETTER_EXCHANGE", &dead.name),
            ("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY", "rejected"),
        ],
    ));
    wait_until(
        Duration::from_secs(20),
        "the 100 good messages stored and acknowledged",
        || async {
            db.count("transaction").await == 100 && broker_counts_async(&queue.name).await == (0, 1)
        },
    )
    .await;

    dead.declare().await;
    wait_until(DRAIN, "the bad message dead-lettered", || async {
        broker_counts_async(&queue.name).await == (0, 0)
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    let letters = dead.take().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header("x-bulk-recorder-reason"), "malformed");
    assert_eq!(letters[0].body, b"{\"id\": ");
    assert_eq!(metrics.dead_lettered_count("malformed"), 1);
}
