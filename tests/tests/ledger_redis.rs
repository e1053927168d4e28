//! The ledger's Redis backup, acknowledged as its own consumer does: the backup entry of every
//! stored message removed while its status is still the one the message was backed up under,
//! its write-behind key deleted; an entry whose status moved on kept; and Redis trouble never
//! holding or losing a message.

use std::time::Duration;

use bulk_recorder::message::{Format, Transaction};
use bulk_recorder_e2e::{
    ledger::fixture,
    redis::{LedgerRedis, OwnRedis, redis_url},
    *,
};
use bulk_recorder_publish::{pending_and_commit, sample_transaction};

const DRAIN: Duration = Duration::from_secs(60);

fn with_redis(url: &str) -> [(&'static str, String); 2] {
    [
        ("REDIS_URL", url.to_string()),
        ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "200".into()),
    ]
}

fn recorder(db: &TestDb, queue: &TestQueue, redis: &str) -> RunningRecorder {
    let vars = with_redis(redis);
    let overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    RunningRecorder::start(config(db, queue, &overrides))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_entries_of_stored_messages_are_removed_and_newer_ones_kept() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let mut redis = LedgerRedis::new(&redis_url());
    // New postings of the ledger's own format: backed up as CREATED, published as APPROVED.
    let postings: Vec<Transaction> = (0..5).map(|_| sample_transaction(2)).collect();
    for (i, t) in postings.iter().enumerate() {
        let value = if i % 2 == 0 {
            "approved-final"
        } else {
            "approved-seed"
        };
        redis.back_up(t, value).await;
    }
    // A PENDING transaction whose commit has already overwritten its entry (APPROVED).
    let (pending, commit) = pending_and_commit(2);
    redis.back_up(&pending, "pending-committed").await;
    let mut first: Vec<Transaction> = postings.clone();
    first.push(postings[0].clone()); // a duplicate: cleaned up too (found absent)
    first.push(pending.clone());
    queue.publish_transactions(&first, Format::Midaz).await;

    let recorder = recorder(&db, &queue, &redis.url);
    wait_until(DRAIN, "the first messages settled", || async {
        recorder.settled_messages() == 7 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    for t in &postings {
        assert_eq!(
            redis.entry_status(t).await,
            None,
            "a stored posting's entry is removed"
        );
        assert!(
            !redis.write_behind_exists(t).await,
            "its write-behind key deleted"
        );
    }
    assert_eq!(
        redis.entry_status(&pending).await.as_deref(),
        Some("APPROVED"),
        "a late PENDING message leaves the entry its commit wrote"
    );
    assert!(!redis.write_behind_exists(&pending).await);

    // The commit arrives: its entry is removed.
    let body = bulk_recorder_publish::encode_commit(&commit, Format::Midaz);
    queue.publish_raw(vec![(body, "application/json")]).await;
    wait_until(DRAIN, "the commit stored", || async {
        recorder.settled_messages() == 8
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(redis.entry_status(&commit).await, None);
    assert_eq!(metrics.ledger_cleanup_count("removed"), 6);
    assert_eq!(metrics.ledger_cleanup_count("kept"), 1);
    assert_eq!(metrics.ledger_cleanup_count("absent"), 1, "the duplicate");
    assert_eq!(metrics.ledger_cleanup_count("failed"), 0);
}

/// The ledger's own messages (bytes its producer wrote): the entry is found by the payload's
/// ids and status rule, whatever the message's status became in the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledgers_own_messages_remove_their_entries() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let mut redis = LedgerRedis::new(&redis_url());
    let approved = fixture("approved");
    let decoded = bulk_recorder::message::decode(&approved.body, None, 1 << 20)
        .unwrap()
        .into_transaction()
        .unwrap();
    redis.back_up(&decoded, "approved-final").await;
    queue
        .publish_raw(vec![(approved.body.clone(), "application/json")])
        .await;
    let recorder = recorder(&db, &queue, &redis.url);
    wait_until(DRAIN, "stored and its entry removed", || async {
        recorder.committed_transactions() == 1 && redis.entry_status(&decoded).await.is_none()
    })
    .await;
    recorder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_holds_no_message_and_its_entries_are_removed_once_it_is_back() {
    let Some(mut own) = OwnRedis::start() else {
        return;
    };
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let mut redis = LedgerRedis::new(&own.url());
    let batches: Vec<Vec<Transaction>> = (0..2)
        .map(|_| (0..10).map(|_| sample_transaction(2)).collect())
        .collect();
    for t in batches.iter().flatten() {
        redis.back_up(t, "approved-final").await;
    }
    let recorder = recorder(&db, &queue, &redis.url);
    wait_until(DRAIN, "ready", || async { recorder.health.ready() }).await;

    // Frozen: connections stay open and nothing answers.
    own.freeze();
    queue.publish_transactions(&batches[0], Format::Midaz).await;
    wait_until(DRAIN, "the first batch stored and acknowledged", || async {
        recorder.committed_transactions() == 10 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    assert!(
        recorder.health.ready(),
        "Redis is not the recorder's readiness"
    );
    assert!(recorder.metrics.ledger_cleanup_count("failed") >= 10);
    own.thaw();
    wait_until(DRAIN, "the first batch's entries removed", || async {
        all_gone(&redis, &batches[0]).await
    })
    .await;

    // Stopped: connections refused; restarted with its entries.
    own.stop();
    queue.publish_transactions(&batches[1], Format::Midaz).await;
    wait_until(
        DRAIN,
        "the second batch stored and acknowledged",
        || async {
            recorder.committed_transactions() == 20 && broker_counts(&queue.name) == (0, 0)
        },
    )
    .await;
    own.restart();
    wait_until(DRAIN, "the second batch's entries removed", || async {
        all_gone(&redis, &batches[1]).await
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.ledger_cleanup_count("removed"), 20);
    assert_eq!(metrics.ledger_cleanup_count("dropped"), 0);
}

async fn all_gone(redis: &LedgerRedis, batch: &[Transaction]) -> bool {
    for t in batch {
        if redis.entry_status(t).await.is_some() || redis.write_behind_exists(t).await {
            return false;
        }
    }
    true
}
