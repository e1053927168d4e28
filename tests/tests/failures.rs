//! What happens to messages when something goes wrong: bad rows, bad bodies, a database or a
//! broker that goes away. Every test ends by counting rows in PostgreSQL and messages in
//! RabbitMQ: nothing lost, nothing stored twice.

use std::{collections::BTreeSet, time::Duration};

use bulk_recorder::message::{Format, Transaction};
use bulk_recorder_e2e::*;
use bulk_recorder_publish::{encode, sample_transaction};
use uuid::Uuid;

const DRAIN: Duration = Duration::from_secs(90);

/// Decodes fine (sent in the ledger's format, whose timestamps cover any year), but dates from
/// 7000 years ago: PostgreSQL refuses the row (22008, timestamp out of range).
fn poison() -> Transaction {
    let mut t = sample_transaction(2);
    t.created_at = chrono::DateTime::from_timestamp(-220_898_664_000, 0).expect("a year -5030");
    t
}

fn ids(transactions: &[Transaction]) -> BTreeSet<Uuid> {
    transactions.iter().map(|t| t.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fallback_a_poison_message_costs_only_itself() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let mut transactions: Vec<_> = (0..9).map(|_| sample_transaction(2)).collect();
    let bad = poison();
    transactions.insert(4, bad.clone());
    queue
        .publish_transactions(&transactions, Format::Midaz)
        .await;

    let recorder =
        RunningRecorder::start(config(&db, &queue, &[("RABBITMQ_NUMBERS_OF_WORKERS", "1")]));
    wait_until(DRAIN, "9 good ones committed", || async {
        recorder.committed_transactions() == 9
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    let good: Vec<_> = transactions
        .iter()
        .filter(|t| t.id != bad.id)
        .cloned()
        .collect();
    assert_eq!(stored_transaction_ids(&db).await, ids(&good));
    assert_eq!(db.count("operation").await, 18);
    assert_eq!(metrics.fallbacks.get(), 1);
    assert_eq!(metrics.rejected("database"), 1);
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        1,
        "the poison is dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fallback_a_refused_bulk_is_halved_until_the_poison_stands_alone() {
    // A quorum queue that dead-letters any message returned to it even once: a requeue of the
    // good siblings (the old "no fallback") would dead-letter them.
    let (db, queue) = (
        TestDb::create().await,
        TestQueue::quorum_with_dead_letters(Some(0)).await,
    );
    let mut transactions: Vec<_> = (0..31).map(|_| sample_transaction(2)).collect();
    transactions.push(poison());
    queue
        .publish_transactions(&transactions, Format::Midaz)
        .await;
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "32"),
        ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "2000"),
        ("BULK_RECORDER_FALLBACK_ENABLED", "false"),
    ];
    let recorder = RunningRecorder::start(config(&db, &queue, &overrides));
    wait_until(DRAIN, "31 committed and the poison rejected", || async {
        recorder.settled_messages() == 32
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(stored_transaction_ids(&db).await, ids(&transactions[..31]));
    assert_eq!(metrics.rejected("database"), 1);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        1,
        "only the poison is dead-lettered: no good sibling was requeued"
    );
    assert_eq!(broker_counts(&queue.name), (0, 0));
    // Halves of 16, 8, 4, 2 and 1 good messages: 5 writes, where one at a time takes 31.
    assert_eq!(metrics.fallbacks.get(), 1);
    assert_eq!(metrics.bulk_duration.get_sample_count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_invalid_messages_never_reach_the_database() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let good: Vec<_> = (0..4).map(|_| sample_transaction(2)).collect();
    let mut mismatched = sample_transaction(2);
    mismatched.operations[0].transaction_id = Uuid::now_v7();
    let mut bodies: Vec<(Vec<u8>, &'static str)> = vec![
        (b"{\"id\": ".to_vec(), "application/json"),
        (Vec::new(), "application/json"),
        (b"\xc1\xc1garbage".to_vec(), "application/msgpack"),
        (br#"{"id":"not-a-uuid"}"#.to_vec(), "application/json"),
        (encode(&mismatched, Format::Json), "application/json"),
        (vec![b' '; 2 * 1024 * 1024], "application/json"),
    ];
    // The content type does not decide: this JSON body labelled text/xml is stored.
    bodies.push((encode(&good[0], Format::Json), "text/xml"));
    bodies.extend(
        good[1..]
            .iter()
            .map(|t| (encode(t, Format::Json), "application/json")),
    );
    queue.publish_raw(bodies).await;

    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    wait_until(DRAIN, "4 committed and 6 rejected", || async {
        recorder.committed_transactions() == 4 && recorder.metrics.rejected_total() == 6
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    assert_eq!(stored_transaction_ids(&db).await, ids(&good));
    for (reason, expected) in [
        ("malformed", 3),
        ("empty", 1),
        ("invalid", 1),
        ("too_large", 1),
    ] {
        assert_eq!(metrics.rejected(reason), expected, "reason {reason}");
    }
    assert_eq!(metrics.fallbacks.get(), 0, "bad messages never fail a bulk");
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_nothing_and_readiness_follows_it() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "20"),
    ];
    let (mut transactions, recorder) = recorder_mid_drain(&db, &queue, 60, 2, &overrides, 60).await;

    // The database goes away: new connections are refused and existing ones are killed. The
    // rest of the messages come meanwhile, so that bulks meet the outage whatever the speed.
    db.allow_connections(false).await;
    db.terminate_backends().await;
    let rest: Vec<_> = (0..1440).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&rest, Format::Json).await;
    transactions.extend(rest);
    wait_until(DRAIN, "not ready", || async { !recorder.health.ready() }).await;
    let during = recorder.committed_transactions();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        recorder.committed_transactions(),
        during,
        "nothing commits while the database is away"
    );

    db.allow_connections(true).await;
    wait_until(DRAIN, "all committed", || async {
        db.count("transaction").await == 1500
    })
    .await;
    wait_until(DRAIN, "ready again", || async { recorder.health.ready() }).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    assert!(metrics.retries.get() > 0, "the outage was seen and retried");
    assert_stored_exactly_once(&db, &queue, &transactions).await;
    let totals = metrics.totals();
    assert_eq!(
        totals.transactions.inserted, 1500,
        "every row inserted once"
    );
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_broker_connection_is_reopened_and_nothing_is_lost() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "2"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "10"),
    ];
    let (transactions, recorder) = recorder_mid_drain(&db, &queue, 1500, 2, &overrides, 40).await;
    let name = queue.name.clone();
    let closed = tokio::task::spawn_blocking(move || close_recorder_connections(&name))
        .await
        .unwrap();
    assert_eq!(closed, 1, "the recorder's connection was found and closed");

    wait_until(DRAIN, "all committed", || async {
        db.count("transaction").await == 1500
    })
    .await;
    wait_until(DRAIN, "ready again", || async { recorder.health.ready() }).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    assert_stored_exactly_once(&db, &queue, &transactions).await;
    let totals = metrics.totals();
    assert_eq!(totals.transactions.inserted, 1500);
    assert_eq!(
        totals.transactions.attempted,
        1500 + totals.transactions.ignored,
        "redelivered rows are counted as ignored"
    );
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrations_the_recorder_waits_for_the_ledgers_tables() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let transactions: Vec<_> = (0..10).map(|_| sample_transaction(2)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let recorder =
        RunningRecorder::start(config(&db, &queue, &[("BULK_RECORDER_MIGRATE", "false")]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        broker_counts(&queue.name),
        (10, 0),
        "nothing consumed while the tables are missing (the start-up check names them)"
    );
    assert!(!recorder.health.ready());
    assert_eq!(
        db.count("transaction").await,
        0,
        "the recorder created nothing"
    );

    // The ledger creates its tables; the recorder writes into them without restarting.
    let pool = db.pool().await;
    bulk_recorder::store::db::migrate(&pool).await.unwrap();
    wait_until(DRAIN, "10 committed", || async {
        recorder.committed_transactions() == 10
    })
    .await;
    recorder.stop().await;
    assert_eq!(stored_transaction_ids(&db).await, ids(&transactions));
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}
