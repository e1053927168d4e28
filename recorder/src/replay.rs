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
//! second time. Messages left (filtered out, a dry run, a failed copy) go back to the source queue.

use std::collections::BTreeMap;

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
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
    let source = connection.create_channel().await?;
    let target = target_channel(connection, &plan.to).await?;
    let mut report = Report::default();
    let mut left = Vec::new();
    for _ in 0..in_queue {
        if plan.limit.is_some_and(|limit| moved(&report) >= limit) {
            break;
        }
        let Some(message) = source
            .basic_get(plan.from.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let reason = reason_of(&delivery.properties);
        if plan.reason.as_ref().is_some_and(|wanted| *wanted != reason) {
            report.skipped += 1;
            left.push(delivery.delivery_tag);
        } else if plan.dry_run {
            *report.matching.entry(reason).or_default() += 1;
            left.push(delivery.delivery_tag);
        } else {
            match publish(&target, &plan.to, &delivery.data, &delivery.properties).await {
                Ok(()) => {
                    source
                        .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                        .await?;
                    *report.moved.entry(reason).or_default() += 1;
                }
                Err(why) => {
                    report.failed.push(format!("{reason}: {why}"));
                    left.push(delivery.delivery_tag);
                }
            }
        }
    }
    for tag in left {
        let back = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        source.basic_nack(tag, back).await?;
    }
    Ok(report)
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
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(dead_letter::REASON_HEADER))
        .and_then(|value| match value {
            AMQPValue::LongString(s) => Some(s.to_string()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| NO_REASON.to_string())
}

/// Publishes a copy without the recorder's headers; `Ok` once the broker confirmed it routed it.
async fn publish(
    channel: &Channel,
    to: &Destination,
    body: &[u8],
    properties: &BasicProperties,
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
            without_reason(properties),
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
