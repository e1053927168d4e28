//! `bulk-recorder replay`: moves dead-lettered messages back, once their cause is fixed (a parent
//! that arrived, a schema corrected), in one command.
//!
//! Each message is read from the source queue, published to the destination with publisher
//! confirms (`mandatory`: a destination that routes nowhere is a failure), and acknowledged from
//! the source only once the broker confirmed its copy: a message is never lost, at worst copied
//! twice (a crash between the two, which the recorder then counts as a duplicate). The headers the
//! recorder put on the dead letter (`x-bulk-recorder-*`) are removed, so that a message that fails
//! again is dead-lettered with its new reason; everything else is kept. Only the messages in the
//! queue when the replay starts are read: a message that fails again and comes back is not read a
//! second time.
//!
//! Messages left (another reason, a dry run, a failed copy) are published back to the source
//! queue unchanged (through the default exchange, confirmed) and only then acknowledged: they
//! move to its tail with their headers, and a replay never spends a delivery. A requeue would:
//! a quorum queue counts every requeue against its delivery limit (RabbitMQ 4 gives each one a
//! limit of 20), and past it drops the message, so a few dry runs would destroy the dead
//! letters they were meant to show. Only when the source refuses the copy (a full queue) is the
//! message requeued instead.

use std::collections::BTreeMap;

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};

use crate::broker::{self, dead_letter};

/// Where the messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Exchange {
        exchange: String,
        routing_key: String,
    },
    /// Through the default exchange.
    Queue(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub from: String,
    pub to: Destination,
    /// Only messages the recorder dead-lettered with this reason.
    pub reason: Option<String>,
    /// At most this many messages moved (examined, in a dry run).
    pub limit: Option<u64>,
    pub dry_run: bool,
}

/// What a replay did, by the recorder's reason header (`(none)` for messages without it).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub moved: BTreeMap<String, u64>,
    /// In a dry run: what would have moved.
    pub matching: BTreeMap<String, u64>,
    pub skipped: u64,
    /// Messages that could not be moved, with why (they stay in the source queue).
    pub failed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the queue {0:?} does not exist")]
    NoSource(String),
    #[error("the exchange {0:?} does not exist: declare it, or name another with --to-exchange")]
    NoExchange(String),
}

pub const NO_REASON: &str = "(none)";

/// Put on a message a replay put back, with that replay's own id (removed, like the recorder's
/// other headers, when a replay moves it).
pub const PASS_HEADER: &str = "x-bulk-recorder-replay-pass";

pub async fn replay(url: &str, plan: &Plan) -> Result<Report, ReplayError> {
    let connection = broker::connect(url, &format!("replay:{}", plan.from)).await?;
    let result = run(&connection, plan).await;
    broker::close(&connection, "replayed").await;
    result
}

async fn run(connection: &Connection, plan: &Plan) -> Result<Report, ReplayError> {
    let source = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let in_queue = source
        .queue_declare(plan.from.as_str().into(), passive, FieldTable::default())
        .await
        .map_err(|_| ReplayError::NoSource(plan.from.clone()))?
        .message_count();
    let pass = Pass {
        plan,
        source: connection.create_channel().await?,
        target: target_channel(connection, &plan.to).await?,
        back: Destination::Queue(plan.from.clone()),
        id: uuid::Uuid::new_v4().to_string(),
    };
    let mut report = Report::default();
    for _ in 0..in_queue {
        if plan.limit.is_some_and(|limit| moved(&report) >= limit) {
            break;
        }
        let Some(message) = pass
            .source
            .basic_get(plan.from.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        if !pass.take(message.delivery, &mut report).await? {
            break;
        }
    }
    Ok(report)
}

/// One replay's way through the source queue.
struct Pass<'a> {
    plan: &'a Plan,
    source: Channel,
    /// Confirm mode: copies to the destination, and back to the source.
    target: Channel,
    back: Destination,
    /// Marks the copies put back by this pass: met again, the pass has gone round the queue.
    id: String,
}

impl Pass<'_> {
    /// Moves `delivery` or puts it back, and says whether to go on (not when it was put back by
    /// this very pass).
    async fn take(&self, delivery: Delivery, report: &mut Report) -> Result<bool, ReplayError> {
        let reason = reason_of(&delivery.properties);
        let again = dead_letter::header(&delivery.properties, PASS_HEADER).as_deref()
            == Some(self.id.as_str());
        let selected = self
            .plan
            .reason
            .as_ref()
            .is_none_or(|wanted| *wanted == reason);
        let moved = if again {
            false
        } else if !selected {
            report.skipped += 1;
            false
        } else if self.plan.dry_run {
            *report.matching.entry(reason).or_default() += 1;
            false
        } else {
            let copy = without_reason(&delivery.properties);
            match publish(&self.target, &self.plan.to, &delivery.data, copy).await {
                Ok(()) => {
                    *report.moved.entry(reason).or_default() += 1;
                    true
                }
                Err(why) => {
                    report.failed.push(format!("{reason}: {why}"));
                    false
                }
            }
        };
        let marked = marked(&delivery.properties, &self.id);
        let kept = moved
            || publish(&self.target, &self.back, &delivery.data, marked)
                .await
                .is_ok();
        let tag = delivery.delivery_tag;
        if kept {
            self.source
                .basic_ack(tag, BasicAckOptions::default())
                .await?;
        } else {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            self.source.basic_nack(tag, requeue).await?;
        }
        Ok(!again)
    }
}

fn moved(report: &Report) -> u64 {
    report.moved.values().chain(report.matching.values()).sum()
}

/// A confirm-mode channel, after checking that the exchange exists.
async fn target_channel(connection: &Connection, to: &Destination) -> Result<Channel, ReplayError> {
    if let Destination::Exchange { exchange, .. } = to
        && !exchange.is_empty()
    {
        let probe = connection.create_channel().await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        probe
            .exchange_declare(
                exchange.as_str().into(),
                lapin::ExchangeKind::Direct,
                passive,
                FieldTable::default(),
            )
            .await
            .map_err(|_| ReplayError::NoExchange(exchange.clone()))?;
    }
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// The recorder's reason header, or [`NO_REASON`].
fn reason_of(properties: &BasicProperties) -> String {
    dead_letter::header(properties, dead_letter::REASON_HEADER)
        .unwrap_or_else(|| NO_REASON.to_string())
}

/// Publishes a copy with `properties`; `Ok` once the broker confirmed it routed it.
async fn publish(
    channel: &Channel,
    to: &Destination,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let (exchange, routing_key) = match to {
        Destination::Exchange {
            exchange,
            routing_key,
        } => (exchange.as_str(), routing_key.as_str()),
        Destination::Queue(queue) => ("", queue.as_str()),
    };
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    match confirm {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(format!(
            "routed nowhere (exchange {exchange:?}, routing key {routing_key:?})"
        )),
        Confirmation::Nack(_) => Err("refused by the broker".into()),
    }
}

/// The message's properties with this pass's mark.
fn marked(properties: &BasicProperties, pass: &str) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        PASS_HEADER.into(),
        lapin::types::AMQPValue::LongString(pass.into()),
    );
    properties.clone().with_headers(headers)
}

fn without_reason(properties: &BasicProperties) -> BasicProperties {
    let Some(headers) = properties.headers() else {
        return properties.clone();
    };
    let mut kept = FieldTable::default();
    for (name, value) in headers.inner() {
        if !name.as_str().starts_with("x-bulk-recorder-") {
            kept.insert(name.clone(), value.clone());
        }
    }
    properties.clone().with_headers(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorders_headers_are_removed_and_the_rest_kept() {
        let dead = dead_letter::with_reason(
            &BasicProperties::default().with_message_id("m-1".into()),
            "missing_parent",
            "its parent was not stored",
            "pod-a",
        );
        assert_eq!(reason_of(&dead), "missing_parent");
        let replayed = without_reason(&dead);
        assert_eq!(reason_of(&replayed), NO_REASON);
        assert!(replayed.headers().as_ref().unwrap().inner().is_empty());
        assert_eq!(replayed.message_id().as_ref().unwrap().as_str(), "m-1");
    }
}
