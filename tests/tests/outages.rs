//! Real outages against the real broker and database: a long one that must not spend the
//! messages' delivery limit, a connection that goes silent, and a COMMIT whose answer is lost.

use std::time::Duration;

use bulk_recorder::message::Format;
use bulk_recorder_e2e::{proxy::PgProxy, *};
use bulk_recorder_publish::sample_transaction;
use sqlx::Connection;

const DRAIN: Duration = Duration::from_secs(90);

/// Longer than the 30 s after which a bulk used to be requeued: every requeue spends one
/// delivery of each message, and past the queue's delivery limit the broker dead-letters them.
const LONG_OUTAGE: Duration = Duration::from_secs(35);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_database_outage_holds_the_bulk_and_spends_no_delivery() {
    let db = TestDb::create().await;
    // No return to the queue is tolerated: any requeue dead-letters the message.
    let queue = TestQueue::quorum_with_dead_letters(Some(0)).await;
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "2"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "25"),
    ];
    // Enough that the outage comes while the queue drains (300 could all be stored already).
    let (transactions, recorder) = recorder_mid_drain(&db, &queue, 3000, 2, &overrides, 50).await;

    db.allow_connections(false).await;
    db.terminate_backends().await;
    wait_until(DRAIN, "not ready while a bulk is held", || async {
        !recorder.health.ready() && recorder.health.holding()
    })
    .await;
    let during = recorder.committed_transactions();
    tokio::time::sleep(LONG_OUTAGE).await;
    let dead = queue.dead_letters.clone().expect("dlq");
    assert_eq!(TestQueue::ready(&dead).await, 0, "nothing dead-lettered");
    assert_eq!(recorder.committed_transactions(), during, "nothing commits");
    let (_, unacked) = broker_counts_async(&queue.name).await;
    // The channels' window: bulks of 2 x 25, two in flight and one filling.
    assert!(
        unacked <= 150,
        "no more deliveries than the prefetch window: {unacked} unacknowledged"
    );

    db.allow_connections(true).await;
    // The rows are visible before their bulk's counters move (after the commit is known to be
    // durable), and those move before the acknowledgement: once the broker holds nothing of
    // the queue, the counts are final (docs/reliability.md).
    wait_until(DRAIN, "all committed and acknowledged", || async {
        db.count("transaction").await == 3000 && broker_counts_async(&queue.name).await == (0, 0)
    })
    .await;
    wait_until(DRAIN, "ready again", || async { recorder.health.ready() }).await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    assert_stored_exactly_once(&db, &queue, &transactions).await;
    assert_eq!(totals.transactions.inserted, 3000);
    assert_eq!(TestQueue::ready(&dead).await, 0, "nothing dead-lettered");
}

async fn broker_counts_async(queue: &str) -> (u64, u64) {
    let queue = queue.to_string();
    tokio::task::spawn_blocking(move || broker_counts(&queue))
        .await
        .expect("rabbitmqctl")
}

/// A recorder that reaches PostgreSQL through `proxy`, with a 1 s statement timeout.
fn through(
    proxy: &PgProxy,
    db: &TestDb,
    queue: &TestQueue,
) -> std::collections::HashMap<String, String> {
    let mut vars = env(db, queue, &[("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "1000")]);
    vars.insert("DATABASE_URL".into(), proxy.url(&db.url));
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_connection_is_dropped_after_the_write_timeout() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let proxy = PgProxy::start("127.0.0.1:5432").await;
    let first: Vec<_> = (0..10).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&first, Format::Json).await;
    let config =
        bulk_recorder::config::Config::from_vars(&through(&proxy, &db, &queue)).expect("config");
    let recorder = RunningRecorder::start(config);
    wait_until(DRAIN, "the first 10 committed", || async {
        recorder.committed_transactions() == 10
    })
    .await;

    // Half-open: the server never sees the next bulk, and never answers. No server-side
    // timeout can fire; only the recorder's own bound ends the wait.
    proxy.freeze();
    let second: Vec<_> = (0..10).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&second, Format::Json).await;
    wait_until(
        DRAIN,
        "the stalled write given up and the bulk held",
        || async { recorder.health.holding() },
    )
    .await;
    proxy.thaw();
    wait_until(DRAIN, "all 20 committed", || async {
        recorder.committed_transactions() == 20
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    let all: Vec<_> = first.into_iter().chain(second).collect();
    assert_stored_exactly_once(&db, &queue, &all).await;
    assert_eq!(totals.transactions.inserted, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_within_the_flush_and_write_timeouts_when_the_database_is_silent() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let proxy = PgProxy::start("127.0.0.1:5432").await;
    let mut vars = through(&proxy, &db, &queue);
    vars.insert("BULK_RECORDER_FLUSH_TIMEOUT_MS".into(), "500".into());
    vars.insert("BULK_RECORDER_SHUTDOWN_TIMEOUT_MS".into(), "5000".into());
    vars.insert("METRICS_ADDR".into(), format!("127.0.0.1:{}", free_port()));
    let mut child = spawn_recorder(vars);
    let first: Vec<_> = (0..5).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&first, Format::Json).await;
    wait_until(DRAIN, "the first 5 stored", || async {
        db.count("transaction").await == 5
    })
    .await;

    proxy.freeze();
    let second: Vec<_> = (0..5).map(|_| sample_transaction(2)).collect();
    queue.publish_transactions(&second, Format::Json).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The held write goes on after SIGTERM, as long as the shutdown's budget (5 s) allows, then
    // its messages go back to the queue; room is left for a loaded machine. Without a bound of
    // its own the recorder would wait forever.
    terminate_within(
        &mut child,
        Duration::from_secs(9),
        "the recorder exits within its shutdown budget although the database is silent",
    )
    .await;
    proxy.thaw();
    assert_eq!(
        db.count("transaction").await,
        5,
        "the silent bulk was not written"
    );
    assert_eq!(
        TestQueue::ready(&queue.name).await,
        5,
        "its messages are back in the queue"
    );
}

/// The broker goes silent (a half-open connection) just before SIGTERM: it answers neither
/// the consumers' cancel nor the connection's close. The recorder still exits, within those
/// two bounds, and what it stored and acknowledged stays so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_within_a_bound_when_the_broker_is_silent() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let (proxy, through) = PgProxy::in_front_of_rabbitmq().await;
    let mut vars = env(&db, &queue, &[("BULK_RECORDER_FLUSH_TIMEOUT_MS", "200")]);
    vars.insert("RABBITMQ_URL".into(), through);
    let mut child = spawn_recorder(vars);
    let transactions: Vec<_> = (0..5).map(|_| sample_transaction(2)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    wait_until(DRAIN, "the 5 stored and acknowledged", || async {
        db.count("transaction").await == 5 && broker_counts_async(&queue.name).await == (0, 0)
    })
    .await;

    proxy.freeze();
    // Cancel (5 s) + close (5 s) with room for a loaded machine; without bounds of its own the
    // recorder would wait for the broker's heartbeat to fail, or forever.
    terminate_within(
        &mut child,
        Duration::from_secs(20),
        "the recorder exits although the broker is silent",
    )
    .await;
    proxy.thaw();
    assert_eq!(db.count("transaction").await, 5);
    assert_eq!(
        TestQueue::ready(&queue.name).await,
        0,
        "nothing redelivered"
    );
}

/// A bulk of 2,000 transactions x 5 operations goes in by `COPY`, and the connection goes silent
/// while its operation rows are sent (15 MB: more than the sockets' buffers take, so the sender
/// blocks): the write is given up within its bound (two statements' timeout plus 5 s),
/// readiness reports the held bulk, and SIGTERM ends the process within its shutdown budget,
/// with the bulk back in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_silent_during_copy_is_given_up_within_the_write_bound() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let proxy = PgProxy::start("127.0.0.1:5432").await;
    let transactions: Vec<_> = (0..2000)
        .map(|_| {
            let mut t = sample_transaction(5);
            for op in &mut t.operations {
                op.description = uuid::Uuid::new_v4().simple().to_string().repeat(32).into();
            }
            t
        })
        .collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    proxy.freeze_in_copy();
    let port = free_port();
    let mut vars = through(&proxy, &db, &queue);
    for (name, value) in [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "2000"),
        ("BULK_RECORDER_MAX_ROWS_PER_INSERT", "2000"),
    ] {
        vars.insert(name.into(), value.into());
    }
    vars.insert("METRICS_ADDR".into(), format!("127.0.0.1:{port}"));
    vars.insert("BULK_RECORDER_SHUTDOWN_TIMEOUT_MS".into(), "5000".into());
    let mut child = spawn_recorder(vars);
    wait_until(
        DRAIN,
        "the COPY under way when the connection goes silent",
        || async { proxy.frozen() },
    )
    .await;
    // Silent for longer than one write's bound (2 x 1 s + 5 s): the held bulk is given up and
    // retried meanwhile, and none of it may hang (without a bound of its own, a write blocked
    // in a COPY waits as long as TCP retries last: minutes). Room is left for a loaded machine.
    tokio::time::sleep(Duration::from_secs(12)).await;
    wait_until(Duration::from_secs(20), "readiness to report the held bulk", || async {
        matches!(http_get(port, "/readyz").await, Some((503, body)) if body.contains("holding_bulk=true"))
    })
    .await;
    terminate_within(
        &mut child,
        Duration::from_secs(9),
        "SIGTERM ends the recorder within its shutdown budget although the connection is silent",
    )
    .await;
    proxy.thaw();
    assert_eq!(
        db.count("transaction").await,
        0,
        "the silent COPY never committed"
    );
    assert_eq!(
        TestQueue::ready(&queue.name).await,
        2000,
        "the bulk is back in the queue"
    );

    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    wait_until(DRAIN, "all stored", || async {
        recorder.committed_transactions() == 2000
    })
    .await;
    recorder.stop().await;
    assert_stored_exactly_once(&db, &queue, &transactions).await;
}

/// The answer to COMMIT is dropped, and then the database stays out of reach for longer than
/// a failover takes (15 s): the recorder keeps asking what became of the write, however long,
/// and counts it as inserted once it knows, on the upsert path (bulks of 20), the `COPY` path
/// (40) and one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_counted_exactly_once() {
    for (count, bulk) in [(20, true), (40, true), (6, false)] {
        let (db, queue) = (TestDb::create().await, TestQueue::new());
        let proxy = PgProxy::start("127.0.0.1:5432").await;
        proxy.cut_next_commit_and_freeze();
        let transactions: Vec<_> = (0..count).map(|_| sample_transaction(3)).collect();
        queue
            .publish_transactions(&transactions, Format::Json)
            .await;
        let mut vars = through(&proxy, &db, &queue);
        vars.insert("BULK_RECORDER_SIZE".into(), count.to_string());
        vars.insert("BULK_RECORDER_FLUSH_TIMEOUT_MS".into(), "5000".into());
        vars.insert("BULK_RECORDER_ENABLED".into(), bulk.to_string());
        let config = bulk_recorder::config::Config::from_vars(&vars).expect("config");
        let recorder = RunningRecorder::start(config);
        wait_until(DRAIN, "the answer to a COMMIT dropped", || async {
            proxy.cuts() == 1
        })
        .await;
        tokio::time::sleep(Duration::from_secs(15)).await;
        proxy.thaw();
        wait_until(DRAIN, "all committed", || async {
            recorder.committed_transactions() == count as u64
        })
        .await;
        let totals = recorder.metrics.totals();
        recorder.stop().await;
        assert_stored_exactly_once(&db, &queue, &transactions).await;
        assert_eq!(
            (totals.transactions.inserted, totals.transactions.ignored),
            (count as u64, 0),
            "the committed write counts as inserted, not as duplicates found by a retry \
             ({count}, bulk {bulk})"
        );
        assert_eq!(totals.operations.inserted, 3 * count as u64);
    }
}

/// The answer to COMMIT is lost and the server restarts before the recorder can ask: a
/// transaction id may then be handed out again, so the answer comes from the rows the write
/// wrote (their `xmin`), not from `txid_status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_lost_across_a_server_restart_is_resolved_by_its_rows() {
    let Some(server) = bulk_recorder_e2e::pg_cluster::PgCluster::init("restart") else {
        return;
    };
    server.start(&[]);
    let admin = server.url("postgres", "sslmode=disable");
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("server");
    sqlx::query("CREATE DATABASE ledger")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let proxy = PgProxy::start(&format!("127.0.0.1:{}", server.port)).await;
    proxy.cut_next_commit_and_freeze();
    let queue = TestQueue::new();
    let transactions: Vec<_> = (0..20).map(|_| sample_transaction(3)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let mut vars = env_without_db(&queue);
    vars.insert(
        "DATABASE_URL".into(),
        format!(
            "postgres://postgres@127.0.0.1:{}/ledger?sslmode=disable",
            proxy.port
        ),
    );
    vars.insert("BULK_RECORDER_SIZE".into(), "20".into());
    vars.insert("BULK_RECORDER_FLUSH_TIMEOUT_MS".into(), "5000".into());
    let recorder = RunningRecorder::start(bulk_recorder::config::Config::from_vars(&vars).unwrap());
    wait_until(DRAIN, "the answer to a COMMIT dropped", || async {
        proxy.cuts() == 1
    })
    .await;
    server.stop("immediate");
    server.start(&[]);
    proxy.thaw();
    wait_until(DRAIN, "all committed", || async {
        recorder.committed_transactions() == 20
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    assert_eq!(
        (totals.transactions.inserted, totals.transactions.ignored),
        (20, 0)
    );
    let url = server.url("ledger", "sslmode=disable");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("server");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transaction")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 20);
}

/// The environment of a recorder for `queue`, its database to be set by the caller.
fn env_without_db(queue: &TestQueue) -> std::collections::HashMap<String, String> {
    [
        ("RABBITMQ_URL", rabbitmq_url()),
        (
            "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            queue.name.clone(),
        ),
        ("METRICS_ADDR", "127.0.0.1:0".into()),
        ("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "1000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
