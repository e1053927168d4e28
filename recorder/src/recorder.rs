//! The recorder's life: database first, then broker sessions until shutdown, reconnecting
//! with backoff whenever either side goes away.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{sync::watch, time::Instant};

use crate::{
    backoff::Backoff,
    config::{Config, redact},
    db,
    flush::Flusher,
    health::Health,
    metrics::Metrics,
    session,
    store::{BulkWriter, Writer},
};

/// Bulks written at once in bulk mode: one in the database while the next is collected and
/// decoded. Settlement stays in order whatever this is.
pub const BULKS_IN_FLIGHT: usize = 2;

/// How long a write keeps retrying a database that is away before its messages are requeued.
pub const RETRY_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error(
        "running the migrations failed (set BULK_RECORDER_MIGRATE=false to write into existing tables): {0}"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Runs until `shutdown` turns true, then drains and returns.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RecorderError> {
    let in_flight = if config.bulk_enabled {
        BULKS_IN_FLIGHT
    } else {
        // The baseline writes like the reference's workers: one message each, in parallel.
        usize::from(config.workers)
    };
    let Some(pool) =
        connect_database(&config, in_flight as u32 + 1, &health, shutdown.clone()).await
    else {
        return Ok(());
    };
    if config.migrate {
        db::migrate(&pool).await?;
        tracing::info!("migrations applied");
    }
    tokio::spawn(probe_database(
        pool.clone(),
        health.clone(),
        shutdown.clone(),
    ));

    let writer = if config.bulk_enabled {
        Writer::Bulk(BulkWriter::new(pool.clone(), config.max_rows_per_insert))
    } else {
        Writer::OneByOne(pool.clone())
    };
    let flusher = Arc::new(Flusher {
        writer,
        fallback: config.fallback_enabled,
        retry_for: RETRY_FOR,
        metrics: metrics.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
    });
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut stop = shutdown.clone();
    while !*stop.borrow() {
        let started = Instant::now();
        let outcome = session::run(
            &config,
            flusher.clone(),
            in_flight,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        )
        .await;
        match outcome {
            Ok(()) => break,
            Err(error) => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(%error, reconnect_in_ms = delay.as_millis() as u64, "broker session ended");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
        }
    }
    pool.close().await;
    tracing::info!(totals = ?metrics.totals(), "recorder stopped");
    Ok(())
}

async fn connect_database(
    config: &Config,
    max_connections: u32,
    health: &Health,
    mut shutdown: watch::Receiver<bool>,
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
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
            }
        }
    }
}

/// Keeps readiness true to the database while no bulk is being written.
async fn probe_database(pool: PgPool, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let up = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&pool),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        health.set_database(up);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
