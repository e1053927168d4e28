//! One database transaction of a write: BEGIN, the write's statements, COMMIT, with its outcome
//! known before anything is acknowledged.
//!
//! - BEGIN also records who writes ([`TxnId`]), in the same round-trip;
//! - COMMIT runs with no statement timeout (`SET LOCAL statement_timeout = 0` in the same
//!   round-trip): a timeout would cancel its wait for the synchronous standbys and leave a
//!   local commit. A COMMIT slower than the write's deadline is looked at from another
//!   connection instead: still committing (waiting for a standby, or the disk) keeps waiting and
//!   holds readiness; never arrived ends the session and the write is retried; gone is resolved
//!   ([`super::resolve`]);
//! - the same round-trip reads the WAL positions after the commit, and the write returns only
//!   once it is durable as the server is configured ([`super::durability`]);
//! - a connection is never returned to the pool inside a transaction, nor after a call that
//!   did not complete: it is discarded (its socket closed at once, so a silent connection cannot
//!   block the close either).

use std::time::Duration;

use sqlx::{Executor, PgConnection, Postgres, Row, pool::PoolConnection};
use tokio::time::Instant;

use crate::telemetry::traces;

use super::{
    deadline::Deadline,
    durability::{self, Positions},
    errors::WriteError,
    resolve::{self, Evidence, Fate, TxnId},
};
use crate::store::db::Database;

const BEGIN: &str = "BEGIN; SELECT txid_current(), pg_backend_pid(), pg_postmaster_start_time()";

/// COMMIT without a statement timeout, then the WAL positions after it.
static COMMIT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SET LOCAL statement_timeout = 0; COMMIT; {}",
        durability::PROBE
    )
});

/// How often a COMMIT that waits past its deadline is looked at again.
const COMMIT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// An open database transaction on a connection of its own.
pub struct OpenTxn {
    conn: Option<PoolConnection<Postgres>>,
    pub id: TxnId,
}

impl OpenTxn {
    /// Takes a connection and begins, within `deadline`.
    pub async fn begin(db: &Database, deadline: &Deadline) -> Result<Self, WriteError> {
        let mut conn = deadline
            .call("waiting for a connection", db.pool.acquire())
            .await?;
        let row = match deadline
            .call("BEGIN", conn.fetch_one(sqlx::raw_sql(BEGIN)))
            .await
        {
            Ok(row) => row,
            Err(error) => {
                discard(conn);
                return Err(error);
            }
        };
        let mut txn = Self {
            conn: Some(conn),
            id: TxnId {
                xid: 0,
                backend_pid: 0,
                server_started: Default::default(),
            },
        };
        txn.id = TxnId {
            xid: row.try_get(0).map_err(WriteError::classify)?,
            backend_pid: row.try_get(1).map_err(WriteError::classify)?,
            server_started: row.try_get(2).map_err(WriteError::classify)?,
        };
        Ok(txn)
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("an open transaction has its connection")
    }

    /// Ends the transaction after a statement refused on data (the server answered, so the
    /// connection is sound): rolls back and returns the connection to the pool.
    pub async fn rollback(mut self, deadline: &Deadline) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let rolled_back = tokio::time::timeout_at(
            deadline.at.max(Instant::now() + Duration::from_secs(1)),
            conn.execute(sqlx::raw_sql("ROLLBACK")),
        )
        .await;
        if !matches!(rolled_back, Ok(Ok(_))) {
            discard(conn);
        }
    }

    /// Commits, and returns once the commit is durable as the server is configured. An error
    /// means nothing was committed where the database now answers (or, `Unresolved`, that
    /// the shutdown's budget ran out first).
    pub async fn commit(
        mut self,
        db: &Database,
        deadline: &Deadline,
        evidence: Evidence,
    ) -> Result<(), WriteError> {
        let id = self.id;
        let mut conn = self
            .conn
            .take()
            .expect("an open transaction has its connection");
        let commit = traces::step("COMMIT", watch_commit(db, &mut conn, id, deadline));
        let mut positions = match commit.await {
            Ok(positions) => {
                drop(conn); // back to the pool: the transaction is over
                positions
            }
            Err(error) => {
                discard(conn);
                if error.refused_commit() || matches!(error, WriteError::Unresolved(_)) {
                    return Err(error);
                }
                tracing::warn!(xid = id.xid, %error, "the answer to COMMIT was lost: asking PostgreSQL whether it committed");
                committed_positions(db, id, evidence, error).await?
            }
        };
        loop {
            let wait = durability::wait(db, &positions);
            match traces::step("wait until durable (synchronous standbys)", wait).await {
                Err(WriteError::ServerChanged) => {
                    tracing::warn!(
                        xid = id.xid,
                        "another database server answers before the commit was durable (a \
                         failover?): looking for its rows there"
                    );
                    positions =
                        committed_positions(db, id, evidence, WriteError::ServerChanged).await?;
                }
                done => return done,
            }
        }
    }
}

/// Once a write's outcome is unknown: whether it committed where the database answers now
/// (`failure` when it did not), and if it did, the positions its durability is judged by there
/// (its commit record is before the WAL flushed now).
async fn committed_positions(
    db: &Database,
    id: TxnId,
    evidence: Evidence,
    failure: WriteError,
) -> Result<Positions, WriteError> {
    match resolve::resolve(db, id, evidence).await? {
        Fate::NotCommitted => Err(failure),
        Fate::Committed => {
            tracing::info!(xid = id.xid, "the write had committed");
            durability::positions(db).await
        }
    }
}

/// Sends COMMIT and waits for its answer, looking at the session from another connection when
/// the answer is late. `TimedOut` means the outcome must be resolved.
async fn watch_commit(
    db: &Database,
    conn: &mut PgConnection,
    id: TxnId,
    deadline: &Deadline,
) -> Result<Positions, WriteError> {
    let commit = conn.fetch_one(sqlx::raw_sql(&COMMIT));
    tokio::pin!(commit);
    let mut check_at = deadline.at;
    let mut hold = None;
    loop {
        tokio::select! {
            answer = &mut commit => {
                let row = answer.map_err(WriteError::classify)?;
                return Positions::from_row(&row).map_err(WriteError::classify);
            }
            _ = tokio::time::sleep_until(check_at) => {}
            _ = db.shutdown.wait_expired(), if hold.is_some() => {
                return Err(WriteError::Unresolved("COMMIT still waiting"));
            }
        }
        match resolve::session_state(db, id).await {
            Ok(Some(state)) if state.starts_with("idle in transaction") => {
                // The COMMIT never reached the server: nothing committed.
                resolve::terminate(db, id.backend_pid, &Deadline::after(Duration::from_secs(2)))
                    .await?;
                return Err(WriteError::TimedOut(
                    COMMIT_CHECK_EVERY,
                    "COMMIT never arrived",
                ));
            }
            Ok(Some(state)) => {
                if hold.is_none() {
                    tracing::warn!(
                        xid = id.xid,
                        state,
                        "COMMIT is still being processed (a synchronous standby away?): holding its messages"
                    );
                }
                hold.get_or_insert_with(|| db.health.hold());
            }
            // The session ended (or its answer was lost): resolve it.
            Ok(None) => return Err(WriteError::TimedOut(COMMIT_CHECK_EVERY, "COMMIT")),
            Err(error) => tracing::info!(%error, "cannot look at a late COMMIT yet"),
        }
        check_at = Instant::now() + COMMIT_CHECK_EVERY;
    }
}

impl Drop for OpenTxn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            discard(conn);
        }
    }
}

/// Closes a connection at once, without a graceful goodbye that a silent peer would never
/// acknowledge; the pool opens another one when it needs it.
pub fn discard(conn: PoolConnection<Postgres>) {
    drop(conn.detach());
}
