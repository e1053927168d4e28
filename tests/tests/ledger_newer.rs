//! The ledger's newer messages and columns (after v4.0.0-beta.11, read from its later public
//! code: `shared/midaz-facts.md`, "Later lines"), built from its own fixtures as the facts
//! describe them: several `QueueData` entries in one message, outcome-backed payloads, engine
//! envelopes inside `QueueData`, and tables with `operation.recorded_at` and the later nullable
//! `transaction` columns.

use std::time::Duration;

use bulk_recorder::message::Format;
use bulk_recorder_e2e::{exchange::TestExchange, ledger::*, *};
use bulk_recorder_publish::sample_transaction;
use chrono::{DateTime, Utc};
use rmpv::Value as Msgpack;
use sqlx::Row;
use uuid::Uuid;

const DRAIN: Duration = Duration::from_secs(60);

/// A database with the ledger's tables, a queue, and a recorder with migrations off whose dead
/// letters go to `dead` (bound).
async fn ledger_recorder(dead: &TestExchange) -> (TestDb, TestQueue, RunningRecorder) {
    let db = TestDb::create().await;
    create_ledger_tables(&db).await;
    let queue = TestQueue::new();
    dead.declare().await;
    let vars = [
        ("BULK_RECORDER_MIGRATE", "false"),
        ("BULK_RECORDER_DEAD_LETTER_EXCHANGE", dead.name.as_str()),
        (
            "BULK_RECORDER_DEAD_LETTER_ROUTING_KEY",
            dead.binding.as_str(),
        ),
    ];
    let recorder = RunningRecorder::start(config(&db, &queue, &vars));
    (db, queue, recorder)
}

async fn publish_and_settle(recorder: &RunningRecorder, queue: &TestQueue, bodies: Vec<Vec<u8>>) {
    let count = bodies.len();
    let decoded_before =
        recorder.metrics.decoded_count("midaz") + recorder.metrics.rejected_total();
    queue
        .publish_raw(
            bodies
                .into_iter()
                .map(|b| (b, "application/json"))
                .collect(),
        )
        .await;
    wait_until(DRAIN, "every message settled and acknowledged", || async {
        recorder.metrics.decoded_count("midaz") + recorder.metrics.rejected_total()
            == decoded_before + count as u64
            && broker_counts(&queue.name) == (0, 0)
    })
    .await;
}

/// One message with three entries (a posting, a PENDING transaction, a NOTED annotation): three
/// transactions stored with every column as the ledger's consumer writes each, one message
/// decoded and acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_three_entries_stores_three_transactions_and_is_acknowledged_once() {
    let dead = TestExchange::direct("dlx", "dead");
    let (db, queue, recorder) = ledger_recorder(&dead).await;
    let cases = [fixture("approved"), fixture("pending"), fixture("noted")];
    let bodies: Vec<&[u8]> = cases.iter().map(|c| c.body.as_slice()).collect();
    publish_and_settle(&recorder, &queue, vec![with_entries(&bodies)]).await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    for case in &cases {
        for row in case.transactions() {
            assert_row(&db, "transaction", row).await;
        }
        for row in case.operations() {
            assert_row(&db, "operation", row).await;
        }
    }
    assert_eq!(db.count("transaction").await, 3);
    assert_eq!(metrics.decoded_count("midaz"), 1, "one message");
    assert_eq!(metrics.totals().transactions.inserted, 3);
    assert_eq!(metrics.rejected_total(), 0);
    assert!(dead.take().await.is_empty());
}

/// One bad entry (a nil amount) refuses the whole message with its reason, naming the entry:
/// the good entry beside it is not written either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_a_bad_entry_is_refused_whole() {
    let dead = TestExchange::direct("dlx", "dead");
    let (db, queue, recorder) = ledger_recorder(&dead).await;
    let (good, bad) = (fixture("approved"), fixture("nil-decimal"));
    let body = with_entries(&[&good.body, &bad.body]);
    publish_and_settle(&recorder, &queue, vec![body.clone()]).await;
    recorder.stop().await;
    assert_eq!(db.count("transaction").await, 0, "nothing written half");
    let letters = dead.take().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header("x-bulk-recorder-reason"), "invalid");
    assert!(
        letters[0]
            .header("x-bulk-recorder-error")
            .contains("QueueData[1]")
    );
    assert_eq!(letters[0].body, body, "the message as it came");
}

/// Outcome-backed payloads (`AttemptOwner`, `RevertRolloutToken`) and an engine envelope inside
/// `QueueData[0].Value` are dead-lettered `unsupported` (replayable to the ledger's consumer),
/// and nothing of them is stored; a plain message beside them is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_backed_payloads_and_nested_engine_envelopes_are_dead_lettered_unsupported() {
    let dead = TestExchange::direct("dlx", "dead");
    let (db, queue, recorder) = ledger_recorder(&dead).await;
    let approved = fixture("approved").body;
    let envelope = std::fs::read(fixture_dir().join("engine-envelope.json")).unwrap();
    let refused = vec![
        with_payload_keys(&approved, &[("AttemptOwner", Msgpack::from("worker-7:42"))]),
        with_payload_keys(&approved, &[("RevertRolloutToken", Msgpack::from("rv-1"))]),
        with_queue_value(&approved, &envelope),
    ];
    publish_and_settle(&recorder, &queue, refused).await;
    assert_eq!(db.count("transaction").await, 0);
    publish_and_settle(&recorder, &queue, vec![fixture("pending").body]).await;
    recorder.stop().await;
    assert_eq!(db.count("transaction").await, 1, "the plain message only");
    let letters = dead.take().await;
    let reasons: Vec<&str> = letters
        .iter()
        .map(|l| l.header("x-bulk-recorder-reason"))
        .collect();
    assert_eq!(reasons, ["unsupported"; 3]);
    let errors: Vec<&str> = letters
        .iter()
        .map(|l| l.header("x-bulk-recorder-error"))
        .collect();
    assert!(errors[0].contains("AttemptOwner"), "{}", errors[0]);
    assert!(errors[1].contains("RevertRolloutToken"), "{}", errors[1]);
    assert!(errors[2].contains("envelope"), "{}", errors[2]);
}

/// Adds the later columns to the ledger's tables, as its later migrations do.
async fn add_later_columns(db: &TestDb) {
    let pool = db.pool().await;
    sqlx::raw_sql(
        "ALTER TABLE operation ADD COLUMN recorded_at TIMESTAMPTZ NULL;
         ALTER TABLE transaction ADD COLUMN group_id UUID NULL,
             ADD COLUMN operational_type_code TEXT NULL,
             ADD COLUMN applied_exception_id UUID NULL,
             ADD COLUMN scheme VARCHAR(16) NULL;",
    )
    .execute(&pool)
    .await
    .expect("the later migrations");
    pool.close().await;
}

async fn server_now(db: &TestDb) -> DateTime<Utc> {
    let pool = db.pool().await;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    now
}

/// Tables with the later columns: every operation gets `recorded_at` (the server's clock at the
/// insert, one value per bulk: the same for the operations of one message), by `COPY`, by the
/// upsert and one by one; a redelivery keeps the first value; the later `transaction` columns
/// are written from the messages that carry them and left NULL otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_columns_are_written_where_the_tables_have_them() {
    let db = TestDb::create().await;
    create_ledger_tables(&db).await;
    add_later_columns(&db).await;
    let queue = TestQueue::new();
    let before = server_now(&db).await;
    let group = Uuid::now_v7();
    // 40 new transactions: a bulk that goes in by COPY.
    let mut copied: Vec<_> = (0..40).map(|_| sample_transaction(3)).collect();
    copied[0].group_id = Some(group);
    copied[0].scheme = Some("PIX".into());
    copied[0].operational_type_code = Some("P2P".into());
    copied[0].applied_exception_id = Some(group);
    let overrides = [
        ("BULK_RECORDER_MIGRATE", "false"),
        ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "2000"),
    ];
    let recorder = RunningRecorder::start(config(&db, &queue, &overrides));
    queue.publish_transactions(&copied, Format::Json).await;
    wait_until(DRAIN, "the COPY bulk stored", || async {
        recorder.committed_transactions() == 40
    })
    .await;
    // A redelivery of one and a new one: a bulk that goes in by the upsert.
    let upserted = sample_transaction(2);
    queue
        .publish_transactions(&[copied[1].clone(), upserted.clone()], Format::Json)
        .await;
    wait_until(DRAIN, "the upsert bulk stored", || async {
        recorder.committed_transactions() == 42
    })
    .await;
    recorder.stop().await;
    // One message at a time.
    let single = sample_transaction(2);
    queue
        .publish_transactions(std::slice::from_ref(&single), Format::Json)
        .await;
    let one_by_one = [
        ("BULK_RECORDER_MIGRATE", "false"),
        ("BULK_RECORDER_ENABLED", "false"),
    ];
    let recorder = RunningRecorder::start(config(&db, &queue, &one_by_one));
    wait_until(DRAIN, "the single message stored", || async {
        recorder.committed_transactions() == 1
    })
    .await;
    recorder.stop().await;
    let after = server_now(&db).await;

    let pool = db.pool().await;
    let rows = sqlx::query(
        "SELECT transaction_id, count(*), count(DISTINCT recorded_at), min(recorded_at), \
         max(recorded_at) FROM operation GROUP BY transaction_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 42, "every transaction's operations");
    for row in &rows {
        let id: Uuid = row.get(0);
        let distinct: i64 = row.get(2);
        let (first, last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
            (row.get(3), row.get(4));
        let recorded = first.unwrap_or_else(|| panic!("{id}: recorded_at set"));
        assert_eq!(distinct, 1, "{id}: one value per bulk");
        assert_eq!(first, last);
        assert!(
            before <= recorded && recorded <= after,
            "{id}: the server's clock"
        );
    }
    let copy_times: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT recorded_at) FROM operation WHERE transaction_id = ANY($1)",
    )
    .bind(copied.iter().map(|t| t.id).collect::<Vec<_>>())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        copy_times, 1,
        "the COPY bulk: one value; the redelivery kept it"
    );
    let later: (Option<Uuid>, Option<String>, Option<String>, Option<Uuid>) = sqlx::query_as(
        "SELECT group_id, scheme, operational_type_code, applied_exception_id FROM transaction \
         WHERE id = $1",
    )
    .bind(copied[0].id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        later,
        (
            Some(group),
            Some("PIX".into()),
            Some("P2P".into()),
            Some(group)
        )
    );
    let unset: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transaction WHERE group_id IS NULL AND scheme IS NULL \
         AND operational_type_code IS NULL AND applied_exception_id IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(unset, 41, "left NULL where the message carries nothing");
    pool.close().await;
}
