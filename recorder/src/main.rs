//! `bulk-recorder`: runs the recorder (configured by the environment), or publishes sample
//! transactions with `bulk-recorder publish`.

use std::sync::Arc;

use anyhow::Context;
use bulk_recorder::{
    config::{Config, LogFormat, ReportTarget},
    message::Format,
    pipeline::recorder,
    publish::{PublishPlan, publish},
    startup,
    telemetry::{health::Health, http, metrics::Metrics, status_report::Reporter},
};
use clap::{Parser, Subcommand, ValueEnum};
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
enum Command {
    /// Publish realistic sample transactions to the queue (persistent, with publisher confirms).
    Publish {
        /// Transactions to publish.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Operations per transaction.
        #[arg(long, default_value_t = 5)]
        operations: usize,
        /// Percentage of messages that repeat an earlier transaction.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
        duplicates: u8,
        /// Invalid messages to mix in (they must be rejected).
        #[arg(long, default_value_t = 0)]
        invalid: usize,
        /// Percentage of transactions published as PENDING and, a few messages later, committed.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
        pending: u8,
        /// Body formats, used in turn (json: the API shape; msgpack: the same as a msgpack map;
        /// midaz: the reference ledger's own queue message).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "json")]
        format: Vec<BodyFormat>,
        #[arg(
            long,
            env = "RABBITMQ_URL",
            default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
        )]
        rabbitmq_url: String,
        #[arg(
            long,
            env = "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            default_value = "transaction_balance_operation"
        )]
        queue: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BodyFormat {
    Json,
    Msgpack,
    Midaz,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => run_recorder().await,
        Some(Command::Publish {
            count,
            operations,
            duplicates,
            pending,
            invalid,
            format,
            rabbitmq_url,
            queue,
        }) => {
            init_logs(LogFormat::Text);
            let plan = PublishPlan {
                count,
                operations,
                duplicate_percent: duplicates,
                pending_percent: pending,
                invalid,
                formats: format
                    .into_iter()
                    .map(|f| match f {
                        BodyFormat::Json => Format::Json,
                        BodyFormat::Msgpack => Format::Msgpack,
                        BodyFormat::Midaz => Format::Midaz,
                    })
                    .collect(),
            };
            let started = std::time::Instant::now();
            let published = publish(&rabbitmq_url, &queue, &plan)
                .await
                .context("publishing")?;
            println!(
                "published={} unique_transactions={} duplicates={} commits={} invalid={} operations_per_transaction={} seconds={:.2}",
                published.messages,
                published.unique_transactions,
                published.duplicates,
                published.commits,
                published.invalid,
                published.operations_per_transaction,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
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
