//! What became of a write whose COMMIT got no answer (the connection dropped, went silent, or
//! the server ended it), asked on another connection for as long as it takes.
//!
//! The write's first round-trip recorded its transaction id, its session's process id and the
//! server's start time ([`TxnId`]). While the same server runs:
//! - the write's session still open with that transaction: `idle in transaction` means the
//!   COMMIT never arrived, so the session is ended (nothing was committed); any other state
//!   means the COMMIT is being processed (waiting for a synchronous standby, or for the disk):
//!   the recorder waits and never ends that session, because ending it would turn a commit
//!   bound for the standbys into a local one;
//! - otherwise `txid_status` answers.
//!
//! After a restart or a failover (another start time) a transaction id can be handed out again
//! (one whose WAL never reached disk), so `txid_status` could describe another transaction: the
//! answer is then a row the write wrote, found with the write's transaction id as `xmin`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{deadline::Deadline, errors::WriteError};
use crate::backoff::Backoff;
use crate::store::db::Database;

/// Who wrote: the transaction, its session and the server process that ran them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnId {
    /// `txid_current()`: the epoch and the 32-bit transaction id.
    pub xid: i64,
    pub backend_pid: i32,
    pub server_started: DateTime<Utc>,
}

impl TxnId {
    /// The 32-bit transaction id, as rows carry it in `xmin`.
    pub fn xid32(&self) -> i64 {
        self.xid & 0xffff_ffff
    }
}

/// A row the write wrote: found with the write's `xmin` only if the write committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Transaction(Uuid),
    Operation(Uuid),
    /// The write wrote no row (every one was stored already): retrying it costs nothing.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Committed,
    NotCommitted,
}

/// The state of the server with respect to the write, as one query reads it.
const ASK: &str = "SELECT pg_postmaster_start_time() = $3, \
    CASE WHEN pg_postmaster_start_time() = $3 THEN txid_status($1) END, \
    (SELECT state FROM pg_stat_activity WHERE pid = $2 AND backend_xid::text::int8 = $4)";

/// What a session of ours is doing with its transaction, when it still has one.
const SESSION: &str =
    "SELECT state FROM pg_stat_activity WHERE pid = $1 AND backend_xid::text::int8 = $2";

/// Asks until the write's fate is known; gives up only once the shutdown's budget is spent.
pub async fn resolve(db: &Database, id: TxnId, evidence: Evidence) -> Result<Fate, WriteError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut hold = None;
    loop {
        match ask(db, id, evidence).await {
            Ok(Some(fate)) => return Ok(fate),
            Ok(None) => {}
            Err(error) => {
                tracing::info!(%error, xid = id.xid, "cannot ask PostgreSQL about a write yet");
                hold.get_or_insert_with(|| db.health.hold());
            }
        }
        if !db.shutdown.pause(backoff.next_delay()).await {
            return Err(WriteError::Unresolved("the answer to COMMIT was lost"));
        }
    }
}

/// One question; `None` while the COMMIT is still being processed.
async fn ask(db: &Database, id: TxnId, evidence: Evidence) -> Result<Option<Fate>, WriteError> {
    let deadline = Deadline::after(Duration::from_secs(5));
    let row = deadline
        .call(
            "asking whether a write committed",
            sqlx::query(ASK)
                .bind(id.xid)
                .bind(id.backend_pid)
                .bind(id.server_started)
                .bind(id.xid32())
                .fetch_one(&db.pool),
        )
        .await?;
    let same_server: bool = row.try_get(0).map_err(WriteError::classify)?;
    if !same_server {
        return by_evidence(db, id, evidence, &deadline).await.map(Some);
    }
    let session: Option<String> = row.try_get(2).map_err(WriteError::classify)?;
    match session.as_deref() {
        Some(state) if state.starts_with("idle in transaction") => {
            // The COMMIT never reached the server: end the session, then ask again.
            terminate(db, id.backend_pid, &deadline).await?;
            return Ok(None);
        }
        Some(state) => {
            tracing::info!(
                xid = id.xid,
                state,
                "the write's COMMIT is still being processed"
            );
            return Ok(None);
        }
        None => {}
    }
    let status: Option<String> = row.try_get(1).map_err(WriteError::classify)?;
    Ok(match status.as_deref() {
        Some("committed") => Some(Fate::Committed),
        Some("in progress") => None,
        _ => Some(Fate::NotCommitted),
    })
}

/// On another server (or the same one restarted): the write committed if a row it wrote is
/// there with the write's transaction id.
async fn by_evidence(
    db: &Database,
    id: TxnId,
    evidence: Evidence,
    deadline: &Deadline,
) -> Result<Fate, WriteError> {
    let (table, row_id) = match evidence {
        Evidence::Transaction(row) => ("transaction", row),
        Evidence::Operation(row) => ("operation", row),
        Evidence::None => return Ok(Fate::NotCommitted),
    };
    let query =
        format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1 AND xmin::text::int8 = $2)");
    let found: bool = deadline
        .call(
            "looking for a row the write wrote",
            sqlx::query_scalar(&query)
                .bind(row_id)
                .bind(id.xid32())
                .fetch_one(&db.pool),
        )
        .await?;
    tracing::info!(
        xid = id.xid,
        found,
        "the server changed since the write: answered by its rows"
    );
    Ok(if found {
        Fate::Committed
    } else {
        Fate::NotCommitted
    })
}

/// What the write's session is doing, when it still holds the write's transaction.
pub async fn session_state(db: &Database, id: TxnId) -> Result<Option<String>, WriteError> {
    Deadline::after(Duration::from_secs(2))
        .call(
            "reading the write's session",
            sqlx::query_scalar(SESSION)
                .bind(id.backend_pid)
                .bind(id.xid32())
                .fetch_optional(&db.pool),
        )
        .await
        .map(Option::flatten)
}

/// Ends a session whose transaction never received its COMMIT (its locks would block the
/// retry until `idle_in_transaction_session_timeout`).
pub async fn terminate(db: &Database, pid: i32, deadline: &Deadline) -> Result<(), WriteError> {
    deadline
        .call(
            "ending the session of a lost connection",
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&db.pool),
        )
        .await
        .map(drop)
}
