//! One broker connection's pipeline: channels -> collector -> bulks in flight -> settlement.
//!
//! Bulks are written concurrently but settled strictly in the order they were collected
//! (`buffered`), which is what makes one `multiple=true` ack per channel safe. The session
//! ends cleanly only at shutdown; a lost connection ends it with an error, and whatever was
//! not acknowledged is redelivered by the broker to the next session.

use std::{future::pending, sync::Arc};

use futures::StreamExt;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    broker,
    broker::consumer::consume,
    broker::settle::settle,
    config::Config,
    pipeline::collector::{Bulk, collect},
    pipeline::flush::Flusher,
    telemetry::health::Health,
    telemetry::metrics::Metrics,
};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker stopped delivering (connection or consumer closed)")]
    Ended,
    #[error("no answer from the broker within {0:?} while connecting")]
    ConnectTimedOut(std::time::Duration),
}

/// The longest a connection attempt may take: lapin's own connect waits on the network as
/// long as the kernel does, and a broker that drops packets would stall the recorder there.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Consumes until shutdown (Ok) or until the broker connection fails (Err).
pub async fn run(
    config: &Config,
    flusher: Arc<Flusher>,
    bulks_in_flight: usize,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let connecting = async {
        let connection = broker::connect(&config.rabbitmq_url, &config.queue).await?;
        broker::ensure_queue(&connection, &config.queue).await?;
        Ok::<_, lapin::Error>(connection)
    };
    let mut stop = shutdown.clone();
    let connection = tokio::select! {
        connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting) => {
            connected.map_err(|_| SessionError::ConnectTimedOut(CONNECT_TIMEOUT))??
        }
        // Nothing is held yet: a shutdown during the attempt simply ends the session.
        _ = stop.wait_for(|s| *s) => return Ok(()),
    };
    let mut channels = Vec::with_capacity(usize::from(config.workers));
    let mut consumers = Vec::with_capacity(usize::from(config.workers));
    for index in 0..usize::from(config.workers) {
        let (channel, consumer, tag) = broker::open_consumer(
            &connection,
            &config.queue,
            config.prefetch,
            &config.instance,
            index,
        )
        .await?;
        channels.push(channel);
        consumers.push((consumer, tag));
    }
    health.set_broker(true);
    tracing::info!(
        queue = config.queue,
        workers = config.workers,
        prefetch = config.prefetch,
        bulk_size = config.bulk_size,
        "consuming"
    );

    let (deliveries, incoming) = mpsc::channel(config.bulk_size.max(1));
    let mut consumer_tasks = JoinSet::new();
    let mut consumer_tags = Vec::new();
    for (index, (consumer, tag)) in consumers.into_iter().enumerate() {
        consumer_tags.push((channels[index].clone(), tag));
        consumer_tasks.spawn(consume(
            index,
            consumer,
            channels[index].clone(),
            deliveries.clone(),
            config.message_format,
            config.max_message_bytes,
            metrics.clone(),
        ));
    }
    drop(deliveries);

    let (bulk_out, bulk_in) = mpsc::channel::<Bulk>(1);
    let collector = tokio::spawn(collect(
        incoming,
        bulk_out,
        config.bulk_size,
        config.flush_timeout,
    ));

    let settle_in_order =
        async {
            let bulks = futures::stream::unfold(bulk_in, |mut rx| async move {
                rx.recv().await.map(|b| (b, rx))
            });
            let mut outcomes = std::pin::pin!(
                bulks
                    .map(|bulk| {
                        let flusher = flusher.clone();
                        async move { flusher.flush(bulk).await }
                    })
                    .buffered(bulks_in_flight)
            );
            let mut failure = None;
            while let Some(outcome) = outcomes.next().await {
                // Once the broker is gone nothing can be settled, but the bulks already in the
                // database still finish, so that the counters match what was committed; their
                // messages come back as redeliveries and are counted as ignored.
                if failure.is_none()
                    && let Err(error) = settle(&channels, outcome).await
                {
                    // End the other channels' deliveries too: this session is over.
                    let _ = connection.close(200, "settlement failed".into()).await;
                    failure = Some(error);
                }
            }
            failure.map_or(Ok(()), Err)
        };

    // At shutdown, stop deliveries; the consumers' streams then end, the collector flushes
    // what it holds, and `settle_in_order` finishes once that last bulk is acknowledged.
    let mut stop_signal = shutdown.clone();
    let cancel_at_shutdown = async move {
        let _ = stop_signal.wait_for(|stop| *stop).await;
        for (channel, tag) in &consumer_tags {
            if let Err(error) = channel
                .basic_cancel(tag.as_str().into(), Default::default())
                .await
            {
                tracing::warn!(%error, "could not cancel consumer");
            }
        }
        pending::<()>().await
    };

    // The consumers end at shutdown (cancelled) or when their channel fails; either way the
    // collector then flushes what it holds and `settle_in_order` drains.
    let consumers_ended = async {
        let mut first_error = None;
        while let Some(joined) = consumer_tasks.join_next().await {
            match joined {
                Ok(Err(error)) if first_error.is_none() => {
                    // One failed channel ends the session: close the others so it drains.
                    let _ = connection.close(200, "a channel failed".into()).await;
                    first_error = Some(error);
                }
                Ok(_) => {}
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            }
        }
        first_error
    };

    let (settled, consumer_error) = tokio::select! {
        done = async { tokio::join!(settle_in_order, consumers_ended) } => done,
        _ = cancel_at_shutdown => unreachable!("waits forever"),
    };
    let result = match (consumer_error, settled) {
        (Some(error), _) if !*shutdown.borrow() => Err(SessionError::Broker(error)),
        (_, Err(error)) => Err(SessionError::Broker(error)),
        (_, Ok(())) => Ok(()),
    };
    collector.abort();
    health.set_broker(false);
    let stopping = *shutdown.borrow_and_update();
    match result {
        Ok(()) if stopping => {
            let _ = connection.close(200, "shutdown".into()).await;
            Ok(())
        }
        Ok(()) => Err(SessionError::Ended),
        Err(error) => Err(error),
    }
}
