//! The PostgreSQL side: the pool, the migrations, and which failures are worth a retry.

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::Config;

/// Why a write failed, which decides what happens to the messages it carried.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The rows themselves were refused (constraint, invalid value): retrying the same bulk
    /// cannot succeed, so it is split into single messages.
    #[error("rows refused by PostgreSQL: {0}")]
    Data(#[source] sqlx::Error),
    /// The database could not be reached or asked us to retry: the same rows may pass later.
    #[error("database unavailable: {0}")]
    Transient(#[source] sqlx::Error),
    /// No answer in time (a stalled server, a half-open connection): the connection is
    /// dropped and the write retried.
    #[error("no answer from PostgreSQL within {0:?} ({1})")]
    TimedOut(Duration, &'static str),
}

/// `foreign_key_violation`.
const FOREIGN_KEY_VIOLATION: &str = "23503";

impl WriteError {
    /// SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation) are the
    /// rows' fault; everything else (connection loss, serialization failure, deadlock,
    /// shutdown, a missing table) is worth waiting for.
    pub fn classify(error: sqlx::Error) -> Self {
        let is_data = match &error {
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            sqlx::Error::Encode(_) => true,
            _ => false,
        };
        if is_data {
            WriteError::Data(error)
        } else {
            WriteError::Transient(error)
        }
    }

    pub fn is_data(&self) -> bool {
        matches!(self, WriteError::Data(_))
    }

    /// A row that is stored already (`unique_violation`): what stops a `COPY`.
    pub fn is_duplicate(&self) -> bool {
        matches!(
            self,
            WriteError::Data(sqlx::Error::Database(db))
                if db.code().as_deref() == Some(super::copy::UNIQUE_VIOLATION)
        )
    }

    /// A transaction whose parent (`parent_transaction_id`) is not stored: the only foreign key
    /// of the `transaction` table. It may be in a bulk that has not committed yet.
    pub fn is_missing_parent(&self) -> bool {
        match self {
            WriteError::Data(sqlx::Error::Database(db)) => {
                db.code().as_deref() == Some(FOREIGN_KEY_VIOLATION)
                    && db.table() == Some("transaction")
            }
            _ => false,
        }
    }
}

/// How every connection of the recorder is opened: `DATABASE_URL` plus session settings that
/// the server's or the role's defaults must not change.
pub fn connect_options(config: &Config) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.parse()?;
    // Sent as startup options, which take precedence over `ALTER DATABASE/ROLE ... SET` and
    // the server's configuration file.
    Ok(options.application_name("bulk-recorder").options([
        // Messages are acknowledged after COMMIT returns, so COMMIT must mean durable: a
        // server default of `off` would let an acked bulk vanish in a crash.
        ("synchronous_commit", "on".to_string()),
        // Nothing waits forever: a stalled statement or a lock held elsewhere ends in an error
        // (57014, 55P03) that `WriteError::classify` treats as transient.
        ("statement_timeout", millis(config.statement_timeout)),
        ("lock_timeout", millis(config.lock_timeout)),
        // A write's transaction never waits between its round-trips: a session left open by a
        // lost connection is ended by the server instead of holding row locks.
        (
            "idle_in_transaction_session_timeout",
            millis(config.statement_timeout),
        ),
    ]))
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// A pool sized for the bulks that can be in the database at once, plus one for probes.
pub async fn connect(config: &Config, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(config)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each bulk (a round-trip per bulk): a connection the server killed
        // fails its statement as a transient error, and the retry gets a fresh one.
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// Creates or updates the `transaction` and `operation` tables.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
