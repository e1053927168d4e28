//! Dead letters that say why.
//!
//! A plain `basic.reject` sends a message to the queue's dead-letter exchange with RabbitMQ's
//! `x-death` only ("rejected"): the reason stays in the recorder's log. When a target is
//! configured (`BULK_RECORDER_DEAD_LETTER_EXCHANGE`, `..._ROUTING_KEY`), the recorder publishes
//! the message there itself, unchanged (body, properties, headers), with three headers more:
//! `x-bulk-recorder-reason`, `x-bulk-recorder-error` and `x-bulk-recorder-pod`, the way Kafka
//! Connect puts context headers on its dead-letter records. The copy is published `mandatory`
//! with publisher confirms, and the original is acknowledged only once the broker confirmed the
//! copy was routed: a dead letter is never lost, only duplicated at worst (a crash between the
//! confirm and the ack).
//!
//! Dead letters go out on a connection of their own: under a memory or disk alarm RabbitMQ
//! stops reading from every connection that publishes, acknowledgements included, so a dead
//! letter on the consuming connection would stop every acknowledgement. And one at a time: lapin
//! pairs a returned (unroutable) message with the oldest pending confirm, so with several in
//! flight a return could be charged to another copy; each copy also carries an identifier of
//! its own (`x-bulk-recorder-id`), checked on whatever comes back.

use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};

use super::Raw;

pub const REASON_HEADER: &str = "x-bulk-recorder-reason";
pub const ERROR_HEADER: &str = "x-bulk-recorder-error";
pub const POD_HEADER: &str = "x-bulk-recorder-pod";
/// Tells this copy apart from any other the broker returns.
pub const ID_HEADER: &str = "x-bulk-recorder-id";

/// Longest error text put in a header (a broker limits the frame; logs keep the rest).
const MAX_ERROR_BYTES: usize = 4096;

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub exchange: String,
    /// `None`: the routing key the message arrived with (as RabbitMQ's own dead-lettering does
    /// without `x-dead-letter-routing-key`).
    pub routing_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error(
        "the dead-letter exchange {0:?} routed the message nowhere (no queue bound for routing \
         key {1:?}): bind a queue, or set BULK_RECORDER_DEAD_LETTER_ROUTING_KEY"
    )]
    Unroutable(String, String),
    #[error("the broker refused the dead letter (nack)")]
    Refused,
    #[error("the broker returned a message that is not the dead letter just published")]
    ReturnedAnother,
}

impl DeadLetterError {
    /// Whether the connection is gone (and must be made again), rather than the message refused.
    pub fn is_connection(&self) -> bool {
        matches!(self, DeadLetterError::Broker(_))
    }
}

/// Publishes dead letters on a confirm-mode channel of a connection of its own.
pub struct DeadLetters {
    connection: Connection,
    channel: Channel,
    target: Target,
    pod: String,
}

impl DeadLetters {
    /// Connects (named `bulk-recorder:<queue>:dead-letters`) and checks that the exchange exists
    /// (a passive declare: the recorder never creates or changes it). The default exchange
    /// (`""`) always exists.
    pub async fn open(
        url: &str,
        queue: &str,
        target: Target,
        pod: String,
    ) -> Result<Self, lapin::Error> {
        let connection = super::connect(url, &format!("{queue}:dead-letters")).await?;
        let channel = connection.create_channel().await?;
        if !target.exchange.is_empty() {
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    target.exchange.as_str().into(),
                    lapin::ExchangeKind::Direct,
                    passive,
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            connection,
            channel,
            target,
            pod,
        })
    }

    /// Publishes a copy of `raw` with the reason, and returns once the broker confirmed it
    /// routed and stored it. Called for one message at a time.
    pub async fn publish(
        &self,
        raw: &Raw,
        reason: &str,
        error: &str,
    ) -> Result<(), DeadLetterError> {
        let id = uuid::Uuid::new_v4().to_string();
        let properties = with_reason(&raw.properties, reason, error, &self.pod);
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(ID_HEADER.into(), AMQPValue::LongString(id.as_str().into()));
        let routing_key = self
            .target
            .routing_key
            .as_deref()
            .unwrap_or(&raw.routing_key);
        let confirm = self
            .channel
            .basic_publish(
                self.target.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &raw.body,
                properties.with_headers(headers),
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned))
                if header(&returned.delivery.properties, ID_HEADER) == Some(id) =>
            {
                Err(DeadLetterError::Unroutable(
                    self.target.exchange.clone(),
                    routing_key.to_string(),
                ))
            }
            Confirmation::Ack(Some(_)) => Err(DeadLetterError::ReturnedAnother),
            Confirmation::Nack(_) => Err(DeadLetterError::Refused),
        }
    }

    /// Closes the connection, waiting at most [`super::CLOSE_TIMEOUT`].
    pub async fn close(&self) {
        super::close(&self.connection, "dead letters done").await;
    }
}

/// A text header's value.
pub fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The original properties and headers, with the recorder's three headers set.
pub fn with_reason(
    properties: &BasicProperties,
    reason: &str,
    error: &str,
    pod: &str,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    let error = truncate(error, MAX_ERROR_BYTES);
    for (name, value) in [
        (REASON_HEADER, reason),
        (ERROR_HEADER, error),
        (POD_HEADER, pod),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    }
    properties.clone().with_headers(headers)
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_added_and_the_original_headers_kept() {
        let mut original = FieldTable::default();
        original.insert("x-trace".into(), AMQPValue::LongString("abc".into()));
        let properties = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_headers(original);
        let long = "é".repeat(5000);
        let dead = with_reason(&properties, "invalid", &long, "pod-a");
        let headers = dead.headers().clone().unwrap();
        let get = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(get("x-trace"), "abc");
        assert_eq!(get(REASON_HEADER), "invalid");
        assert_eq!(get(POD_HEADER), "pod-a");
        assert!(get(ERROR_HEADER).len() <= MAX_ERROR_BYTES);
        assert_eq!(dead.message_id().as_ref().unwrap().as_str(), "m-1");
    }
}
