//! `bulk-recorder-publish`: realistic ledger traffic for the demo, the tests and the benchmark.
//! Not part of the recorder: the recorder never encodes a message.
//!
//! Messages are persistent and published with publisher confirms: when `publish` returns, the
//! broker has them all.

pub mod ledger_redis;
mod midaz;
mod sample;

use lapin::{
    BasicProperties, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::FieldTable,
};
use uuid::Uuid;

pub use sample::{pending_and_commit, sample_transaction, with_metadata};

use ledger_redis::Backup;

use bulk_recorder::{
    broker,
    message::{Decimal, Format, Transaction},
};

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub count: usize,
    pub operations: usize,
    /// Percentage (0..=100) of messages that repeat an earlier transaction (a redelivery).
    pub duplicate_percent: u8,
    /// Percentage (0..=100) of transactions published as PENDING, each followed later by its
    /// commit (a second message with the same id, APPROVED, and new operations).
    pub pending_percent: u8,
    /// Undecodable or invalid messages, spread among the others.
    pub invalid: usize,
    /// Formats used in turn, message after message.
    pub formats: Vec<Format>,
    /// The ledger's Redis: its backup entries are written there first, as the ledger does.
    pub ledger_redis: Option<String>,
    /// Percentage (0..=100) of transactions that carry metadata (and on their first operation).
    pub metadata_percent: u8,
}

impl Default for PublishPlan {
    /// A thousand JSON postings of five operations each.
    fn default() -> Self {
        Self {
            count: 1000,
            operations: 5,
            duplicate_percent: 0,
            pending_percent: 0,
            invalid: 0,
            formats: vec![Format::Json],
            ledger_redis: None,
            metadata_percent: 0,
        }
    }
}

/// What was published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub messages: usize,
    pub unique_transactions: usize,
    pub duplicates: usize,
    /// Commits of PENDING transactions (their second message).
    pub commits: usize,
    pub invalid: usize,
    pub operations_per_transaction: usize,
    /// Backup entries written to the ledger's Redis.
    pub backed_up: usize,
    /// Transactions carrying metadata.
    pub with_metadata: usize,
}

/// Encodes a transaction as a message body.
pub fn encode(transaction: &Transaction, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(transaction).expect("a transaction serializes to JSON"),
        Format::Msgpack => msgpack(transaction),
        Format::Midaz => midaz::encode(transaction, false),
    }
}

/// Encodes the commit (or cancel) of a PENDING transaction: in the ledger's format it is marked
/// as settling a pending one (`Validate.Pending`), which its Redis backup rule depends on.
pub fn encode_commit(commit: &Transaction, format: Format) -> Vec<u8> {
    match format {
        Format::Midaz => midaz::encode(commit, true),
        other => encode(commit, other),
    }
}

/// The canonical msgpack form: a map with the field names as keys, ids, decimals and
/// timestamps as text (what every msgpack library can read without extensions).
fn msgpack(transaction: &Transaction) -> Vec<u8> {
    let mut body = Vec::with_capacity(1024);
    let mut serializer = rmp_serde::Serializer::new(&mut body)
        .with_struct_map()
        .with_human_readable();
    serde::Serialize::serialize(transaction, &mut serializer)
        .expect("a transaction serializes to msgpack");
    body
}

/// The content type a producer of `format` sets (the reference ledger labels its msgpack
/// bodies `application/json`).
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json | Format::Midaz => "application/json",
        Format::Msgpack => "application/msgpack",
    }
}

/// One body that the recorder must reject, in turn: malformed, mismatched, negative, empty.
fn invalid_body(i: usize) -> Vec<u8> {
    match i % 4 {
        0 => b"{\"id\": \"not-json".to_vec(),
        1 => {
            let mut t = sample_transaction(2);
            t.operations[1].transaction_id = Uuid::now_v7();
            encode(&t, Format::Json)
        }
        2 => {
            let mut t = sample_transaction(1);
            t.amount = Some(Decimal::from_i64(-1));
            encode(&t, Format::Json)
        }
        _ => b"{}".to_vec(),
    }
}

/// Publishes raw bodies to `queue` with confirms; bodies are `(bytes, content_type)`.
pub async fn publish_bodies(
    connection: &Connection,
    queue: &str,
    bodies: impl IntoIterator<Item = (Vec<u8>, &'static str)>,
) -> Result<usize, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut confirms = Vec::with_capacity(1024);
    let mut sent = 0;
    for (i, (body, content_type)) in bodies.into_iter().enumerate() {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(content_type.into())
            .with_message_id(format!("msg-{i}").into());
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await?,
        );
        sent += 1;
        if confirms.len() == 1024 {
            for confirm in confirms.drain(..) {
                confirm.await?;
            }
        }
    }
    for confirm in confirms {
        confirm.await?;
    }
    let _ = channel.close(200, "published".into()).await;
    Ok(sent)
}

/// Declares `queue` (durable) unless it exists, as the recorder does at its start.
pub async fn declare_queue(connection: &Connection, queue: &str) -> Result<(), lapin::Error> {
    match broker::ensure_queue(connection, queue, &broker::QueueOrigin::default()).await {
        Ok(()) => Ok(()),
        Err(broker::QueueError::Broker(error)) => Err(error),
        Err(broker::QueueError::Gone(_)) => unreachable!("a queue never seen cannot be gone"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the ledger's Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Publishes according to `plan`; the queue is declared (durable) when missing. With
/// `plan.ledger_redis`, the ledger's backup entries are written first, as the ledger does.
pub async fn publish(
    url: &str,
    queue: &str,
    plan: &PublishPlan,
) -> Result<Published, PublishError> {
    let (bodies, mut published, backups) = traffic(plan);
    if let Some(redis) = &plan.ledger_redis {
        published.backed_up = ledger_redis::back_up(redis, &backups).await?;
    }
    let connection = broker::connect(url, &format!("{queue}-publisher")).await?;
    declare_queue(&connection, queue).await?;
    published.messages = publish_bodies(&connection, queue, bodies).await?;
    let _ = connection.close(200, "done".into()).await;
    Ok(published)
}

/// A durable topic exchange `name` (as the ledger's broker definitions declare its events
/// exchanges) and a queue `name` bound to every routing key, where the events can be seen.
pub async fn declare_events_exchange(url: &str, name: &str) -> Result<(), lapin::Error> {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
    let connection = broker::connect(url, &format!("{name}-declare")).await?;
    let channel = connection.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            name.into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    declare_queue(&connection, name).await?;
    channel
        .queue_bind(
            name.into(),
            name.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = connection.close(200, "declared".into()).await;
    Ok(())
}

/// A message body and its content type.
type Body = (Vec<u8>, &'static str);

/// The bodies `plan` asks for, in publishing order, what they are, and the ledger's backup
/// entries of their transactions.
fn traffic(plan: &PublishPlan) -> (Vec<Body>, Published, Vec<Backup>) {
    let mut published = Published {
        operations_per_transaction: plan.operations,
        invalid: plan.invalid,
        ..Default::default()
    };
    let mut backups = Vec::with_capacity(plan.count);
    let mut sent: Vec<Body> = Vec::new();
    let every_invalid = plan
        .count
        .checked_div(plan.invalid)
        .map_or(usize::MAX, |n| n.max(1));
    let mut bodies = Vec::with_capacity(plan.count + plan.invalid);
    let mut invalid_left = plan.invalid;
    // Commits wait a few messages behind their PENDING transaction, as they would in a ledger.
    let mut commits: std::collections::VecDeque<Body> = Default::default();
    let formats = if plan.formats.is_empty() {
        &[Format::Json][..]
    } else {
        &plan.formats[..]
    };
    for i in 0..plan.count {
        let format = formats[i % formats.len()];
        let body = if !sent.is_empty() && fastrand::u8(0..100) < plan.duplicate_percent {
            published.duplicates += 1;
            sent[fastrand::usize(..sent.len())].clone()
        } else if fastrand::u8(0..100) < plan.pending_percent {
            published.unique_transactions += 1;
            let (mut pending, mut commit) = pending_and_commit(plan.operations);
            if fastrand::u8(0..100) < plan.metadata_percent {
                published.with_metadata += 1;
                // The commit carries the PENDING transaction's metadata again, as the ledger's.
                with_metadata(&mut pending);
                commit.metadata = pending.metadata.clone();
            }
            // Only the ledger's own messages come with its backup entries.
            if format == Format::Midaz {
                backups.push(Backup::of(&pending, "APPROVED"));
            }
            commits.push_back((encode_commit(&commit, format), content_type(format)));
            (encode(&pending, format), content_type(format))
        } else {
            published.unique_transactions += 1;
            let mut posting = sample_transaction(plan.operations);
            if fastrand::u8(0..100) < plan.metadata_percent {
                published.with_metadata += 1;
                with_metadata(&mut posting);
            }
            if format == Format::Midaz {
                backups.push(Backup::of(&posting, "CREATED"));
            }
            let body = (encode(&posting, format), content_type(format));
            sent.push(body.clone());
            body
        };
        bodies.push(body);
        if commits.len() > 8 || (i + 1 == plan.count) {
            published.commits += commits.len();
            bodies.extend(commits.drain(..));
        }
        if invalid_left > 0 && i % every_invalid == 0 {
            bodies.push((
                invalid_body(plan.invalid - invalid_left),
                "application/json",
            ));
            invalid_left -= 1;
        }
    }
    bodies.extend((0..invalid_left).map(|i| (invalid_body(i), "application/json")));
    (bodies, published, backups)
}
