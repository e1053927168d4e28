//! What the broker and the database can do with the recorder's work replaced by nothing: each
//! alone with the whole machine, and both at once as they run under the recorder.

use std::time::Instant;

use bulk_recorder::message::Transaction;
use futures::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};

use crate::{
    Messages, copy,
    run::Row,
    services::{self, drop_database, fresh_database, fresh_queue},
};

const PREFETCH: u16 = 1000;
/// Acknowledgements with `multiple` every this many deliveries, as bulks would.
const ACK_EVERY: usize = 250;

/// Consumes and acknowledges `count` messages of queue `name` (no decoding); returns the
/// seconds from the consumer's start to the last acknowledgement.
async fn consume(name: &'static str, count: usize) -> f64 {
    let connection = services::amqp().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            name.into(),
            "limit".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut received = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.unwrap();
        received += 1;
        if received % ACK_EVERY == 0 || received == count {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .unwrap();
        }
        if received == count {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = connection.close(200, "ok".into()).await;
    seconds
}

/// RabbitMQ alone: consume and acknowledge in bulks.
pub async fn broker(messages: &Messages) -> Row {
    let name = "bench_broker_limit";
    fresh_queue(name, messages).await;
    let seconds = consume(name, messages.len()).await;
    services::delete_queue(name).await;
    Row::limit(
        &format!("RabbitMQ consume+ack only, prefetch {PREFETCH}"),
        messages.len(),
        seconds,
    )
}

/// PostgreSQL alone: `COPY` of the recorder's binary rows (encoded beforehand) into the same
/// empty tables, keys and indexes included, over `connections` connections at once.
pub async fn database(transactions: &[Transaction], connections: usize) -> Row {
    let name = "bench_copy_limit";
    let url = fresh_database(name, None).await;
    let seconds = copy::timed_copy(&url, copy::encode(transactions), connections).await;
    drop_database(name).await;
    Row::limit(
        &format!(
            "PostgreSQL COPY only, {connections} connection{}, same rows and indexes",
            if connections > 1 { "s" } else { "" }
        ),
        transactions.len(),
        seconds,
    )
}

/// Both at once: one consumer acknowledging in bulks while the same rows, encoded beforehand,
/// are copied over two connections. What the machine gives when the broker and the database
/// share it as they do under the recorder, with the recorder's own work costing nothing.
pub async fn together(messages: &Messages, transactions: &[Transaction]) -> Row {
    let name = "bench_together_limit";
    let url = fresh_database(name, None).await;
    fresh_queue(name, messages).await;
    let slices = copy::encode(transactions);
    let started = Instant::now();
    let broker = tokio::spawn(consume(name, messages.len()));
    copy::timed_copy(&url, slices, 2).await;
    broker.await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    services::delete_queue(name).await;
    drop_database(name).await;
    Row::limit(
        "RabbitMQ consume+ack and PostgreSQL COPY (2 connections) at the same time",
        transactions.len(),
        seconds,
    )
}
