//! The ledger's events, published as its consumer publishes them, and better: with publisher
//! confirms, after the rows (and metadata) are durable and before the messages are
//! acknowledged, so that an event is never lost (the ledger publishes after its ack, fire and
//! forget). At least once: a copy is possible after a crash between the confirm and the ack,
//! and every event has a stable `message_id` for consumers to drop it.
//!
//! Which: one transaction event per message whose rows were stored or found stored as sent
//! (a redelivery publishes again, with the same id; a message found conflicting publishes
//! nothing), and one overdraft event per overdraft movement. Events go out only to an exchange
//! that is named (`RABBITMQ_TRANSACTION_EVENTS_EXCHANGE`, `RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE`),
//! on a connection of their own (a publisher blocked by a broker alarm must not block the
//! acknowledgements), a bulk's events in one batch of confirms, retried by the after-commit
//! policy ([`crate::pipeline::policy`]) until every one is confirmed.
//!
//! A connection the broker blocks (a memory or disk alarm) is waited on, never replaced: its
//! publishes are routed once the alarm clears, and a new connection publishing them again
//! would only make copies. Only one that is silent without being blocked is dropped after
//! [`CONFIRM_TIMEOUT`]. Published `mandatory`: an event its exchange routes nowhere (nothing
//! bound for its routing key) is dropped by the broker as the ledger's own are, and counted
//! apart (`bulk_recorder_events_unroutable_total`), not as published.

use std::collections::HashSet;
use std::time::Duration;

use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionStatus, PublisherConfirm,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::FieldTable,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::event_body::{Event, overdraft_events, transaction_event};
use crate::{
    broker,
    pipeline::{
        collector::Pending,
        policy::{Attempt, Step},
    },
    telemetry::{health::Holds, metrics::Metrics, traces},
};

/// The events of a bulk hold its settlement (and the clocks that lead to a dead letter).
pub const STEP: Step = Step {
    name: "publish events",
    holds: Holds::Settlement,
    slow: Duration::from_secs(1),
};

/// How long a confirm may be silent on a connection the broker has not blocked before the
/// connection is dropped and the batch published again on a new one.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    pub url: String,
    /// Names the connection (`bulk-recorder:<queue>:events`).
    pub queue: String,
    /// `RABBITMQ_TRANSACTION_EVENTS_EXCHANGE` when transaction events are on.
    pub transactions: Option<String>,
    /// `RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE` when overdraft events are on.
    pub overdraft: Option<String>,
    /// The `version` of every event (the ledger's `VERSION`).
    pub version: String,
}

/// An event with where it goes and what it carries from its message.
struct Outgoing {
    exchange: String,
    event: Event,
    headers: FieldTable,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused {0} event(s) (nack)")]
    Refused(usize),
    #[error("no confirm within {0:?} on a connection the broker has not blocked")]
    Unconfirmed(Duration),
}

/// Publishes events on a connection of its own, made on first use and again after a failure.
pub struct Events {
    config: EventsConfig,
    open: Mutex<Option<(Connection, Channel)>>,
}

/// A bulk's events, until every one is confirmed (what was confirmed is not published again).
pub struct PublishEvents<'a> {
    events: &'a Events,
    outgoing: Vec<Outgoing>,
    metrics: &'a Metrics,
}

impl Attempt for PublishEvents<'_> {
    type Output = ();
    type Error = PublishError;

    async fn attempt(&mut self) -> Result<(), PublishError> {
        let confirmed = self.events.confirm(&mut self.outgoing, self.metrics);
        let result = traces::step("publish events", confirmed).await;
        if matches!(
            result,
            Err(PublishError::Broker(_) | PublishError::Unconfirmed(_))
        ) {
            self.events.close().await;
        }
        result
    }
}

/// What became of one batch: how many were confirmed, by kind, and how many of those the
/// broker returned as unroutable, by the kind of the returned message (lapin attaches a return
/// to the next confirm, which need not be its own).
#[derive(Default)]
struct Tally {
    confirmed: [u64; 2],
    returned: [u64; 2],
}

impl Tally {
    fn slot(kind: &str) -> usize {
        usize::from(kind == "overdraft")
    }

    fn count(&self, metrics: &Metrics) {
        for (slot, kind) in ["transaction", "overdraft"].into_iter().enumerate() {
            for _ in 0..self.confirmed[slot].saturating_sub(self.returned[slot]) {
                metrics.event_published(kind);
            }
            for _ in 0..self.returned[slot] {
                metrics.event_unroutable(kind);
            }
        }
    }
}

/// The kind of an event by its routing key (`midaz.balance.` for overdraft movements).
fn kind_of(routing_key: &str) -> &'static str {
    if routing_key.starts_with("midaz.balance.") {
        "overdraft"
    } else {
        "transaction"
    }
}

impl Events {
    pub fn new(config: EventsConfig) -> Self {
        Self {
            config,
            open: Mutex::new(None),
        }
    }

    /// The events of `messages` (but those of `conflicting` transactions) to publish; `None`
    /// when there are none.
    pub fn prepare<'a>(
        &'a self,
        messages: &[Pending],
        conflicting: &HashSet<Uuid>,
        metrics: &'a Metrics,
    ) -> Option<PublishEvents<'a>> {
        let outgoing = self.outgoing(messages, conflicting);
        (!outgoing.is_empty()).then_some(PublishEvents {
            events: self,
            outgoing,
            metrics,
        })
    }

    /// The events `messages` imply, in message order.
    fn outgoing(&self, messages: &[Pending], conflicting: &HashSet<Uuid>) -> Vec<Outgoing> {
        let now = chrono::Utc::now();
        let version = &self.config.version;
        let mut outgoing = Vec::new();
        for message in messages {
            let t = &message.transaction;
            if conflicting.contains(&t.id) {
                continue;
            }
            let headers = message.context.event_headers();
            if let Some(exchange) = &self.config.transactions {
                outgoing.push(Outgoing {
                    exchange: exchange.clone(),
                    event: transaction_event(t, version, now),
                    headers: headers.clone(),
                });
            }
            if let Some(exchange) = &self.config.overdraft {
                outgoing.extend(overdraft_events(t, version, now).into_iter().map(|event| {
                    Outgoing {
                        exchange: exchange.clone(),
                        event,
                        headers: headers.clone(),
                    }
                }));
            }
        }
        outgoing
    }

    /// Publishes `outgoing` in one batch and waits for the confirms; what was confirmed is
    /// removed from `outgoing` (and counted) even when a later one fails, what was not stays
    /// for the next try.
    async fn confirm(
        &self,
        outgoing: &mut Vec<Outgoing>,
        metrics: &Metrics,
    ) -> Result<(), PublishError> {
        let (status, channel) = self.channel().await?;
        let mut pending = Vec::with_capacity(outgoing.len());
        for item in outgoing.iter() {
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_message_id(item.event.message_id.as_str().into())
                .with_headers(item.headers.clone());
            let publish = channel.basic_publish(
                item.exchange.as_str().into(),
                item.event.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &item.event.body,
                properties,
            );
            pending.push(publish.await?);
        }
        let mut tally = Tally::default();
        let mut done = vec![false; outgoing.len()];
        let mut failure = None;
        for (index, confirm) in pending.into_iter().enumerate() {
            match wait_for_confirm(&status, confirm).await {
                Ok(Confirmation::Nack(_)) => {}
                Ok(Confirmation::Ack(returned)) => {
                    done[index] = true;
                    tally.confirmed[Tally::slot(outgoing[index].event.kind)] += 1;
                    if let Some(returned) = returned {
                        tally.returned
                            [Tally::slot(kind_of(returned.delivery.routing_key.as_str()))] += 1;
                    }
                }
                Ok(Confirmation::NotRequested) => done[index] = true,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        tally.count(metrics);
        let mut index = 0;
        outgoing.retain(|_| {
            index += 1;
            !done[index - 1]
        });
        match failure {
            Some(error) => Err(error),
            None if !outgoing.is_empty() => Err(PublishError::Refused(outgoing.len())),
            None => Ok(()),
        }
    }

    /// The open channel (with its connection's status), or a new one.
    async fn channel(&self) -> Result<(ConnectionStatus, Channel), lapin::Error> {
        let mut open = self.open.lock().await;
        if let Some((connection, channel)) = open.as_ref()
            && channel.status().connected()
        {
            return Ok((connection.status().clone(), channel.clone()));
        }
        let connection =
            broker::connect(&self.config.url, &format!("{}:events", self.config.queue)).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let status = connection.status().clone();
        *open = Some((connection, channel.clone()));
        Ok((status, channel))
    }

    /// Lets go of the connection (made again on the next try).
    pub async fn close(&self) {
        if let Some((connection, _channel)) = self.open.lock().await.take() {
            broker::close(&connection, "events done").await;
        }
    }
}

/// One confirm: waited for as long as the broker blocks the connection (an alarm: the publish
/// is routed once it clears); `Unconfirmed` after [`CONFIRM_TIMEOUT`] of silence otherwise.
async fn wait_for_confirm(
    connection: &ConnectionStatus,
    confirm: PublisherConfirm,
) -> Result<Confirmation, PublishError> {
    tokio::pin!(confirm);
    let mut said = false;
    loop {
        match tokio::time::timeout(CONFIRM_TIMEOUT, &mut confirm).await {
            Ok(confirmed) => return Ok(confirmed?),
            Err(_) if connection.blocked() => {
                if !said {
                    tracing::warn!(
                        "the broker blocks the events' connection (a memory or disk alarm): \
                         waiting on it, their messages held"
                    );
                    said = true;
                }
            }
            Err(_) => return Err(PublishError::Unconfirmed(CONFIRM_TIMEOUT)),
        }
    }
}
