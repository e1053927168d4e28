//! One broker connection's pipeline: channels -> collector -> bulks in flight -> settlement.
//!
//! Bulks are written concurrently but settled strictly in the order they were collected
//! (`buffered`), which is what makes one `multiple=true` ack per channel safe. The session
//! ends cleanly only at shutdown; a lost connection, a failed channel or a consumer the broker
//! cancelled ends it with an error, and whatever was not acknowledged is redelivered by the
//! broker to the next session.

use std::{future::pending, sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{Channel, Connection, Consumer};
use tokio::{
    sync::mpsc,
    task::{JoinHandle, JoinSet},
};

use crate::{
    broker::{
        self, QueueError, QueueOrigin,
        consumer::{ConsumeError, Decoding, consume},
        depth,
        outbox::Outbox,
        settle::{Rejected, SettleError, Settler},
    },
    config::Config,
    pipeline::{
        collector::{Bulk, Pending, collect},
        flush::Flusher,
        parents::wait_for_parents,
        policy::Policy,
    },
    shutdown::Shutdown,
    telemetry::{health::Health, metrics::Metrics},
};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    #[error("settling: {0}")]
    Settle(#[from] SettleError),
    #[error("the broker stopped delivering (connection or consumer closed)")]
    Ended,
    #[error("no answer from the broker within {0:?} while connecting")]
    ConnectTimedOut(Duration),
    #[error(
        "no answer from the broker within {0:?} to cancelling a consumer at shutdown: leaving \
         the connection (what it holds unacknowledged returns to the queue)"
    )]
    SilentAtShutdown(Duration),
}

/// The longest a connection attempt may take: lapin's own connect waits on the network as
/// long as the kernel does, and a broker that drops packets would stall the recorder there.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every session of a recorder shares.
pub struct Shared {
    pub config: Config,
    pub flusher: Arc<Flusher>,
    pub bulks_in_flight: usize,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Whether the queue was found or declared by this process (see [`broker::Origin`]).
    pub origin: QueueOrigin,
}

/// A connection's channels, kept until the connection is closed: dropping the last handle of a
/// channel makes lapin send its own channel.close, and one racing the connection's close can
/// leave the latter unanswered (lapin reports "invalid channel state: Closing").
struct Opened {
    settler: Arc<Settler>,
    /// Taken by [`drain`] when deliveries start.
    consumers: Vec<(Consumer, String)>,
    channels: Vec<Channel>,
    /// The queue depth's own channel.
    depth: Channel,
    /// The rejected messages for the dead-letter outbox, when configured; taken by [`drain`]
    /// when the outbox starts.
    dead_letters: Option<mpsc::UnboundedReceiver<Rejected>>,
}

/// The consuming tasks, one per channel.
type Consumers = JoinSet<Result<(), ConsumeError>>;

/// A task the session depends on: while it runs, the session may go on.
type Helper = Option<JoinHandle<Result<(), SettleError>>>;

/// Consumes until shutdown (Ok) or until the broker connection fails (Err).
pub async fn run(shared: &Shared, shutdown: Shutdown) -> Result<(), SessionError> {
    let Some(connection) = connect(shared, &shutdown).await? else {
        return Ok(());
    };
    let mut opened = open(shared, &connection).await?;
    shared.health.set_broker(true);
    tracing::info!(
        queue = shared.config.queue,
        workers = shared.config.workers,
        prefetch = channel_prefetch(&shared.config, shared.bulks_in_flight),
        bulk_size = shared.config.bulk_size,
        "consuming"
    );
    let depth = tokio::spawn(depth::poll(
        opened.depth.clone(),
        shared.config.queue.clone(),
        shared.metrics.clone(),
    ));
    let drained = drain(shared, &connection, &mut opened, shutdown.clone()).await;
    depth.abort();
    shared.health.set_broker(false);
    let ended = match drained {
        Ok(()) if shutdown.requested() => {
            broker::close(&connection, "shutdown").await;
            Ok(())
        }
        Ok(()) => Err(SessionError::Ended),
        Err(error) => Err(error),
    };
    drop(opened); // only now that the connection is closed (see `Opened`)
    ended
}

/// The `basic.qos` of each channel: enough, all channels together, for every bulk that may be
/// unacknowledged at once (the one being collected and those in flight), and never less than
/// `prefetch`. `size` stays at most `workers x prefetch` (the ledger's contract), and the next
/// bulk fills while the others are written: with the defaults (5 x 10, bulks of 50, two in
/// flight) each consumer shows prefetch 30 in RabbitMQ's management UI, and up to 150 messages
/// are unacknowledged. Without it a bulk of 50 holds every message the broker hands out, and
/// nothing is delivered while it is written. A window that already holds them (4 x 1000 for
/// bulks of 1000, three in flight) is left as it is: wider would only hold more memory.
pub fn channel_prefetch(config: &Config, bulks_in_flight: usize) -> u16 {
    if !config.bulk_enabled {
        return config.prefetch;
    }
    let bulks = config.bulk_size * (bulks_in_flight + 1);
    let per_channel = bulks.div_ceil(usize::from(config.workers));
    per_channel
        .max(usize::from(config.prefetch))
        .min(usize::from(u16::MAX)) as u16
}

/// Connects and makes sure the queue exists, within [`CONNECT_TIMEOUT`]; `None` when shutdown
/// came first (nothing is held yet).
async fn connect(shared: &Shared, shutdown: &Shutdown) -> Result<Option<Connection>, SessionError> {
    let config = &shared.config;
    let connecting = async {
        let connection = broker::connect(&config.rabbitmq_url, &config.queue).await?;
        broker::ensure_queue(&connection, &config.queue, &shared.origin).await?;
        Ok::<_, SessionError>(connection)
    };
    tokio::select! {
        connected = tokio::time::timeout(CONNECT_TIMEOUT, connecting) => {
            connected.map_err(|_| SessionError::ConnectTimedOut(CONNECT_TIMEOUT))?.map(Some)
        }
        _ = shutdown.wait_requested() => Ok(None),
    }
}

/// Opens the consuming channels and the queue depth's channel (the dead letters' connection is
/// the outbox's own, made when it is needed).
async fn open(shared: &Shared, connection: &Connection) -> Result<Opened, SessionError> {
    let config = &shared.config;
    let mut channels = Vec::with_capacity(usize::from(config.workers));
    let mut consumers = Vec::with_capacity(usize::from(config.workers));
    for index in 0..usize::from(config.workers) {
        let (channel, consumer, tag) = broker::open_consumer(
            connection,
            &config.queue,
            channel_prefetch(config, shared.bulks_in_flight),
            &config.instance,
            index,
        )
        .await?;
        channels.push(channel);
        consumers.push((consumer, tag));
    }
    let (outbox, dead_letters) = match &config.dead_letter {
        Some(_) => {
            let (letters, rejected) = mpsc::unbounded_channel();
            (Some(letters), Some(rejected))
        }
        None => (None, None),
    };
    let settler = Arc::new(Settler::new(
        channels.clone(),
        outbox,
        shared.metrics.clone(),
    ));
    Ok(Opened {
        settler,
        consumers,
        channels,
        depth: connection.create_channel().await?,
        dead_letters,
    })
}

/// Runs deliveries through the collector, the writes and the settlement until the consumers
/// end (cancelled at shutdown, or failed) and every bulk is settled. The waiting room and the
/// dead-letter outbox run beside them: either stopping with an error ends the session.
async fn drain(
    shared: &Shared,
    connection: &Connection,
    opened: &mut Opened,
    shutdown: Shutdown,
) -> Result<(), SessionError> {
    let config = &shared.config;
    let (deliveries, incoming) = mpsc::channel(config.bulk_size.max(1));
    let (mut consumer_tasks, tags) = start_consumers(shared, opened, deliveries, &shutdown);
    let (bulk_out, bulk_in) = mpsc::channel::<Bulk>(1);
    let collector = tokio::spawn(collect(
        incoming,
        bulk_out,
        config.bulk_size,
        config.flush_timeout,
    ));
    let (park, parked) = mpsc::unbounded_channel();
    let mut waiting_room: Helper = Some(tokio::spawn(wait_for_parents(
        shared.flusher.clone(),
        opened.settler.clone(),
        parked,
        shutdown.clone(),
    )));
    let mut outbox: Helper = opened.dead_letters.take().map(|letters| {
        let outbox = Outbox {
            url: config.rabbitmq_url.clone(),
            queue: config.queue.clone(),
            target: config.dead_letter.clone().expect("a dead-letter target"),
            pod: config.instance.clone(),
            settler: opened.settler.clone(),
            policy: Policy {
                health: shared.health.clone(),
                shutdown: shutdown.clone(),
            },
            metrics: shared.metrics.clone(),
        };
        tokio::spawn(outbox.run(letters))
    });
    let settled = settle_in_order(shared, &opened.settler, bulk_in, park, connection);
    let ended = consumers_ended(&mut consumer_tasks, connection, &shared.health, &shutdown);
    let outcome = tokio::select! {
        done = async { tokio::join!(settled, ended) } => Ok(done),
        silent = cancel_at_shutdown(tags, shutdown.clone()) => Err(silent),
        stopped = helper_failed(&mut waiting_room, &mut outbox) => {
            tracing::warn!(error = %stopped, "a task of the session stopped: ending the session");
            shared.health.set_broker(false);
            broker::close(connection, "a task of the session stopped").await;
            Err(SessionError::Settle(stopped))
        }
    };
    collector.abort();
    let (settled, consumer_error) = match outcome {
        Ok(done) => done,
        Err(error) => {
            abort(waiting_room);
            abort(outbox);
            return Err(error);
        }
    };
    tracing::debug!("consumers ended and every bulk settled");
    if shutdown.requested() {
        // They finish what they hold (within the shutdown's budget) and return the rest to the
        // queue; the connection must still be open for that.
        finish(&mut waiting_room).await?;
        opened.settler.close_outbox();
        finish(&mut outbox).await?;
    } else {
        abort(waiting_room);
        abort(outbox);
    }
    match (consumer_error, settled) {
        (Some(error), _) => Err(error.into()),
        (None, Err(error)) => Err(error.into()),
        (None, Ok(())) => Ok(()),
    }
}

/// Starts a consuming task per channel; the channels and consumer tags, for the cancel at
/// shutdown.
fn start_consumers(
    shared: &Shared,
    opened: &mut Opened,
    deliveries: mpsc::Sender<Pending>,
    shutdown: &Shutdown,
) -> (Consumers, Vec<(Channel, String)>) {
    let config = &shared.config;
    let decoding = Decoding {
        format: config.message_format,
        max_message_bytes: config.max_message_bytes,
        metrics: shared.metrics.clone(),
        keep_trace: config.tracing.is_some() || config.events.is_some(),
        traces: shared.flusher.traces.clone(),
        queue: config.queue.clone(),
    };
    let mut tasks = JoinSet::new();
    let mut tags = Vec::new();
    for (index, (consumer, tag)) in std::mem::take(&mut opened.consumers)
        .into_iter()
        .enumerate()
    {
        tags.push((opened.channels[index].clone(), tag));
        tasks.spawn(consume(
            index,
            consumer,
            opened.settler.clone(),
            deliveries.clone(),
            decoding.clone(),
            shutdown.clone(),
        ));
    }
    (tasks, tags)
}

/// The outcome of a helper task, once it ends (`Ok` when there is none, or it ended before).
async fn finish(helper: &mut Helper) -> Result<(), SettleError> {
    let Some(handle) = helper.as_mut() else {
        return Ok(());
    };
    let joined = handle.await;
    *helper = None;
    match joined {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Ok(()),
    }
}

/// Resolves only when the waiting room or the outbox stops with an error.
async fn helper_failed(waiting_room: &mut Helper, outbox: &mut Helper) -> SettleError {
    loop {
        let ended = tokio::select! {
            ended = finish(waiting_room), if waiting_room.is_some() => ended,
            ended = finish(outbox), if outbox.is_some() => ended,
            else => pending().await,
        };
        if let Err(error) = ended {
            return error;
        }
    }
}

fn abort(helper: Helper) {
    if let Some(handle) = helper {
        handle.abort();
    }
}

/// Writes bulks (up to `bulks_in_flight` at once) and settles them in the order they were
/// collected; messages waiting for a parent go to the waiting room.
async fn settle_in_order(
    shared: &Shared,
    settler: &Settler,
    bulk_in: mpsc::Receiver<Bulk>,
    park: mpsc::UnboundedSender<Pending>,
    connection: &Connection,
) -> Result<(), SettleError> {
    let bulks =
        futures::stream::unfold(
            bulk_in,
            |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
        );
    let mut outcomes = std::pin::pin!(
        bulks
            .map(|bulk| {
                let flusher = shared.flusher.clone();
                async move { flusher.flush(bulk).await }
            })
            .buffered(shared.bulks_in_flight)
    );
    let mut failure = None;
    while let Some(flushed) = outcomes.next().await {
        // Once the broker is gone nothing can be settled, but the bulks already in the
        // database still finish, so that the counters match what was committed; their
        // messages come back as redeliveries and are counted as ignored.
        if failure.is_some() {
            continue;
        }
        for message in &flushed.parked {
            settler.park(message.tag);
        }
        let settled = match settler.settle(flushed.settlement).await {
            Ok(()) => flushed
                .parked
                .into_iter()
                .try_for_each(|m| park.send(m).map_err(drop))
                .map_err(|_| SettleError::WaitingRoomStopped),
            Err(error) => Err(error),
        };
        match settled {
            Ok(()) => {}
            Err(error) => {
                // End the other channels' deliveries too: this session is over.
                broker::close(connection, "settlement failed").await;
                failure = Some(error);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Waits for every consumer to end (cancelled at shutdown, or failed); the first failure ends
/// the session at once (readiness off, the connection closed so that the rest drains).
async fn consumers_ended(
    tasks: &mut Consumers,
    connection: &Connection,
    health: &Health,
    shutdown: &Shutdown,
) -> Option<ConsumeError> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Err(error)) if first_error.is_none() && !shutdown.requested() => {
                tracing::warn!(%error, "a consumer ended: ending the session");
                health.set_broker(false);
                broker::close(connection, "a consumer ended").await;
                first_error = Some(error);
            }
            Ok(_) => {}
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }
    first_error
}

/// At shutdown, stops deliveries: the consumers' streams then end, the collector flushes what
/// it holds, and the settlement finishes once that last bulk is acknowledged. Returns only when
/// the broker leaves a cancel unanswered (silent): the session is then given up.
async fn cancel_at_shutdown(consumers: Vec<(Channel, String)>, shutdown: Shutdown) -> SessionError {
    shutdown.wait_requested().await;
    for (channel, tag) in &consumers {
        let cancel = channel.basic_cancel(tag.as_str().into(), Default::default());
        match tokio::time::timeout(broker::CLOSE_TIMEOUT, cancel).await {
            Ok(Ok(())) => tracing::debug!(consumer = tag, "consumer cancelled"),
            Ok(Err(error)) => tracing::warn!(%error, "could not cancel consumer"),
            Err(_) => return SessionError::SilentAtShutdown(broker::CLOSE_TIMEOUT),
        }
    }
    pending().await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::channel_prefetch;
    use crate::config::Config;

    fn config(vars: &[(&str, &str)]) -> Config {
        let mut all: HashMap<String, String> = [
            ("RABBITMQ_URL", "amqp://localhost"),
            ("RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE", "q"),
            ("DATABASE_URL", "postgres://localhost/db"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_vars(&all).unwrap()
    }

    /// What one recorder may hold unacknowledged, all channels together.
    fn window(vars: &[(&str, &str)]) -> usize {
        let c = config(vars);
        usize::from(channel_prefetch(&c, c.bulks_in_flight)) * usize::from(c.workers)
    }

    #[test]
    fn at_the_defaults_the_next_bulk_fills_while_two_are_written() {
        // Bulks of 5 x 10 = 50: two in flight and one being collected.
        assert_eq!(window(&[]), 150);
        assert_eq!(channel_prefetch(&config(&[]), 2), 30);
    }

    #[test]
    fn a_window_that_already_holds_every_bulk_is_not_widened() {
        // 4 x 1000 unacknowledged already hold bulks of 1000: three in flight and one filling.
        let best = [
            ("RABBITMQ_NUMBERS_OF_WORKERS", "4"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "1000"),
            ("BULK_RECORDER_SIZE", "1000"),
            ("BULK_RECORDER_BULKS_IN_FLIGHT", "3"),
        ];
        assert_eq!(window(&best), 4000);
        // Bulks of 400 out of 4 x 250: two in flight and one filling need 1200.
        let smaller = [
            ("RABBITMQ_NUMBERS_OF_WORKERS", "4"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "250"),
            ("BULK_RECORDER_SIZE", "400"),
        ];
        assert_eq!(window(&smaller), 1200);
    }

    #[test]
    fn one_message_at_a_time_keeps_the_configured_prefetch() {
        assert_eq!(window(&[("BULK_RECORDER_ENABLED", "false")]), 50);
    }
}
