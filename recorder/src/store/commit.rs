//! Every database call of a write within one deadline, and a COMMIT whose outcome is known.
//!
//! A write is BEGIN, its statements, COMMIT. The first statement returns the transaction's id,
//! so when the connection drops while COMMIT is on its way, another connection asks PostgreSQL
//! (`txid_status`) whether that transaction committed: the write's counts are then exact
//! instead of a retry finding every row present and counting them as ignored.

use std::{future::Future, time::Duration};

use sqlx::{PgPool, Postgres};
use tokio::time::Instant;

use super::db::WriteError;

/// The time a write may take, all its round-trips together.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// Awaits one database call, at most until the deadline.
    pub async fn call<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, WriteError> {
        match tokio::time::timeout_at(self.at, call).await {
            Ok(result) => result.map_err(WriteError::classify),
            Err(_) => Err(WriteError::TimedOut(self.budget, what)),
        }
    }
}

/// Who is writing: the transaction's id and its server process, as the first statement of a
/// write returns them.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    pub xid: i64,
    pub backend_pid: i32,
}

/// Commits `tx`. When the answer is lost (the connection dropped or went silent), asks
/// PostgreSQL on another connection of `pool` what became of the transaction.
pub async fn commit(
    tx: sqlx::Transaction<'_, Postgres>,
    writer: Writer,
    pool: &PgPool,
    deadline: &Deadline,
) -> Result<(), WriteError> {
    match deadline.call("COMMIT", tx.commit()).await {
        Ok(()) => Ok(()),
        // PostgreSQL answered: it refused (a deferred constraint, a serialization failure).
        Err(refused @ (WriteError::Data(_) | WriteError::Transient(sqlx::Error::Database(_)))) => {
            Err(refused)
        }
        Err(lost) => {
            tracing::warn!(xid = writer.xid, error = %lost, "the answer to COMMIT was lost: asking PostgreSQL whether it committed");
            resolve(writer, pool, lost).await
        }
    }
}

/// How long to keep asking about a transaction whose COMMIT answer was lost.
const RESOLVE_FOR: Duration = Duration::from_secs(10);

async fn resolve(writer: Writer, pool: &PgPool, lost: WriteError) -> Result<(), WriteError> {
    let deadline = Deadline::after(RESOLVE_FOR);
    let (mut terminated, mut polls) = (false, 0);
    loop {
        polls += 1;
        let status: Result<Option<String>, WriteError> = deadline
            .call(
                "asking whether a transaction committed",
                sqlx::query_scalar("SELECT txid_status($1)")
                    .bind(writer.xid)
                    .fetch_one(pool),
            )
            .await;
        match status.as_ref().map(Option::as_deref) {
            Ok(Some("committed")) => {
                tracing::info!(xid = writer.xid, "the write had committed");
                return Ok(());
            }
            // Rolled back: safe to write again.
            Ok(Some("aborted")) | Ok(None) => return Err(lost),
            // Still open after half a second: the COMMIT never reached the server, whose
            // session waits on a connection that is gone. End that session (its locks would
            // block the retry), then ask again.
            Ok(Some(_)) if !terminated && polls > 5 => {
                terminated = true;
                let _ = deadline
                    .call(
                        "ending the session of a lost connection",
                        sqlx::query("SELECT pg_terminate_backend($1)")
                            .bind(writer.backend_pid)
                            .execute(pool),
                    )
                    .await;
            }
            Ok(Some(_)) | Err(WriteError::Transient(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return Err(lost),
        }
    }
}
