//! Status transitions, conflicting duplicates and foreign msgpack producers, in the `json` and
//! `msgpack` formats, through the real broker and database (the `midaz` format has its own
//! file, `midaz_wire.rs`).

use std::time::Duration;

use bulk_recorder::message::{Decimal, Format, Transaction};
use bulk_recorder_e2e::*;
use bulk_recorder_publish::{encode, pending_and_commit, sample_transaction};

const DRAIN: Duration = Duration::from_secs(60);

/// Publishes `groups` one after the other, each settled before the next is published.
async fn record(
    db: &TestDb,
    queue: &TestQueue,
    groups: Vec<Vec<(Vec<u8>, &'static str)>>,
    overrides: &[(&str, &str)],
) -> bulk_recorder::telemetry::counts::WriteCounts {
    let recorder = RunningRecorder::start(config(db, queue, overrides));
    let mut published = 0;
    for bodies in groups {
        published += bodies.len() as u64;
        queue.publish_raw(bodies).await;
        wait_until(DRAIN, "every message settled", || async {
            recorder.settled_messages() == published
        })
        .await;
    }
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    totals
}

fn bodies<'a>(
    transactions: impl IntoIterator<Item = &'a Transaction>,
    format: Format,
) -> Vec<(Vec<u8>, &'static str)> {
    transactions
        .into_iter()
        .map(|t| {
            (
                encode(t, format),
                bulk_recorder_publish::content_type(format),
            )
        })
        .collect()
}

/// Each transaction is stored APPROVED, with the PENDING hold leg and every commit leg.
async fn assert_approved(db: &TestDb, pairs: &[(Transaction, Transaction)]) {
    let pool = db.pool().await;
    for (pending, commit) in pairs {
        let (status, description, updated_at, body): (String, Option<String>, chrono::DateTime<chrono::Utc>, Option<String>) =
            sqlx::query_as(
                "SELECT status, status_description, updated_at, body::text FROM transaction WHERE id = $1",
            )
            .bind(pending.id)
            .fetch_one(&pool)
            .await
            .expect("stored");
        assert_eq!(status, "APPROVED");
        assert_eq!(description.as_deref(), Some("APPROVED"));
        assert_eq!(
            Some(updated_at),
            commit.updated_at,
            "updated_at of the commit"
        );
        assert!(body.is_some(), "the PENDING input is kept");
        let operations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM operation WHERE transaction_id = $1")
                .bind(pending.id)
                .fetch_one(&pool)
                .await
                .expect("count");
        assert_eq!(
            operations as usize,
            pending.operations.len() + commit.operations.len()
        );
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_in_later_bulks_approve_their_pending_transactions_in_every_mode() {
    for (format, bulk) in [
        (Format::Json, "true"),
        (Format::Msgpack, "true"),
        (Format::Json, "false"),
    ] {
        let (db, queue) = (TestDb::create().await, TestQueue::new());
        let pairs: Vec<_> = (0..10).map(|_| pending_and_commit(3)).collect();
        let totals = record(
            &db,
            &queue,
            vec![
                bodies(pairs.iter().map(|(p, _)| p), format),
                bodies(pairs.iter().map(|(_, c)| c), format),
            ],
            &[("BULK_RECORDER_ENABLED", bulk)],
        )
        .await;
        assert_approved(&db, &pairs).await;
        let t = totals.transactions;
        assert_eq!(
            (t.attempted, t.inserted, t.updated, t.ignored, t.conflicting),
            (20, 10, 10, 0, 0),
            "{format:?} bulk={bulk}"
        );
        assert_eq!(totals.operations.inserted, 40, "{format:?} bulk={bulk}");
    }
}

/// Channels deliver in parallel, so a commit may reach the bulk before its PENDING message:
/// either order ends the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_transaction_and_its_commit_in_one_bulk_end_approved() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let pairs: Vec<_> = (0..10).map(|_| pending_and_commit(2)).collect();
    let adjacent = pairs
        .iter()
        .enumerate()
        .flat_map(|(i, (p, c))| if i % 2 == 0 { [p, c] } else { [c, p] });
    let totals = record(
        &db,
        &queue,
        vec![bodies(adjacent, Format::Json)],
        &[
            ("BULK_RECORDER_SIZE", "20"),
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    assert_approved(&db, &pairs).await;
    let t = totals.transactions;
    assert_eq!(
        (t.attempted, t.inserted, t.updated, t.ignored),
        (20, 10, 10, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_id_with_other_content_is_counted_conflicting_and_never_overwritten() {
    for bulk in ["true", "false"] {
        let (db, queue) = (TestDb::create().await, TestQueue::new());
        let original = sample_transaction(2);
        let mut reused = sample_transaction(3);
        reused.id = original.id;
        for op in &mut reused.operations {
            op.transaction_id = original.id;
        }
        reused.amount = Some(Decimal::parse("0.01").unwrap());
        let totals = record(
            &db,
            &queue,
            vec![
                bodies([&original], Format::Json),
                // Plain redelivery first, then the reuse.
                bodies([&original, &reused], Format::Json),
            ],
            &[("BULK_RECORDER_ENABLED", bulk)],
        )
        .await;
        let t = totals.transactions;
        assert_eq!(
            (t.attempted, t.inserted, t.ignored, t.conflicting),
            (3, 1, 1, 1),
            "bulk={bulk}"
        );
        assert_eq!(totals.operations.conflicting, 3, "bulk={bulk}");
        let pool = db.pool().await;
        let amount: String = sqlx::query_scalar("SELECT amount::text FROM transaction")
            .fetch_one(&pool)
            .await
            .expect("stored");
        assert_eq!(Decimal::parse(&amount).ok(), original.amount, "kept");
        pool.close().await;
        assert_eq!(db.count("operation").await, 2, "the reuse's legs stay out");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_from_another_encoder_among_json_messages_is_stored() {
    // As a Python publisher (msgpack-python) would: 1 message in 7 as a msgpack map whose ids,
    // decimals and timestamps are strings, labelled application/msgpack.
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let transactions: Vec<_> = (0..70).map(|_| sample_transaction(3)).collect();
    let messages = transactions
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i % 7 == 0 {
                let value = to_msgpack(&serde_json::to_value(t).unwrap());
                let mut body = Vec::new();
                rmpv::encode::write_value(&mut body, &value).unwrap();
                (body, "application/msgpack")
            } else {
                (encode(t, Format::Json), "application/json")
            }
        })
        .collect();
    record(&db, &queue, vec![messages], &[]).await;
    assert_stored_exactly_once(&db, &queue, &transactions).await;
}

/// A JSON document as a msgpack value of `rmpv`'s making (numbers as the smallest integer or a
/// float, strings as `str`).
fn to_msgpack(json: &serde_json::Value) -> rmpv::Value {
    use serde_json::Value as J;
    match json {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => rmpv::Value::Boolean(*b),
        J::Number(n) => n.as_i64().map_or_else(
            || rmpv::Value::F64(n.as_f64().unwrap_or_default()),
            rmpv::Value::from,
        ),
        J::String(s) => rmpv::Value::from(s.as_str()),
        J::Array(items) => rmpv::Value::Array(items.iter().map(to_msgpack).collect()),
        J::Object(map) => rmpv::Value::Map(
            map.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v)))
                .collect(),
        ),
    }
}
