//! Rows the database refuses outside SQLSTATE classes 22 and 23: an index row too large (54000),
//! a bulk that can never fit the statement timeout (57014), a trigger that refuses one row
//! (P0001). None of them may hold the queue forever: the bulk ends in the fallback, the good
//! messages are stored, and the message to blame (if any) is dead-lettered with the error.

use std::time::Duration;

use bulk_recorder::{message::Format, store::db};
use bulk_recorder_e2e::*;
use bulk_recorder_publish::sample_transaction;

const DRAIN: Duration = Duration::from_secs(90);

/// The test's database with the recorder's tables and `sql` run on it (an index or a trigger
/// of the ledger's own, say).
async fn tables_with(sql: &str) -> TestDb {
    let test_db = TestDb::create().await;
    let pool = test_db.pool().await;
    db::migrate(&pool).await.expect("migrations");
    sqlx::raw_sql(sql).execute(&pool).await.expect(sql);
    pool.close().await;
    test_db
}

/// Publishes `good` good transactions and `bad` (in the middle), drains them with one worker,
/// and returns the recorder's metrics once every message is settled.
async fn drain(
    db: &TestDb,
    queue: &TestQueue,
    good: usize,
    bad: Option<bulk_recorder::message::Transaction>,
    overrides: &[(&str, &str)],
) -> std::sync::Arc<bulk_recorder::telemetry::metrics::Metrics> {
    let mut transactions: Vec<_> = (0..good).map(|_| sample_transaction(2)).collect();
    let expected = transactions.clone();
    if let Some(bad) = bad {
        transactions.insert(good / 2, bad);
    }
    let total = transactions.len() as u64;
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let mut all = vec![
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "40"),
        ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "1000"),
    ];
    all.extend_from_slice(overrides);
    let recorder = RunningRecorder::start(config(db, queue, &all));
    wait_until(DRAIN, "every message settled", || async {
        recorder.settled_messages() == total
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    let ids: std::collections::BTreeSet<_> = expected.iter().map(|t| t.id).collect();
    assert_eq!(
        stored_transaction_ids(db).await,
        ids,
        "every good message stored"
    );
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_row_too_large_dead_letters_its_message_only() {
    // The ledger's tables may carry indexes of their own.
    let db = tables_with("CREATE INDEX operation_description ON operation (description)").await;
    let queue = TestQueue::with_dead_letters().await;
    let mut huge = sample_transaction(2);
    // Random text does not compress below btree's 2704-byte limit.
    huge.operations[0].description = (0..400)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let metrics = drain(&db, &queue, 9, Some(huge), &[]).await;
    assert_eq!(metrics.rejected("database"), 1);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_that_can_never_fit_the_statement_timeout_is_split() {
    // A statement-level trigger that takes 0.15 s per row: a bulk of 20 never fits 1 s, one
    // message always does.
    let db = tables_with(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.15 * (SELECT count(*) FROM new_rows)); RETURN NULL; END $$;
         CREATE TRIGGER slow AFTER INSERT ON transaction REFERENCING NEW TABLE AS new_rows
         FOR EACH STATEMENT EXECUTE FUNCTION slow();",
    )
    .await;
    let queue = TestQueue::with_dead_letters().await;
    let metrics = drain(
        &db,
        &queue,
        20,
        None,
        &[("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "1000")],
    )
    .await;
    assert_eq!(
        metrics.fallbacks.get(),
        1,
        "split after repeated statement timeouts"
    );
    assert_eq!(metrics.rejected_total(), 0, "no good message dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_a_trigger_refuses_again_and_again_is_dead_lettered_with_its_error() {
    let db = tables_with(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.description = 'refuse me' THEN
             RAISE EXCEPTION 'this ledger refuses the row';
         END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON transaction
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await;
    let queue = TestQueue::with_dead_letters().await;
    let mut refused = sample_transaction(2);
    refused.description = "refuse me".into();
    let metrics = drain(&db, &queue, 9, Some(refused), &[]).await;
    assert_eq!(metrics.rejected("database"), 1);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        1
    );
}

/// A statement cancelled again and again on one message (the statement timeout here; an
/// administrator's `pg_cancel_backend` alike) while `SELECT 1` answers: a cancel is load, not
/// data, so the message is held, never dead-lettered; it is stored once the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cancelled_again_and_again_is_held_not_dead_lettered() {
    let db = tables_with(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.description = 'slow' THEN PERFORM pg_sleep(3); END IF; RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON transaction FOR EACH ROW EXECUTE FUNCTION slow();",
    )
    .await;
    let queue = TestQueue::with_dead_letters().await;
    let mut transactions: Vec<_> = (0..9).map(|_| sample_transaction(2)).collect();
    let mut slow = sample_transaction(2);
    slow.description = "slow".into();
    transactions.insert(4, slow.clone());
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "40"),
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "1000"),
            ("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "1000"),
        ],
    ));
    wait_until(DRAIN, "the others stored", || async {
        db.count("transaction").await == 9
    })
    .await;
    wait_until(DRAIN, "the slow one cancelled again and again", || async {
        recorder.metrics.retries.get() >= 6
    })
    .await;
    assert_eq!(recorder.metrics.rejected_total(), 0, "never dead-lettered");
    assert!(recorder.health.holding(), "held, and readiness says so");
    let pool = db.pool().await;
    sqlx::query("DROP TRIGGER slow ON transaction")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    wait_until(DRAIN, "stored once the cause is gone", || async {
        recorder.committed_transactions() == 10
    })
    .await;
    recorder.stop().await;
    assert_eq!(stored_transaction_ids(&db).await.len(), 10);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        0
    );
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}
