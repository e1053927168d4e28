//! The RabbitMQ side: one connection, `workers` channels, and settling deliveries per channel.

pub mod consumer;
pub mod settle;

use std::io;

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
