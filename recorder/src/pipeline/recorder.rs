//! The recorder's life: database first, then broker sessions until shutdown, reconnecting
//! with backoff whenever either side goes away.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{sync::watch, time::Instant};

use crate::{
    backoff::Backoff,
    broker::QueueOrigin,
    config::{Config, redact},
    ledger::{
        backup,
        events::{Events, EventsConfig},
        metadata::MetadataStore,
    },
    pipeline::{
        after_commit::AfterCommit,
        flush::Flusher,
        policy::Policy,
        session::{self, Shared},
    },
    shutdown::Shutdown,
    store::{BulkWriter, Database, OneByOneWriter, Writer, commit::deadline::Deadline},
    store::{db, privileges::Grants},
    telemetry::metrics::Metrics,
    telemetry::{health::Health, traces::Traces},
};

/// Messages written at once in one-by-one mode (the baseline, like the reference's workers),
/// whatever RABBITMQ_NUMBERS_OF_WORKERS is: each holds a connection, and PostgreSQL's default
/// `max_connections` is 100.
pub const ONE_BY_ONE_IN_FLIGHT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(
        "running the migrations failed (set BULK_RECORDER_MIGRATE=false to write into existing tables): {0}"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Broker sessions, one after another with backoff, until shutdown.
async fn reconnect_until_shutdown(shared: &Shared, shutdown: &Shutdown) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.requested() {
        let started = Instant::now();
        // Boxed as a `dyn Future`: the session's future is deep, and the recorder's around it
        // would otherwise exceed the compiler's recursion limit where it is checked for `Send`.
        let session: futures::future::BoxFuture<'_, _> =
            Box::pin(session::run(shared, shutdown.clone()));
        match session.await {
            Ok(()) => break,
            Err(error) => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(%error, reconnect_in_ms = delay.as_millis() as u64, "broker session ended");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_requested() => {}
                }
            }
        }
    }
}

/// Runs until `requested` turns true (SIGTERM), then finishes what it holds within
/// `BULK_RECORDER_SHUTDOWN_TIMEOUT_MS` ([`crate::shutdown`]) and returns.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    requested: watch::Receiver<bool>,
) -> Result<(), RecorderError> {
    let shutdown = Shutdown::follow(requested, config.shutdown_timeout);
    // Bulks written at once; settlement stays in order whatever this is.
    let in_flight = if config.bulk_enabled {
        config.bulks_in_flight
    } else {
        // The baseline writes like the reference's workers: one message each, in parallel.
        usize::from(config.workers).min(ONE_BY_ONE_IN_FLIGHT)
    };
    let Some(pool) = prepare_database(&config, in_flight, &health, &shutdown).await? else {
        return Ok(());
    };

    let database = Database::new(
        pool.clone(),
        config.statement_timeout,
        health.clone(),
        shutdown.clone(),
    );
    let writer = if config.bulk_enabled {
        Writer::Bulk(BulkWriter::new(database, config.max_rows_per_insert))
    } else {
        Writer::OneByOne(OneByOneWriter::new(database))
    };
    let policy = Policy {
        health: health.clone(),
        shutdown: shutdown.clone(),
    };
    let Some(after_commit) = after_commit(&config, &metrics, policy).await else {
        return Ok(());
    };
    let traces = start_traces(&config);
    let flusher = Arc::new(Flusher {
        traces: traces.clone(),
        queue: config.queue.clone(),
        writer,
        fallback: config.fallback_enabled,
        parent_wait: config.missing_parent_wait,
        metrics: metrics.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
        after_commit,
    });
    let shared = Shared {
        config,
        flusher,
        bulks_in_flight: in_flight,
        metrics: metrics.clone(),
        health: health.clone(),
        origin: QueueOrigin::default(),
    };
    reconnect_until_shutdown(&shared, &shutdown).await;
    finish(&shared, traces, pool, &shutdown).await;
    tracing::info!(totals = ?metrics.totals(), "recorder stopped");
    Ok(())
}

/// Connects, migrates when asked, waits for the role's grants and starts the readiness probe;
/// `None` when shutdown came first. One connection per write in flight, one for the waiting
/// room's writes (children of missing parents), one for the readiness probe, one to look at a
/// late COMMIT, ask what became of a lost one, or read the standbys' positions.
async fn prepare_database(
    config: &Config,
    in_flight: usize,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) -> Result<Option<PgPool>, RecorderError> {
    let Some(pool) = connect_database(config, in_flight as u32 + 3, health, shutdown.clone()).await
    else {
        return Ok(None);
    };
    if config.migrate {
        db::migrate(&pool).await?;
        tracing::info!("migrations applied");
    }
    if !wait_for_grants(&pool, shutdown.clone()).await {
        return Ok(None);
    }
    tokio::spawn(probe_database(
        pool.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    Ok(Some(pool))
}

/// After the last session, in what is left of the shutdown's budget (each step bounded too,
/// all at once): the Redis cleanups left a last chance, the events' connection closed, the
/// spans flushed, the database connections closed.
async fn finish(shared: &Shared, traces: Option<Arc<Traces>>, pool: PgPool, shutdown: &Shutdown) {
    let after_commit = &shared.flusher.after_commit;
    let cleanup = async {
        if let Some(cleanup) = &after_commit.cleanup {
            cleanup
                .finish(shutdown.left(REDIS_CLEANUP_AT_SHUTDOWN))
                .await;
        }
    };
    let events = async {
        if let Some(events) = &after_commit.events {
            events.close().await;
        }
    };
    let spans = async {
        if let Some(traces) = &traces {
            traces.shutdown().await;
        }
    };
    let closing = async {
        tokio::join!(cleanup, events, spans);
        pool.close().await;
    };
    // A connection that went silent would make a graceful close wait forever.
    let bound = shutdown.left(FINISH_AT_MOST);
    if tokio::time::timeout(bound, closing).await.is_err() {
        tracing::warn!(
            bound_ms = bound.as_millis() as u64,
            "closing the connections took longer than the shutdown's budget left: leaving them"
        );
    }
}

/// The longest the last steps take, when no shutdown budget bounds them.
const FINISH_AT_MOST: Duration = Duration::from_secs(5);

/// The tracer, when an OTLP endpoint is configured; a failure to build it is logged and the
/// recorder records without traces.
fn start_traces(config: &Config) -> Option<Arc<Traces>> {
    let tracing = config.tracing.as_ref()?;
    match Traces::start(tracing) {
        Ok(traces) => {
            tracing::info!(endpoint = tracing.endpoint, "exporting traces");
            Some(Arc::new(traces))
        }
        Err(error) => {
            tracing::error!(%error, "traces are not exported");
            None
        }
    }
}

/// The after-commit stage, with what the ledger's consumer does besides rows as configured;
/// `None` when shutdown came first (the document store's URL is read again until it resolves:
/// `mongodb+srv://` asks DNS).
async fn after_commit(
    config: &Config,
    metrics: &Arc<Metrics>,
    policy: Policy,
) -> Option<AfterCommit> {
    let metadata = match &config.mongodb {
        None => None,
        Some(mongo) => {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
            loop {
                match MetadataStore::new(&mongo.url, &mongo.database).await {
                    Ok(store) => break Some(store),
                    Err(error) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(url = redact(&mongo.url), %error, retry_in_ms = delay.as_millis() as u64, "the document store's URL does not resolve yet");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = policy.shutdown.wait_requested() => return None,
                        }
                    }
                }
            }
        }
    };
    let events = config.events.as_ref().map(|e| {
        Events::new(EventsConfig {
            url: config.rabbitmq_url.clone(),
            queue: config.queue.clone(),
            transactions: e.transactions.clone(),
            overdraft: e.overdraft.clone(),
            version: e.version.clone(),
        })
    });
    Some(AfterCommit {
        cleanup: config
            .redis
            .as_ref()
            .map(|redis| backup::Cleanup::start(redis, metrics.clone())),
        metadata,
        events,
        policy,
        metrics: metrics.clone(),
    })
}

async fn connect_database(
    config: &Config,
    max_connections: u32,
    health: &Health,
    shutdown: Shutdown,
) -> Option<PgPool> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match db::connect(config, max_connections).await {
            Ok(pool) => {
                health.set_database(true);
                return Some(pool);
            }
            Err(error) => {
                health.set_database(false);
                let delay = backoff.next_delay();
                tracing::warn!(url = redact(&config.database_url), %error, retry_in_ms = delay.as_millis() as u64, "database unreachable");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_requested() => return None,
                }
            }
        }
    }
}

/// How long the ledger's Redis backup may still be cleaned up at shutdown.
const REDIS_CLEANUP_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// How often a role that cannot write the tables is checked again.
const GRANTS_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Waits until the role can write the tables, saying what it lacks (and what it gives up);
/// false when shutdown came first. Nothing is consumed meanwhile, so readiness stays off.
async fn wait_for_grants(pool: &PgPool, shutdown: Shutdown) -> bool {
    let mut said_caveat = false;
    loop {
        match Grants::read(pool).await {
            Ok(grants) => {
                if let Some(caveat) = grants.caveat().filter(|_| !said_caveat) {
                    tracing::warn!("{caveat}");
                    said_caveat = true;
                }
                match grants.problem() {
                    None => return true,
                    Some(problem) => {
                        tracing::error!(retry_in_s = GRANTS_CHECK_EVERY.as_secs(), "{problem}")
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the role's privileges yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(GRANTS_CHECK_EVERY) => {}
            _ = shutdown.wait_requested() => return false,
        }
    }
}

/// Keeps readiness true to the database while no bulk is being written.
async fn probe_database(pool: PgPool, health: Arc<Health>, shutdown: Shutdown) {
    loop {
        health.set_database(probe(&pool).await);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.wait_requested() => return,
        }
    }
}

/// One `SELECT 1` within 2 s; a connection that does not answer is closed, not reused.
async fn probe(pool: &PgPool) -> bool {
    let deadline = Deadline::after(Duration::from_secs(2));
    let Ok(mut conn) = deadline.call("probe", pool.acquire()).await else {
        return false;
    };
    let answered = deadline
        .call("probe", sqlx::query("SELECT 1").execute(&mut *conn))
        .await;
    if answered.is_err() {
        crate::store::commit::txn::discard(conn);
        return false;
    }
    true
}
