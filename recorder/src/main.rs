//! `bulk-recorder`: runs the recorder, configured by the environment.

use std::sync::Arc;

use anyhow::Context;
use bulk_recorder::{
    config::{Config, LogFormat, ReportTarget},
    pipeline::recorder,
    startup,
    telemetry::{health::Health, http, metrics::Metrics, status_report::Reporter},
};
use clap::{Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "Persists ledger transactions from RabbitMQ into PostgreSQL in bulk.\n\
Without a subcommand it runs the recorder, configured by environment variables (see the README)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => run_recorder().await,
    }
}

async fn run_recorder() -> anyhow::Result<()> {
    // A configuration that can never work stops start-up with exit code 2 and one line that
    // names the variable and the fix (before the logs start, so nothing else is printed).
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => refuse_start(error),
    };
    if let Err(refused) = startup::check_certificates(&config).await {
        refuse_start(refused);
    }
    init_logs(config.log_format);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let bound = http::serve(config.metrics_addr, metrics.clone(), health.clone())
        .await
        .with_context(|| format!("binding METRICS_ADDR={}", config.metrics_addr))?;
    tracing::info!(%bound, bulk = config.bulk_enabled, size = config.bulk_size, "bulk-recorder starting");

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: stop consuming, flush, acknowledge");
        let _ = stop.send(true);
    });
    let reporter = match &config.report {
        Some(target) => start_reporting(target.clone(), metrics.clone(), shutdown.clone()).await,
        None => None,
    };
    recorder::run(config, metrics, health, shutdown).await?;
    if let Some(reporter) = reporter {
        // The counts after the final flush.
        if let Err(error) = reporter.report().await {
            tracing::warn!(%error, "could not report the final counts");
        }
    }
    Ok(())
}

fn refuse_start(error: impl std::fmt::Display) -> ! {
    eprintln!("bulk-recorder: {error}");
    std::process::exit(2);
}

/// Starts reporting counts into the BulkRecorder's status; without a cluster API the recorder
/// still records, and says why it does not report.
async fn start_reporting(
    target: ReportTarget,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Option<Arc<Reporter>> {
    match kube::Client::try_default().await {
        Ok(client) => {
            let reporter = Arc::new(Reporter::new(client, target, metrics));
            tokio::spawn(reporter.clone().run(shutdown));
            Some(reporter)
        }
        Err(error) => {
            tracing::error!(%error, "BULK_RECORDER_NAME is set but the Kubernetes API is unreachable: counts are not reported");
            None
        }
    }
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// lapin logs every closed channel as an error, including the expected NOT_FOUND of the
/// passive declare that checks whether the queue exists; real failures reach our own logs.
const DEFAULT_LOG_FILTER: &str = "info,lapin::channel=off";

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
