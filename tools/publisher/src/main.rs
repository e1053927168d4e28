//! `bulk-recorder-publish`: publishes sample ledger traffic to a queue (persistent, with
//! publisher confirms), for the demo, the benchmark and trying a recorder out.

use anyhow::Context;
use bulk_recorder::message::Format;
use bulk_recorder_publish::{PublishPlan, publish};
use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(
    version,
    about = "Publishes realistic sample ledger transactions to a RabbitMQ queue."
)]
struct Cli {
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
    /// The ledger's Redis: write its backup entry and write-behind key for every transaction
    /// first, as the ledger does before publishing (the recorder acknowledges them).
    #[arg(long)]
    ledger_redis: Option<String>,
    /// Declares a durable topic exchange of this name and a queue of the same name bound to all
    /// its routing keys (somewhere to see the ledger's events), then publishes as asked.
    #[arg(long)]
    events_exchange: Option<String>,
    /// Percentage of transactions that carry metadata (kept in the ledger's document store).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    metadata: u8,
    #[arg(
        long,
        env = "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
        default_value = "transaction_balance_operation"
    )]
    queue: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum BodyFormat {
    Json,
    Msgpack,
    Midaz,
}

impl From<BodyFormat> for Format {
    fn from(format: BodyFormat) -> Self {
        match format {
            BodyFormat::Json => Format::Json,
            BodyFormat::Msgpack => Format::Msgpack,
            BodyFormat::Midaz => Format::Midaz,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let plan = PublishPlan {
        count: cli.count,
        operations: cli.operations,
        duplicate_percent: cli.duplicates,
        pending_percent: cli.pending,
        invalid: cli.invalid,
        formats: cli.format.into_iter().map(Format::from).collect(),
        ledger_redis: cli.ledger_redis,
        metadata_percent: cli.metadata,
    };
    if let Some(exchange) = &cli.events_exchange {
        bulk_recorder_publish::declare_events_exchange(&cli.rabbitmq_url, exchange)
            .await
            .context("declaring the events exchange")?;
    }
    let started = std::time::Instant::now();
    let published = publish(&cli.rabbitmq_url, &cli.queue, &plan)
        .await
        .context("publishing")?;
    println!(
        "published={} unique_transactions={} duplicates={} commits={} invalid={} operations_per_transaction={} ledger_backups={} with_metadata={} seconds={:.2}",
        published.messages,
        published.unique_transactions,
        published.duplicates,
        published.commits,
        published.invalid,
        published.operations_per_transaction,
        published.backed_up,
        published.with_metadata,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
