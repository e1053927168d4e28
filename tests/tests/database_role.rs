//! The role the recorder writes with: what it needs is checked at start-up and named, and a
//! commit whose durability cannot be read yet is held, never given back to the queue.

use std::time::Duration;

use bulk_recorder::{
    message::Format,
    store::{db, privileges::Grants},
};
use bulk_recorder_e2e::*;
use bulk_recorder_publish::sample_transaction;

const DRAIN: Duration = Duration::from_secs(60);

/// The test's database with the recorder's tables, made by the administrator.
async fn tables() -> TestDb {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    db::migrate(&pool).await.expect("migrations");
    pool.close().await;
    db
}

fn config_as(db: &TestDb, role: &TestRole, queue: &TestQueue) -> bulk_recorder::config::Config {
    let mut vars = env(db, queue, &[("BULK_RECORDER_MIGRATE", "false")]);
    vars.insert("DATABASE_URL".into(), role.url());
    bulk_recorder::config::Config::from_vars(&vars).expect("valid configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_its_grants_waits_naming_them_and_records_once_granted() {
    let db = tables().await;
    let role = TestRole::create(&db).await;
    role.admin("GRANT SELECT, INSERT ON transaction, operation TO {role}")
        .await;
    let pool = sqlx::PgPool::connect(&role.url())
        .await
        .expect("as the role");
    let problem = Grants::read(&pool)
        .await
        .expect("privileges")
        .problem()
        .expect("a problem");
    pool.close().await;
    assert!(
        problem.contains("missing: UPDATE on transaction, UPDATE on operation")
            && problem.contains("GRANT SELECT, INSERT, UPDATE ON transaction, operation TO"),
        "{problem}"
    );

    let queue = TestQueue::new();
    let transactions: Vec<_> = (0..5).map(|_| sample_transaction(2)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let recorder = RunningRecorder::start(config_as(&db, &role, &queue));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        broker_counts(&queue.name),
        (5, 0),
        "nothing is consumed while the role cannot write"
    );
    assert!(!recorder.health.ready());

    role.admin("GRANT UPDATE ON transaction, operation TO {role}")
        .await;
    wait_until(DRAIN, "everything stored once granted", || async {
        recorder.committed_transactions() == 5
    })
    .await;
    recorder.stop().await;
    assert_stored_exactly_once(&db, &queue, &transactions).await;
}

/// The WAL positions read after COMMIT cannot be read for a while (here the role may not call
/// `pg_current_wal_flush_lsn`; in life, a connection lost right after the commit). The rows
/// are committed: returning the messages to the queue would count them as duplicates of
/// themselves. They are held until the positions answer, then acknowledged, counted inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_wal_position_cannot_be_read_is_held_not_requeued() {
    let db = tables().await;
    let role = TestRole::create(&db).await;
    role.admin(
        "GRANT SELECT, INSERT, UPDATE ON transaction, operation TO {role}; \
         REVOKE EXECUTE ON FUNCTION pg_current_wal_flush_lsn() FROM PUBLIC",
    )
    .await;
    let queue = TestQueue::new();
    let transactions: Vec<_> = (0..10).map(|_| sample_transaction(2)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let recorder = RunningRecorder::start(config_as(&db, &role, &queue));
    wait_until(DRAIN, "the rows committed", || async {
        db.count("transaction").await == 10
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(broker_counts(&queue.name), (0, 10), "held, not requeued");
    assert_eq!(
        recorder.committed_transactions(),
        0,
        "counted before durable"
    );
    assert!(recorder.health.holding());

    role.admin("GRANT EXECUTE ON FUNCTION pg_current_wal_flush_lsn() TO PUBLIC")
        .await;
    wait_until(DRAIN, "acknowledged once readable", || async {
        broker_counts(&queue.name) == (0, 0)
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    assert_eq!(
        (totals.transactions.inserted, totals.transactions.ignored),
        (10, 0),
        "inserted stays exact"
    );
    assert_stored_exactly_once(&db, &queue, &transactions).await;
}
