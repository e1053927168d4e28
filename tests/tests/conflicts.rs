//! Telling a duplicate from a conflict the way the write sees the table: on the latest committed
//! version of the stored row, also when another writer (another replica, another bulk in
//! flight) changes or inserts it while the recorder's statement runs; and operations whose id is
//! reused with other content counted `conflicting`, as transactions are.

use std::{sync::Arc, time::Duration};

use bulk_recorder::{
    message::Transaction,
    store::{BulkWriter, Database, OneByOneWriter, Written, db, statements::layout::Layout},
};
use bulk_recorder_e2e::*;
use bulk_recorder_publish::{pending_and_commit, sample_transaction};
use sqlx::{Connection, PgConnection};

async fn writers() -> (TestDb, BulkWriter, OneByOneWriter) {
    let test_db = TestDb::create().await;
    let pool = test_db.pool().await;
    db::migrate(&pool).await.expect("migrations");
    let database = Database::standalone(pool, Duration::from_secs(30));
    (
        test_db,
        BulkWriter::new(database.clone(), Arc::new(Layout::base()), 1000),
        OneByOneWriter::new(database, Arc::new(Layout::base())),
    )
}

async fn write(writer: &BulkWriter, transactions: &[Transaction]) -> Written {
    let refs: Vec<&Transaction> = transactions.iter().collect();
    writer.write(&refs).await.expect("bulk written")
}

/// Another writer's session, holding its database transaction open.
async fn other_writer(db: &TestDb, sql: &str) -> PgConnection {
    let mut other = PgConnection::connect(&db.url).await.expect("database");
    sqlx::raw_sql(&format!("BEGIN; {sql}"))
        .execute(&mut other)
        .await
        .expect(sql);
    other
}

/// Waits until a session of the test's database waits for a lock (the recorder's statement,
/// blocked by the other writer's row).
async fn until_blocked(db: &TestDb) {
    wait_until(
        Duration::from_secs(30),
        "the write blocked by the other writer",
        || async {
            let mut conn = PgConnection::connect(&db.url).await.expect("database");
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_activity");
            waiting > 0
        },
    )
    .await;
}

/// Writes `t` while `other` holds the row it needs, then lets `other` commit.
async fn race(
    db: &TestDb,
    writer: &BulkWriter,
    t: &Transaction,
    other: &mut PgConnection,
) -> Written {
    let racing = {
        let (writer, t) = (writer.clone(), t.clone());
        tokio::spawn(async move { writer.write(&[&t]).await })
    };
    until_blocked(db).await;
    sqlx::raw_sql("COMMIT").execute(&mut *other).await.unwrap();
    racing.await.unwrap().expect("written")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_racing_the_same_commit_elsewhere_is_a_duplicate_not_a_conflict() {
    let (db, writer, _) = writers().await;
    let (pending, commit) = pending_and_commit(2);
    write(&writer, std::slice::from_ref(&pending)).await;
    // Another recorder applies the same commit and has not committed yet.
    let mut other = other_writer(
        &db,
        &format!(
            "UPDATE transaction SET status = 'APPROVED', status_description = 'APPROVED' \
             WHERE id = '{}'",
            pending.id
        ),
    )
    .await;
    let written = race(&db, &writer, &commit, &mut other).await;
    let t = written.counts.transactions;
    assert_eq!(
        (t.attempted, t.updated, t.ignored, t.conflicting),
        (1, 0, 1, 0),
        "the same commit, applied elsewhere first: a duplicate"
    );
    assert_eq!(
        written.counts.operations.inserted,
        commit.operations.len() as u64,
        "its legs are written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_id_racing_its_first_insert_elsewhere_is_a_conflict() {
    let (db, writer, _) = writers().await;
    let mine = sample_transaction(2);
    // Another producer's transaction under the same id, inserted and not committed yet.
    let mut other = other_writer(
        &db,
        &format!(
            "INSERT INTO transaction (id, description, status, amount, asset_code, \
             chart_of_accounts_group_name, ledger_id, organization_id, created_at) \
             VALUES ('{}', 'another', 'APPROVED', 1, 'USD', 'x', '{}', '{}', now())",
            mine.id, mine.ledger_id, mine.organization_id
        ),
    )
    .await;
    let written = race(&db, &writer, &mine, &mut other).await;
    assert_eq!(written.counts.transactions.conflicting, 1);
    let o = written.counts.operations;
    assert_eq!((o.inserted, o.conflicting), (0, 2), "its legs are left out");
    assert_eq!(db.count("operation").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_id_reused_with_other_content_is_conflicting_in_both_modes() {
    let (db, bulk, one_by_one) = writers().await;
    let first = sample_transaction(2);
    write(&bulk, std::slice::from_ref(&first)).await;
    // A plain redelivery: its operations are ignored.
    let again = write(&bulk, std::slice::from_ref(&first)).await;
    let o = again.counts.operations;
    assert_eq!((o.ignored, o.conflicting), (2, 0));

    for mode in ["bulk", "one by one"] {
        let mut reusing = sample_transaction(2);
        reusing.operations[0].id = first.operations[0].id;
        let written = match mode {
            "bulk" => write(&bulk, std::slice::from_ref(&reusing)).await,
            _ => one_by_one.write(&reusing).await.expect("written"),
        };
        let o = written.counts.operations;
        assert_eq!(
            (o.attempted, o.inserted, o.ignored, o.conflicting),
            (2, 1, 0, 1),
            "{mode}: the leg under a reused id is a conflict, never overwritten"
        );
        assert_eq!(written.counts.transactions.inserted, 1, "{mode}");
    }
    assert_eq!(db.count("operation").await, 4);
}
