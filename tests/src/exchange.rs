//! Exchanges of a test's own with a queue bound to them: where the ledger's events and the
//! recorder's dead letters go. The exchange is deleted when dropped (its queue by its own
//! [`TestQueue`]).

use std::collections::BTreeMap;

use lapin::{
    ExchangeKind,
    options::{
        BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use uuid::Uuid;

use crate::{TestQueue, connect, run_detached};

pub struct TestExchange {
    pub name: String,
    kind: ExchangeKind,
    /// The routing key its queue is bound with.
    pub binding: String,
    pub queue: TestQueue,
}

/// A message taken from the exchange's queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub persistent: bool,
    /// Its text headers.
    pub headers: BTreeMap<String, String>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// A text header, empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

impl TestExchange {
    /// A name only: nothing is declared until [`TestExchange::declare`].
    pub fn topic(prefix: &str) -> Self {
        Self::named(prefix, ExchangeKind::Topic, "#")
    }

    /// A direct exchange whose queue is bound (once [`TestExchange::declare`]d) by `routing_key`.
    pub fn direct(prefix: &str, routing_key: &str) -> Self {
        Self::named(prefix, ExchangeKind::Direct, routing_key)
    }

    fn named(prefix: &str, kind: ExchangeKind, binding: &str) -> Self {
        Self {
            name: format!("br-test-{prefix}-{}", Uuid::new_v4().simple()),
            kind,
            binding: binding.to_string(),
            queue: TestQueue::new(),
        }
    }

    /// Declares the exchange (durable) and its queue, and binds them.
    pub async fn declare(&self) {
        self.declare_unbound().await;
        self.bind().await;
    }

    /// Declares the exchange and its queue, without the binding: what is published goes nowhere.
    pub async fn declare_unbound(&self) {
        let connection = connect().await;
        let channel = connection.create_channel().await.expect("channel");
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.name.as_str().into(),
                self.kind.clone(),
                durable,
                FieldTable::default(),
            )
            .await
            .expect("declare exchange");
        channel
            .queue_declare(
                self.queue.name.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .expect("declare queue");
        let _ = connection.close(200, "ok".into()).await;
    }

    pub async fn bind(&self) {
        let connection = connect().await;
        let channel = connection.create_channel().await.expect("channel");
        channel
            .queue_bind(
                self.queue.name.as_str().into(),
                self.name.as_str().into(),
                self.binding.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        let _ = connection.close(200, "ok".into()).await;
    }

    /// Every message in the bound queue, taken out of it.
    pub async fn take(&self) -> Vec<Received> {
        self.read(true).await
    }

    /// Every message in the bound queue, left in it.
    pub async fn peek(&self) -> Vec<Received> {
        self.read(false).await
    }

    async fn read(&self, take: bool) -> Vec<Received> {
        let connection = connect().await;
        let channel = connection.create_channel().await.expect("channel");
        let mut received = Vec::new();
        while let Some(got) = channel
            .basic_get(
                self.queue.name.as_str().into(),
                BasicGetOptions { no_ack: take },
            )
            .await
            .expect("basic.get")
        {
            let properties = &got.delivery.properties;
            received.push(Received {
                routing_key: got.delivery.routing_key.to_string(),
                body: got.delivery.data.clone(),
                message_id: properties.message_id().as_ref().map(|m| m.to_string()),
                content_type: properties.content_type().as_ref().map(|c| c.to_string()),
                persistent: *properties.delivery_mode() == Some(2),
                headers: text_headers(properties.headers().as_ref()),
            });
        }
        // What was not acknowledged goes back to the queue with the connection.
        let _ = connection.close(200, "ok".into()).await;
        received
    }
}

fn text_headers(headers: Option<&FieldTable>) -> BTreeMap<String, String> {
    headers
        .map(|h| {
            h.inner()
                .iter()
                .filter_map(|(k, v)| match v {
                    AMQPValue::LongString(s) => Some((k.to_string(), s.to_string())),
                    AMQPValue::ShortString(s) => Some((k.to_string(), s.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for TestExchange {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(async move {
            let connection = connect().await;
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
            let _ = connection.close(200, "ok".into()).await;
        });
    }
}
