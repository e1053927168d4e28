//! The settings every connection of the recorder carries, whatever the server's defaults:
//! `synchronous_commit = on` (acks follow a durable COMMIT), and `statement_timeout` and
//! `lock_timeout` (no database call waits forever).

use std::time::Duration;

use bulk_recorder::store::{WriteError, db};
use bulk_recorder_e2e::*;
use sqlx::{Connection as _, PgConnection, postgres::PgDatabaseError};

async fn setting(conn: &mut PgConnection, name: &str) -> String {
    sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(conn)
        .await
        .expect("SHOW")
}

#[tokio::test]
async fn synchronous_commit_is_on_even_where_the_database_default_is_off() {
    let (test_db, queue) = (TestDb::create().await, TestQueue::new());
    let mut admin = PgConnection::connect(&test_db.url).await.expect("connect");
    sqlx::query(&format!(
        "ALTER DATABASE {} SET synchronous_commit = off",
        test_db.name
    ))
    .execute(&mut admin)
    .await
    .expect("alter database");
    // A new plain session now gets `off`...
    let mut plain = PgConnection::connect(&test_db.url).await.expect("connect");
    assert_eq!(setting(&mut plain, "synchronous_commit").await, "off");

    // ...and every session of the recorder's pool still gets `on`, with its timeouts.
    let config = config(
        &test_db,
        &queue,
        &[
            ("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "7000"),
            ("BULK_RECORDER_LOCK_TIMEOUT_MS", "3000"),
        ],
    );
    let pool = db::connect(&config, 2).await.expect("pool");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = pool.acquire().await.expect("connection");
        assert_eq!(setting(&mut conn, "synchronous_commit").await, "on");
        assert_eq!(setting(&mut conn, "statement_timeout").await, "7s");
        assert_eq!(setting(&mut conn, "lock_timeout").await, "3s");
        held.push(conn);
    }
    drop(held);
    pool.close().await;
}

/// A write on a table that another session holds locked, through the recorder's pool.
async fn blocked_write(overrides: &[(&str, &str)]) -> sqlx::Error {
    let (test_db, queue) = (TestDb::create().await, TestQueue::new());
    let pool = db::connect(&config(&test_db, &queue, overrides), 2)
        .await
        .expect("pool");
    db::migrate(&pool).await.expect("migrations");

    let mut locker = PgConnection::connect(&test_db.url).await.expect("connect");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE transaction IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");

    let write = sqlx::query("DELETE FROM transaction WHERE id = gen_random_uuid()").execute(&pool);
    // The outer bound only turns a hang into a failure; the server's timeout ends the wait.
    let error = tokio::time::timeout(Duration::from_secs(60), write)
        .await
        .expect("the write gives up instead of waiting for the lock forever")
        .expect_err("the write cannot take the lock");
    lock.rollback().await.expect("rollback");
    pool.close().await;
    error
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .map(|e| e.downcast_ref::<PgDatabaseError>().code().to_string())
}

#[tokio::test]
async fn a_write_blocked_by_a_lock_fails_with_a_transient_lock_timeout() {
    let error = blocked_write(&[
        ("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "5000"),
        ("BULK_RECORDER_LOCK_TIMEOUT_MS", "300"),
    ])
    .await;
    assert_eq!(sqlstate(&error).as_deref(), Some("55P03"), "{error}");
    assert!(matches!(
        WriteError::classify(error),
        WriteError::Transient(_)
    ));
}

#[tokio::test]
async fn a_statement_past_the_statement_timeout_fails_as_transient() {
    let (test_db, queue) = (TestDb::create().await, TestQueue::new());
    let config = config(
        &test_db,
        &queue,
        &[("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "300")],
    );
    let pool = db::connect(&config, 1).await.expect("pool");
    let stalled = sqlx::query("SELECT pg_sleep(30)").execute(&pool);
    let error = tokio::time::timeout(Duration::from_secs(60), stalled)
        .await
        .expect("the statement is cancelled by the server")
        .expect_err("cancelled");
    assert_eq!(sqlstate(&error).as_deref(), Some("57014"), "{error}");
    assert!(matches!(
        WriteError::classify(error),
        WriteError::Transient(_)
    ));
    pool.close().await;
}
