//! Real outages against the real broker and database: a long one that must not spend the
//! messages' delivery limit, a connection that goes silent, and a COMMIT whose answer is lost.

use std::time::Duration;

use bulk_recorder::message::Format;
use bulk_recorder_e2e::{proxy::PgProxy, *};
use bulk_recorder_publish::sample_transaction;

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
    let (transactions, recorder) = recorder_mid_drain(&db, &queue, 300, 2, &overrides, 50).await;

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
    assert!(
        unacked <= 50,
        "no more deliveries than the prefetch window: {unacked} unacknowledged"
    );

    db.allow_connections(true).await;
    wait_until(DRAIN, "all committed", || async {
        db.count("transaction").await == 300
    })
    .await;
    wait_until(DRAIN, "ready again", || async { recorder.health.ready() }).await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    assert_stored_exactly_once(&db, &queue, &transactions).await;
    assert_eq!(totals.transactions.inserted, 300);
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
    signal(&child, "-TERM");
    // Flush timeout (0.5 s) + one write's bound (statement timeout 1 s + 5 s), with room for
    // a loaded machine; without a bound of its own the recorder would wait forever.
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the recorder exits although the database is silent")
        .expect("wait");
    assert!(status.success(), "{status}");
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

/// Bulks of 20 are written by the upsert statement, bulks of 40 by COPY: both end with a
/// COMMIT whose answer the proxy drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_counted_exactly_once() {
    for count in [20, 40] {
        let (db, queue) = (TestDb::create().await, TestQueue::new());
        let proxy = PgProxy::start("127.0.0.1:5432").await;
        proxy.cut_next_commit();
        let transactions: Vec<_> = (0..count).map(|_| sample_transaction(3)).collect();
        queue
            .publish_transactions(&transactions, Format::Json)
            .await;
        let mut vars = through(&proxy, &db, &queue);
        vars.insert("BULK_RECORDER_SIZE".into(), count.to_string());
        vars.insert("BULK_RECORDER_FLUSH_TIMEOUT_MS".into(), "5000".into());
        let config = bulk_recorder::config::Config::from_vars(&vars).expect("config");
        let recorder = RunningRecorder::start(config);
        wait_until(DRAIN, "all committed", || async {
            recorder.committed_transactions() == count as u64
        })
        .await;
        let totals = recorder.metrics.totals();
        recorder.stop().await;
        assert_eq!(
            proxy.cuts(),
            1,
            "the connection was cut after COMMIT ({count})"
        );
        assert_stored_exactly_once(&db, &queue, &transactions).await;
        assert_eq!(
            (totals.transactions.inserted, totals.transactions.ignored),
            (count as u64, 0),
            "the committed bulk counts as inserted, not as duplicates found by a retry"
        );
        assert_eq!(totals.operations.inserted, 3 * count as u64);
    }
}
