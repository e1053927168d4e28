//! Load and contention: several recorders at once, and a database that stalls.

use std::{collections::BTreeSet, time::Duration};

use bulk_recorder::message::Format;
use bulk_recorder_e2e::*;
use bulk_recorder_publish::sample_transaction;
use sqlx::{Connection, PgConnection};

const DRAIN: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_recorders_with_overlapping_duplicates_neither_deadlock_nor_miscount() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    // Every transaction is published three times, interleaved, so the recorders race on the
    // same ids in different bulks.
    let unique: Vec<_> = (0..1000).map(|_| sample_transaction(3)).collect();
    let mut messages = Vec::with_capacity(3000);
    for round in 0..3 {
        let mut copy = unique.clone();
        fastrand::seed(round);
        fastrand::shuffle(&mut copy);
        messages.extend(copy);
    }
    queue.publish_transactions(&messages, Format::Json).await;
    // The first recorder migrates; the others would wait on the migration lock anyway.
    let recorders: Vec<_> = (0..3)
        .map(|_| RunningRecorder::start(config(&db, &queue, &[("BULK_RECORDER_SIZE", "25")])))
        .collect();
    wait_until(
        DRAIN,
        "3000 messages committed across recorders",
        || async {
            recorders
                .iter()
                .map(|r| r.committed_transactions())
                .sum::<u64>()
                == 3000
        },
    )
    .await;
    let totals: Vec<_> = recorders.iter().map(|r| r.metrics.totals()).collect();
    for recorder in recorders {
        recorder.stop().await;
    }

    let inserted: u64 = totals.iter().map(|t| t.transactions.inserted).sum();
    let ignored: u64 = totals.iter().map(|t| t.transactions.ignored).sum();
    let ops_inserted: u64 = totals.iter().map(|t| t.operations.inserted).sum();
    assert_eq!(inserted, 1000, "sum of inserted = unique ids");
    assert_eq!(ignored, 2000);
    assert_eq!(ops_inserted, 3000);
    let expected: BTreeSet<_> = unique.iter().map(|t| t.id).collect();
    assert_eq!(stored_transaction_ids(&db).await, expected);
    assert_eq!(db.count("operation").await, 3000);
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_makes_the_recorder_wait_without_acking_or_hoarding() {
    // 2 workers x prefetch 10 x (2 bulks in flight, the default, + the one being collected).
    const WINDOW: u64 = 60;
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "2"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "10"),
    ];
    let recorder = RunningRecorder::start(config(&db, &queue, &overrides));
    wait_until(DRAIN, "ready", || async { recorder.health.ready() }).await;

    // Somebody holds the table for a few seconds (a long migration, a VACUUM FULL...).
    let mut locker = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE operation IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let transactions: Vec<_> = (0..500).map(|_| sample_transaction(2)).collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;

    let name = queue.name.clone();
    wait_until(DRAIN, "the prefetch window to be full", || {
        let name = name.clone();
        async move {
            tokio::task::spawn_blocking(move || broker_counts(&name))
                .await
                .unwrap()
                .1
                == WINDOW
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let name = queue.name.clone();
    let (ready, unacked) = tokio::task::spawn_blocking(move || broker_counts(&name))
        .await
        .unwrap();
    assert_eq!(
        unacked, WINDOW,
        "the recorder holds at most the bulks in flight and the one being collected"
    );
    assert_eq!(
        ready,
        500 - WINDOW,
        "the rest waits in the broker, not in the recorder's memory"
    );
    assert_eq!(
        recorder.committed_transactions(),
        0,
        "nothing is counted while nothing commits"
    );

    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    wait_until(DRAIN, "caught up", || async {
        recorder.committed_transactions() == 500
    })
    .await;
    recorder.stop().await;
    assert_eq!(db.count("transaction").await, 500);
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}
