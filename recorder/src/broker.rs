//! The RabbitMQ side: one connection, `workers` channels, and settling deliveries per channel.

use std::{collections::BTreeMap, io};

use lapin::{
    Channel, Connection, ConnectionProperties, Consumer,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
        BasicRejectOptions, QueueDeclareOptions,
    },
    types::FieldTable,
};

/// Connects with a name that shows, in the management UI and `rabbitmqctl list_connections`,
/// which queue this recorder serves. An `amqps://` URL trusts the system's CA certificates and
/// the one named by its `cacertfile` parameter.
pub async fn connect(url: &str, queue: &str) -> Result<Connection, lapin::Error> {
    let (uri, tls) = crate::connection_url::amqp_target(url).map_err(|p| {
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

/// Makes sure `queue` exists without touching one that does.
///
/// An operator may have declared it with a dead-letter exchange, a quorum type or a length
/// limit; declaring it again with other arguments would fail (PRECONDITION_FAILED) and close
/// the channel. So: a passive declare first, and a plain durable declare only when that says
/// the queue does not exist.
pub async fn ensure_queue(connection: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let probe = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match probe
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = probe.close(200, "ok".into()).await;
            Ok(())
        }
        Err(_) => {
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
            Ok(())
        }
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub channel: usize,
    pub delivery: u64,
}

/// The highest delivery tag per channel among `tags`.
pub fn highest_per_channel(tags: impl IntoIterator<Item = Tag>) -> BTreeMap<usize, u64> {
    let mut highest = BTreeMap::new();
    for tag in tags {
        let entry = highest.entry(tag.channel).or_insert(tag.delivery);
        *entry = (*entry).max(tag.delivery);
    }
    highest
}

/// Acknowledges with `multiple=true`, one frame per channel up to its highest tag in `tags`.
///
/// Correct only because bulks are settled in the order they were collected: every lower tag on
/// that channel is then part of this bulk, of an earlier settled bulk, or already rejected.
pub async fn ack_up_to(
    channels: &[Channel],
    tags: impl IntoIterator<Item = Tag>,
) -> Result<(), lapin::Error> {
    for (channel, tag) in highest_per_channel(tags) {
        channels[channel]
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(())
}

/// Returns messages to the queue for another try, one frame per channel.
pub async fn requeue_up_to(
    channels: &[Channel],
    tags: impl IntoIterator<Item = Tag>,
) -> Result<(), lapin::Error> {
    for (channel, tag) in highest_per_channel(tags) {
        channels[channel]
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await?;
    }
    Ok(())
}

/// Acknowledges one message alone.
pub async fn ack_one(channel: &Channel, delivery: u64) -> Result<(), lapin::Error> {
    channel
        .basic_ack(delivery, BasicAckOptions { multiple: false })
        .await
}

/// Returns one message alone to the queue.
pub async fn requeue_one(channel: &Channel, delivery: u64) -> Result<(), lapin::Error> {
    channel
        .basic_nack(
            delivery,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
}

/// Rejects one message for good: the queue's dead-letter exchange gets it when it has one.
pub async fn reject(channel: &Channel, delivery: u64) -> Result<(), lapin::Error> {
    channel
        .basic_reject(delivery, BasicRejectOptions { requeue: false })
        .await
}
