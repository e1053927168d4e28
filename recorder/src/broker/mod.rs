//! The RabbitMQ side: one connection, `workers` channels, and settling deliveries per channel.

pub mod consumer;
pub mod context;
pub mod dead_letter;
pub mod depth;
pub mod outbox;
pub mod settle;

use std::{io, time::Duration};

use lapin::{
    Channel, Connection, ConnectionProperties, Consumer,
    options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions},
    types::FieldTable,
};

/// Connects with a name that shows, in the management UI and `rabbitmqctl list_connections`,
/// which queue this recorder serves. An `amqps://` URL trusts the system's CA certificates and
/// the one named by its `cacertfile` parameter.
pub async fn connect(url: &str, queue: &str) -> Result<Connection, lapin::Error> {
    let (uri, tls) = crate::config::connection_url::amqp_target(url).map_err(|p| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("RABBITMQ_URL: {}; {}", p.problem, p.fix),
        )
    })?;
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("bulk-recorder:{queue}").into());
    Connection::connect_uri_with_config(uri, properties, tls, lapin::runtime::default_runtime()?)
        .await
}

/// The longest the recorder waits for each of the broker's answers when it lets go of a
/// connection (a consumer's cancel, the connection's close): the broker requeues whatever a
/// connection left unacknowledged, and one that went silent must not hold the process.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes `connection`, waiting at most [`CLOSE_TIMEOUT`] for the broker's answer.
pub async fn close(connection: &Connection, reason: &str) {
    match tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, reason.into())).await {
        Ok(Ok(())) => tracing::debug!(reason, "broker connection closed"),
        Ok(Err(error)) => tracing::debug!(%error, reason, "closing the broker connection"),
        Err(_) => tracing::warn!(
            timeout_s = CLOSE_TIMEOUT.as_secs(),
            reason,
            "the broker did not answer the connection close: leaving it"
        ),
    }
}

/// Who made the queue, as far as this process knows: it decides whether a queue that has gone
/// may be declared again.
#[derive(Debug, Default)]
pub struct QueueOrigin(std::sync::Mutex<Option<Origin>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The queue existed when this process first looked: someone declared it, perhaps with a
    /// dead-letter exchange, a type, a delivery limit. The recorder never declares it again.
    Found,
    /// This process declared it (durable, no arguments), and may do so again.
    Declared,
}

/// The queue is gone and the recorder must not make a different one in its place.
#[derive(Debug, thiserror::Error)]
#[error(
    "the queue {0:?} existed when the recorder started and has been deleted: the recorder does \
     not declare it again (it would lose its arguments: dead-letter exchange, type, delivery \
     limit); declare it as it was, and the recorder resumes"
)]
pub struct QueueGone(pub String);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Gone(#[from] QueueGone),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// Makes sure `queue` exists without touching one that does.
///
/// An operator may have declared it with a dead-letter exchange, a quorum type or a length
/// limit; declaring it again with other arguments would fail (PRECONDITION_FAILED) and close
/// the channel. So: a passive declare first, and a plain durable declare only when the queue
/// does not exist and was not found by this process before (see [`Origin`]).
pub async fn ensure_queue(
    connection: &Connection,
    queue: &str,
    origin: &QueueOrigin,
) -> Result<(), QueueError> {
    let probe = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let exists = probe
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok();
    let mut known = origin.0.lock().expect("origin").to_owned();
    if exists {
        let _ = probe.close(200, "ok".into()).await;
        known.get_or_insert(Origin::Found);
    } else {
        if known == Some(Origin::Found) {
            return Err(QueueGone(queue.to_string()).into());
        }
        // A failed passive declare closes its channel; declare on a fresh one.
        let channel = connection.create_channel().await?;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue, "declared durable queue");
        let _ = channel.close(200, "ok".into()).await;
        known = Some(Origin::Declared);
    }
    *origin.0.lock().expect("origin") = known;
    Ok(())
}

/// One consuming channel: `basic.qos(prefetch)`, manual acknowledgements. Its consumer tag
/// names the process (`instance`: the pod name, or a random suffix) and the channel.
pub async fn open_consumer(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
    instance: &str,
    index: usize,
) -> Result<(Channel, Consumer, String), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let tag = consumer_tag(instance, index);
    let consumer = channel
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer, tag))
}

/// `bulk-recorder-<instance>-<channel>`: tells the recorder's consumers apart in
/// `rabbitmqctl list_consumers`.
pub fn consumer_tag(instance: &str, index: usize) -> String {
    format!("bulk-recorder-{instance}-{index}")
}

/// Where a message came from: its channel (by index) and its delivery tag on that channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub channel: usize,
    pub delivery: u64,
}

/// A delivery as received, kept (when dead letters are published with reasons) so that a
/// rejected message can be republished unchanged.
#[derive(Debug, Clone)]
pub struct Raw {
    pub body: Vec<u8>,
    pub properties: lapin::BasicProperties,
    /// The routing key it was published with.
    pub routing_key: String,
}
