//! `bulk-recorder`: runs the recorder, configured by the environment; `bulk-recorder replay`
//! moves dead-lettered messages back.

use std::sync::Arc;

use anyhow::Context;
use bulk_recorder::{
    config::{Config, LogFormat, ReportTarget},
    pipeline::recorder,
    replay::{self, Destination, Plan},
    startup,
    telemetry::{health::Health, http, metrics::Metrics, status_report::Reporter},
};
use clap::{Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "Persists ledger transactions from RabbitMQ into PostgreSQL in bulk.\n\
Without a subcommand it runs the recorder, configured by environment variables (see docs/configuration.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Moves dead-lettered messages back (publisher confirms: each is removed from the source only
    /// once its copy is confirmed), by the recorder's reason header, and prints what moved per
    /// reason. Exits 1 when a selected message could not be moved (it stays in the source).
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The dead-letter queue to read.
    #[arg(long)]
    from: String,
    /// Publish to this exchange (with --routing-key).
    #[arg(long, requires = "routing_key", conflicts_with = "to_queue")]
    to_exchange: Option<String>,
    #[arg(long, requires = "to_exchange")]
    routing_key: Option<String>,
    /// Publish to this queue (through the default exchange).
    #[arg(long, required_unless_present = "to_exchange")]
    to_queue: Option<String>,
    /// Only messages dead-lettered with this reason (`x-bulk-recorder-reason`: missing_parent,
    /// database, invalid, malformed, unsupported, ...).
    #[arg(long)]
    reason: Option<String>,
    /// Move at most this many messages.
    #[arg(long)]
    limit: Option<u64>,
    /// Count what would move, per reason; move nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, env = "RABBITMQ_URL", hide_env_values = true)]
    rabbitmq_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => run_recorder().await,
        Some(Command::Replay(args)) => run_replay(args).await,
    }
}

async fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    init_logs(LogFormat::Text);
    let to = match (args.to_exchange, args.routing_key, args.to_queue) {
        (Some(exchange), Some(routing_key), _) => Destination::Exchange {
            exchange,
            routing_key,
        },
        (_, _, Some(queue)) => Destination::Queue(queue),
        _ => unreachable!("clap requires a destination"),
    };
    let plan = Plan {
        from: args.from,
        to,
        reason: args.reason,
        limit: args.limit,
        dry_run: args.dry_run,
    };
    let report = replay::replay(&args.rabbitmq_url, &plan)
        .await
        .context("replaying")?;
    let (verb, counts) = if plan.dry_run {
        ("would move", &report.matching)
    } else {
        ("moved", &report.moved)
    };
    for (reason, count) in counts {
        println!("{verb} reason={reason} messages={count}");
    }
    println!(
        "{verb} {} in all, {} left in {} (another reason), {} failed",
        counts.values().sum::<u64>(),
        report.skipped,
        plan.from,
        report.failed.len()
    );
    for failure in &report.failed {
        eprintln!("bulk-recorder replay: not moved: {failure}");
    }
    if !report.failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
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

/// lapin logs every message the broker returns (an event routed nowhere: the ledger's topology
/// may bind only some routing keys) as a warning with its whole body: one line per event, which
/// `bulk_recorder_events_unroutable_total` counts instead. Kept whatever `RUST_LOG` says, unless
/// it names that target itself.
const RETURNED_MESSAGES: &str = "lapin::returned_messages";

fn init_logs(format: LogFormat) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let names_returns = from_env
        .as_deref()
        .is_some_and(|v| v.contains(RETURNED_MESSAGES));
    let mut filter = from_env
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    if !names_returns {
        filter = filter.add_directive(
            format!("{RETURNED_MESSAGES}=error")
                .parse()
                .expect("a valid directive"),
        );
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
