//! The bulk pipeline against the real broker and database: flushing, counting, settling.

use std::time::Duration;

use bulk_recorder::{
    message::{Decimal, Format},
    telemetry::metrics::FlushTrigger,
};
use bulk_recorder_e2e::*;
use bulk_recorder_publish::{PublishPlan, sample_transaction};

fn plan(count: usize) -> PublishPlan {
    PublishPlan {
        count,
        ..Default::default()
    }
}

const DRAIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_flushes_on_size_not_on_the_timer() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    queue.publish(&plan(100)).await;
    // 2 x 10 = bulks of 20; a timer of a minute would stall the test if it were ever needed.
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("RABBITMQ_NUMBERS_OF_WORKERS", "2"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "10"),
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "60000"),
        ],
    ));
    wait_until(DRAIN, "100 transactions committed", || async {
        recorder.committed_transactions() == 100
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    assert_eq!(db.count("transaction").await, 100);
    assert_eq!(db.count("operation").await, 500);
    assert_eq!(
        metrics.flushes(FlushTrigger::Size),
        5,
        "100 messages in bulks of 20"
    );
    assert_eq!(metrics.flushes(FlushTrigger::Timeout), 0);
    let totals = metrics.totals();
    assert_eq!(
        (totals.transactions.inserted, totals.transactions.ignored),
        (100, 0)
    );
    assert_eq!(
        (totals.operations.attempted, totals.operations.inserted),
        (500, 500)
    );
    assert_eq!(metrics.statements.get(), 5, "one statement per bulk");
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_bulk_is_flushed_by_the_timeout() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[("BULK_RECORDER_FLUSH_TIMEOUT_MS", "200")],
    ));
    wait_until(DRAIN, "consuming", || async { recorder.health.ready() }).await;
    queue.publish(&plan(7)).await;
    wait_until(DRAIN, "7 transactions committed", || async {
        recorder.committed_transactions() == 7
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    assert_eq!(db.count("transaction").await, 7);
    assert_eq!(
        metrics.flushes(FlushTrigger::Size),
        0,
        "size 50 is never reached by 7 messages"
    );
    assert!(metrics.flushes(FlushTrigger::Timeout) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_across_bulks_and_within_one_are_counted_as_ignored() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let published = queue
        .publish(&PublishPlan {
            duplicate_percent: 30,
            ..plan(400)
        })
        .await;
    assert!(published.duplicates > 50, "{published:?}");
    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    wait_until(DRAIN, "every message committed", || async {
        recorder.committed_transactions() == 400
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;

    let unique = published.unique_transactions as u64;
    assert_eq!(db.count("transaction").await as u64, unique);
    assert_eq!(db.count("operation").await as u64, unique * 5);
    assert_eq!(totals.transactions.attempted, 400);
    assert_eq!(totals.transactions.inserted, unique);
    assert_eq!(totals.transactions.ignored, published.duplicates as u64);
    assert_eq!(totals.operations.ignored, published.duplicates as u64 * 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_bodies_are_stored_like_json_ones() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let transactions: Vec<_> = (0..10).map(|_| sample_transaction(3)).collect();
    queue
        .publish_transactions(&transactions, Format::Msgpack)
        .await;
    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    wait_until(DRAIN, "10 committed", || async {
        recorder.committed_transactions() == 10
    })
    .await;
    recorder.stop().await;

    let pool = db.pool().await;
    for t in &transactions {
        let (amount, asset): (String, String) =
            sqlx::query_as("SELECT amount::text, asset_code FROM transaction WHERE id = $1")
                .bind(t.id)
                .fetch_one(&pool)
                .await
                .expect("stored");
        assert_eq!(Decimal::parse(&amount).ok(), t.amount, "amounts stay exact");
        assert_eq!(asset, "BRL");
        let ops: i64 =
            sqlx::query_scalar("SELECT count(*) FROM operation WHERE transaction_id = $1")
                .bind(t.id)
                .fetch_one(&pool)
                .await
                .expect("ops");
        assert_eq!(ops, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_ready_or_unacknowledged_after_a_run() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    queue.publish(&plan(300)).await;
    let recorder = RunningRecorder::start(config(&db, &queue, &[("BULK_RECORDER_SIZE", "30")]));
    wait_until(DRAIN, "300 committed", || async {
        recorder.committed_transactions() == 300
    })
    .await;
    // While the recorder is still connected: the broker holds nothing for it.
    let name = queue.name.clone();
    wait_until(Duration::from_secs(10), "0 ready and 0 unacked", || {
        let name = name.clone();
        async move {
            tokio::task::spawn_blocking(move || broker_counts(&name))
                .await
                .unwrap()
                == (0, 0)
        }
    })
    .await;
    recorder.stop().await;
    assert_eq!(db.count("transaction").await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_picks_up_what_is_still_queued_exactly_once() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let transactions: Vec<_> = (0..600).map(|_| sample_transaction(2)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "20"),
    ];
    let first = RunningRecorder::start(config(&db, &queue, &overrides));
    wait_until(DRAIN, "some committed", || async {
        first.committed_transactions() >= 40
    })
    .await;
    first.stop().await;
    let after_first = db.count("transaction").await;
    assert!(
        after_first < 600,
        "the first recorder stopped before the end ({after_first})"
    );
    assert_eq!(
        TestQueue::ready(&queue.name).await as i64,
        600 - after_first,
        "what was not stored is still queued"
    );

    let second = RunningRecorder::start(config(&db, &queue, &overrides));
    wait_until(DRAIN, "queue drained", || async {
        db.count("transaction").await == 600
    })
    .await;
    second.stop().await;
    let expected: std::collections::BTreeSet<_> = transactions.iter().map(|t| t.id).collect();
    assert_eq!(stored_transaction_ids(&db).await, expected);
    assert_eq!(db.count("operation").await, 1200);
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_by_one_mode_writes_one_row_per_statement() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    queue.publish(&plan(20)).await;
    let recorder =
        RunningRecorder::start(config(&db, &queue, &[("BULK_RECORDER_ENABLED", "false")]));
    wait_until(DRAIN, "20 committed", || async {
        recorder.committed_transactions() == 20
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;

    assert_eq!(db.count("transaction").await, 20);
    assert_eq!(db.count("operation").await, 100);
    assert_eq!(
        metrics.statements.get(),
        20 * 6,
        "one INSERT per transaction and per operation"
    );
    assert_eq!(metrics.flushes(FlushTrigger::Size), 20, "bulks of one");
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_by_one_mode_stays_within_postgresqls_connection_limit_with_many_workers() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    queue.publish(&plan(400)).await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("BULK_RECORDER_ENABLED", "false"),
            ("RABBITMQ_NUMBERS_OF_WORKERS", "120"),
        ],
    ));
    let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
    let mut most = 0i64;
    while recorder.committed_transactions() < 400 {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'bulk-recorder'",
        )
        .bind(&db.name)
        .fetch_one(&admin)
        .await
        .unwrap();
        most = most.max(open);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recorder.stop().await;
    admin.close().await;
    assert_eq!(db.count("transaction").await, 400);
    // 16 writes in flight, the waiting room's, a probe, and one to look at a late COMMIT: far
    // from 121.
    assert!(most <= 19, "{most} connections open at once");
    assert!(most > 1, "the baseline still writes in parallel: {most}");
}
