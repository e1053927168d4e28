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
//! acknowledgements), a bulk's events in one batch of confirms.

use std::{collections::HashSet, time::Duration};

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::FieldTable,
};
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

use super::event_body::{Event, overdraft_events, transaction_event};
use crate::{
    backoff::Backoff,
    broker,
    pipeline::collector::Pending,
    telemetry::{health::Health, metrics::Metrics, traces},
};

/// How long a batch of confirms may take before readiness says its messages are held.
const SLOW: Duration = Duration::from_secs(1);
/// How long a batch may wait for its confirms before the connection is dropped and the batch
/// published again on a new one (a broker that went silent, a blocked connection).
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
    #[error("no confirm within {0:?}")]
    Unconfirmed(Duration),
}

/// Publishes events on a connection of its own, made on first use and again after a failure.
pub struct Events {
    config: EventsConfig,
    open: Mutex<Option<(Connection, Channel)>>,
}

impl Events {
    pub fn new(config: EventsConfig) -> Self {
        Self {
            config,
            open: Mutex::new(None),
        }
    }

    /// Publishes the events of `messages` (but those of `conflicting` transactions) and returns
    /// once the broker confirmed every one; retries, holding readiness, until then or shutdown
    /// (`false`).
    pub async fn publish(
        &self,
        messages: &[Pending],
        conflicting: &HashSet<Uuid>,
        health: &std::sync::Arc<Health>,
        metrics: &Metrics,
        shutdown: &watch::Receiver<bool>,
    ) -> bool {
        let mut outgoing = self.outgoing(messages, conflicting);
        if outgoing.is_empty() {
            return true;
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut hold = None;
        loop {
            let attempt = async {
                let confirm = traces::step("publish events", self.confirm(&mut outgoing, metrics));
                tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
                    .await
                    .unwrap_or(Err(PublishError::Unconfirmed(CONFIRM_TIMEOUT)))
            };
            let mut stop = shutdown.clone();
            // Shutdown is not held by confirms a blocked broker may never send: the messages
            // go back to the queue unacknowledged, and their events come again with them.
            let result = tokio::select! {
                result = health.hold_while_slow(attempt, SLOW, &mut hold) => result,
                _ = async { drop(stop.wait_for(|s| *s).await) } => return false,
            };
            match result {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(%error, events = outgoing.len(), "events not confirmed: holding their messages and retrying");
                    hold.get_or_insert_with(|| health.hold_aside());
                    if !matches!(error, PublishError::Refused(_)) {
                        self.close().await;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = async { drop(stop.wait_for(|s| *s).await) } => return false,
            }
        }
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

    /// Publishes `outgoing` in one batch and waits for every confirm; what was confirmed is
    /// removed from `outgoing` (and counted), what was not stays for the next try.
    async fn confirm(
        &self,
        outgoing: &mut Vec<Outgoing>,
        metrics: &Metrics,
    ) -> Result<(), PublishError> {
        let channel = self.channel().await?;
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
                BasicPublishOptions::default(),
                &item.event.body,
                properties,
            );
            pending.push(publish.await?);
        }
        let mut refused = Vec::new();
        for (index, confirm) in pending.into_iter().enumerate() {
            match confirm.await? {
                Confirmation::Nack(_) => refused.push(index),
                _ => metrics.event_published(outgoing[index].event.kind),
            }
        }
        let failed = refused.len();
        let mut index = 0;
        outgoing.retain(|_| {
            let keep = refused.contains(&index);
            index += 1;
            keep
        });
        if failed > 0 {
            return Err(PublishError::Refused(failed));
        }
        Ok(())
    }

    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut open = self.open.lock().await;
        if let Some((_, channel)) = open.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let connection =
            broker::connect(&self.config.url, &format!("{}:events", self.config.queue)).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *open = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Lets go of the connection (made again on the next try).
    pub async fn close(&self) {
        if let Some((connection, _channel)) = self.open.lock().await.take() {
            broker::close(&connection, "events done").await;
        }
    }
}
