//! The PostgreSQL side: the pool, its sessions' settings and the migrations.

use std::{sync::Arc, time::Duration};

use crate::{config::Config, shutdown::Shutdown, telemetry::health::Health};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// What every write needs: the pool, the bound of one statement, and the process's readiness
/// and shutdown (a write that waits for its commit to become durable holds readiness, and gives
/// up once the shutdown's budget is spent).
#[derive(Clone)]
pub struct Database {
    pub pool: PgPool,
    pub statement_timeout: Duration,
    /// Added to the statement timeouts of a write for BEGIN, COMMIT and the network.
    pub margin: Duration,
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
}

impl Database {
    pub fn new(
        pool: PgPool,
        statement_timeout: Duration,
        health: Arc<Health>,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            pool,
            statement_timeout,
            margin: WRITE_MARGIN,
            health,
            shutdown,
        }
    }

    /// For tools and tests: no readiness to report, never shutting down.
    pub fn standalone(pool: PgPool, statement_timeout: Duration) -> Self {
        Self::new(pool, statement_timeout, Arc::default(), Shutdown::never())
    }

    /// The bound of a write of `statements` statements.
    pub fn write_budget(&self, statements: usize) -> Duration {
        self.statement_timeout * statements.max(1) as u32 + self.margin
    }
}

/// Added to the statement timeout for BEGIN, COMMIT and the network, when bounding a write.
pub const WRITE_MARGIN: Duration = Duration::from_secs(5);

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
        // (57014, 55P03) that is retried. Not COMMIT: it runs with no statement timeout (see
        // `txn`), because a cancelled wait for a synchronous standby leaves a local commit.
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
