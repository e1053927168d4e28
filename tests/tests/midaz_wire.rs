//! The reference ledger's own queue messages (written by its Go libraries) against the real
//! broker and database: each is published as the ledger publishes it (labelled
//! `application/json`), a recorder in `auto` mode with migrations off drains it into tables
//! laid out like the ledger's, and every column of every row is compared with what the
//! ledger's own consumer writes (`recorder/tests/fixtures/midaz-wire/*.expected.json`).

use std::{sync::Arc, time::Duration};

use bulk_recorder::telemetry::metrics::Metrics;
use bulk_recorder_e2e::{ledger::*, *};
use serde_json::{Value, json};

const DRAIN: Duration = Duration::from_secs(60);

/// A database with the ledger's tables and a queue with a dead-letter queue.
async fn ledger() -> (TestDb, TestQueue) {
    let db = TestDb::create().await;
    create_ledger_tables(&db).await;
    (db, TestQueue::with_dead_letters().await)
}

/// Publishes each group of bodies and lets a recorder settle it before the next group (so
/// that groups land in different bulks); returns the recorder's metrics.
async fn drain(
    db: &TestDb,
    queue: &TestQueue,
    groups: Vec<Vec<Vec<u8>>>,
    overrides: &[(&str, &str)],
) -> Arc<Metrics> {
    let mut env = vec![("BULK_RECORDER_MIGRATE", "false")];
    env.extend_from_slice(overrides);
    let recorder = RunningRecorder::start(config(db, queue, &env));
    let mut published = 0;
    for bodies in groups {
        published += bodies.len() as u64;
        queue
            .publish_raw(
                bodies
                    .into_iter()
                    .map(|b| (b, "application/json"))
                    .collect(),
            )
            .await;
        wait_until(DRAIN, "every message settled", || async {
            recorder.settled_messages() == published
        })
        .await;
    }
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(
        TestQueue::ready(&queue.name).await,
        0,
        "nothing left queued"
    );
    metrics
}

async fn assert_rows(db: &TestDb, fixture: &Fixture) {
    for row in fixture.transactions() {
        assert_row(db, "transaction", row).await;
    }
    for row in fixture.operations() {
        assert_row(db, "operation", row).await;
    }
}

/// An insert fixture: its rows, and nothing else, are stored; one message decoded as `midaz`.
async fn insert_case(name: &str) -> std::sync::Arc<bulk_recorder::telemetry::metrics::Metrics> {
    let (db, queue) = ledger().await;
    let case = fixture(name);
    let metrics = drain(&db, &queue, vec![vec![case.body.clone()]], &[]).await;
    assert_rows(&db, &case).await;
    assert_eq!(db.count("transaction").await, 1);
    assert_eq!(
        db.count("operation").await as usize,
        case.operations().len()
    );
    assert_eq!(metrics.decoded_count("midaz"), 1);
    let totals = metrics.totals();
    assert_eq!(
        (totals.transactions.inserted, totals.operations.inserted),
        (1, case.operations().len() as u64)
    );
    if name != "metadata" {
        assert_eq!(metrics.metadata_not_stored_count(), 0, "{name}");
    }
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_posting_is_stored_as_the_ledger_stores_it() {
    insert_case("approved").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_transaction_keeps_its_input_as_json() {
    insert_case("pending").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noted_annotation_without_operations_is_stored() {
    insert_case("noted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_decimals_and_every_zero_encoding_are_exact() {
    insert_case("big-decimals").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_a_lost_transaction_date_do_not_disturb_the_rows() {
    let metrics = insert_case("metadata").await;
    assert_eq!(
        metrics.metadata_not_stored_count(),
        1,
        "the metadata the ledger keeps in its document store is counted as not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_with_routes_is_stored_after_its_parent() {
    let (db, queue) = ledger().await;
    let (parent, revert) = (fixture("approved"), fixture("route"));
    drain(
        &db,
        &queue,
        vec![vec![parent.body.clone(), revert.body.clone()]],
        &[],
    )
    .await;
    assert_rows(&db, &parent).await;
    assert_rows(&db, &revert).await;
}

/// The PENDING row with the transition applied: status, description and `updated_at` from the
/// message; every other column as it was.
fn transitioned(row: &Value, update: &Value) -> Value {
    let mut row = row.clone();
    for (column, value) in update["set"].as_object().expect("set") {
        row[column] = value.clone();
    }
    row
}

/// The PENDING row approved by its commit, every leg of both stored, and the transactions
/// counted as `(attempted, inserted, updated, ignored)`.
async fn assert_committed(
    db: &TestDb,
    pending: &Fixture,
    commit: &Fixture,
    metrics: &Metrics,
    counts: (u64, u64, u64, u64),
) {
    let t = metrics.totals().transactions;
    assert_eq!((t.attempted, t.inserted, t.updated, t.ignored), counts);
    assert_eq!(t.conflicting, 0);
    let row = transitioned(
        &pending.transactions()[0],
        &commit.expected["transaction_update"],
    );
    assert_eq!(row["status"], "APPROVED");
    assert_row(db, "transaction", &row).await;
    for op in pending.operations().iter().chain(commit.operations()) {
        assert_row(db, "operation", op).await;
    }
    assert_eq!(
        db.count("operation").await,
        5,
        "2 hold legs and 3 commit legs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_a_later_bulk_approves_the_pending_row_and_adds_its_legs() {
    let (db, queue) = ledger().await;
    let (pending, commit) = (fixture("pending"), fixture("commit"));
    let metrics = drain(
        &db,
        &queue,
        vec![vec![pending.body.clone()], vec![commit.body.clone()]],
        &[],
    )
    .await;
    assert_committed(&db, &pending, &commit, &metrics, (2, 1, 1, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_transaction_and_its_commit_in_one_bulk_end_approved() {
    let (db, queue) = ledger().await;
    let (pending, commit) = (fixture("pending"), fixture("commit"));
    let metrics = drain(
        &db,
        &queue,
        vec![vec![pending.body.clone(), commit.body.clone()]],
        &[
            ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "2"),
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    assert_eq!(
        metrics.flushes(bulk_recorder::telemetry::metrics::FlushTrigger::Size),
        1,
        "both messages in one bulk"
    );
    assert_committed(&db, &pending, &commit, &metrics, (2, 1, 1, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_commit_is_ignored_and_a_final_status_never_moves_back() {
    let (db, queue) = ledger().await;
    let (pending, commit) = (fixture("pending"), fixture("commit"));
    let metrics = drain(
        &db,
        &queue,
        vec![
            vec![pending.body.clone()],
            vec![commit.body.clone()],
            // A redelivery of the commit, then the PENDING message once more.
            vec![commit.body.clone(), pending.body.clone()],
        ],
        &[],
    )
    .await;
    assert_committed(&db, &pending, &commit, &metrics, (4, 1, 1, 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_releases_a_stored_pending_transaction() {
    let (db, queue) = ledger().await;
    let cancel = fixture("cancel");
    let stored = &cancel.expected["prerequisite_rows"]["transactions"];
    insert_rows(&db, "transaction", stored.as_array().expect("rows")).await;
    let metrics = drain(&db, &queue, vec![vec![cancel.body.clone()]], &[]).await;
    let row = transitioned(&stored[0], &cancel.expected["transaction_update"]);
    assert_eq!(row["status"], "CANCELED");
    assert_row(&db, "transaction", &row).await;
    assert_rows(&db, &cancel).await;
    assert_eq!(metrics.totals().transactions.updated, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nil_amount_is_dead_lettered_as_invalid_and_nothing_is_written() {
    let (db, queue) = ledger().await;
    let case = fixture("nil-decimal");
    let metrics = drain(&db, &queue, vec![vec![case.body.clone()]], &[]).await;
    assert_eq!(metrics.rejected("invalid"), 1);
    assert_eq!(db.count("transaction").await, 0, "no partial posting");
    assert_eq!(db.count("operation").await, 0);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().expect("dlq")).await,
        1
    );
    // The reason names the field and the column.
    let error = bulk_recorder::message::decode(&case.body, None, 1 << 20).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("Operations[1]") && text.contains("Amount.Value is nil"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_envelope_is_acknowledged_skipped_and_writes_nothing() {
    let (db, queue) = ledger().await;
    let empty = with_empty_queue_data(&fixture("approved").body);
    let metrics = drain(&db, &queue, vec![vec![empty]], &[]).await;
    assert_eq!(metrics.skipped("empty"), 1);
    assert_eq!(metrics.rejected_total(), 0);
    assert_eq!(db.count("transaction").await, 0);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().expect("dlq")).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_message_without_version_is_inserted_with_the_ledgers_zero_values() {
    let (db, queue) = ledger().await;
    let case = fixture("approved");
    let metrics = drain(&db, &queue, vec![vec![as_legacy(&case.body)]], &[]).await;
    assert_eq!(metrics.decoded_count("midaz_legacy"), 1);
    assert_row(&db, "transaction", &case.transactions()[0]).await;
    for op in case.operations() {
        // What the ledger writes for keys its v3.5 producers did not send.
        let mut op = op.clone();
        op["direction"] = json!("");
        op["snapshot"] = json!({"overdraftUsedBefore": "", "overdraftUsedAfter": ""});
        assert_row(&db, "operation", &op).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_messages_re_encoded_by_another_msgpack_library_store_the_same_rows() {
    let (db, queue) = ledger().await;
    let case = fixture("big-decimals");
    drain(
        &db,
        &queue,
        vec![vec![rewrite_payload(&case.body, |_| {})]],
        &[],
    )
    .await;
    assert_rows(&db, &case).await;
}
