//! The PostgreSQL side: the pool, the migrations, and which failures are worth a retry.

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

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
}

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
}

/// A pool sized for the bulks that can be in the database at once, plus one for probes.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each bulk (a round-trip per bulk): a connection the server killed
        // fails its statement as a transient error, and the retry gets a fresh one.
        .test_before_acquire(false)
        .connect_with(options.application_name("bulk-recorder"))
        .await
}

/// Creates or updates the `transaction` and `operation` tables.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
