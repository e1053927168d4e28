//! The ledger's Redis backup, acknowledged as its own consumer does: the backup entry of every
//! stored message removed while its status is still the one the message was backed up under,
//! its write-behind key deleted; an entry whose status moved on kept; and Redis trouble never
//! holding or losing a message.

use std::time::Duration;

use bulk_recorder::message::{Format, Transaction};
use bulk_recorder_e2e::{
    ledger::fixture,
    proxy::PgProxy,
    redis::{LedgerRedis, OwnCluster, OwnRedis, redis_url},
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
    recorder_with(db, queue, redis, &[])
}

fn recorder_with(
    db: &TestDb,
    queue: &TestQueue,
    redis: &str,
    more: &[(&str, &str)],
) -> RunningRecorder {
    let vars = with_redis(redis);
    let mut overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(more);
    RunningRecorder::start(config(db, queue, &overrides))
}

/// A proxy in front of the test's Redis, and the `REDIS_URL` through it.
async fn redis_behind_proxy() -> (PgProxy, String) {
    let address = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let proxy = PgProxy::start(&address).await;
    let through = format!("redis://127.0.0.1:{}", proxy.port);
    (proxy, through)
}

/// A recorder reaching Redis `through` (a call waits 300 ms at most), its connection made: the
/// cleanup of `first` answered.
async fn connected_recorder(
    db: &TestDb,
    queue: &TestQueue,
    through: &str,
    first: &Transaction,
) -> RunningRecorder {
    let recorder = recorder_with(
        db,
        queue,
        through,
        &[("BULK_RECORDER_REDIS_TIMEOUT_MS", "300")],
    );
    queue
        .publish_transactions(std::slice::from_ref(first), Format::Midaz)
        .await;
    wait_until(DRAIN, "the first entry cleaned up", || async {
        cleaned(&recorder) == 1
    })
    .await;
    recorder
}

/// Entries the cleanup has answered for (it runs after the acknowledgement).
fn cleaned(recorder: &RunningRecorder) -> u64 {
    let m = &recorder.metrics;
    ["removed", "kept", "absent"]
        .iter()
        .map(|r| m.ledger_cleanup_count(r))
        .sum()
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
    wait_until(
        DRAIN,
        "the first messages settled and cleaned up",
        || async {
            recorder.settled_messages() == 7
                && broker_counts(&queue.name) == (0, 0)
                && cleaned(&recorder) == 7
        },
    )
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
    wait_until(DRAIN, "the commit stored and cleaned up", || async {
        recorder.settled_messages() == 8 && cleaned(&recorder) == 8
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
    wait_until(DRAIN, "the cleanup failing", || async {
        recorder.metrics.ledger_cleanup_count("failed") >= 10
    })
    .await;
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

/// A Redis Cluster (three nodes of this test's own): the backup hash lives on one slot, each
/// write-behind key on its own. The script runs on the hash's node and the deletions go to
/// every node (a pipeline across slots would be refused with CROSSSLOT, every bulk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_entries_are_removed_and_write_behind_keys_deleted_on_every_node() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let mut redis = LedgerRedis::cluster(&cluster);
    let transactions: Vec<Transaction> = (0..10).map(|_| sample_transaction(2)).collect();
    for t in &transactions {
        redis.back_up(t, "approved-final").await;
    }
    let spread = cluster.keys_per_node().await;
    assert!(
        spread.iter().filter(|&&n| n > 0).count() >= 2,
        "the keys are on several nodes: {spread:?}"
    );
    queue
        .publish_transactions(&transactions, Format::Midaz)
        .await;
    let recorder = recorder(&db, &queue, &redis.url);
    wait_until(DRAIN, "every entry and write-behind key gone", || async {
        recorder.committed_transactions() == 10 && all_gone(&redis, &transactions).await
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.ledger_cleanup_count("removed"), 10);
    assert_eq!(metrics.ledger_cleanup_count("failed"), 0);
}

/// Redis silent (frozen), and a bulk that falls back to one message at a time: no
/// acknowledgement waits for Redis (a late cleanup is harmless), so 200 single writes do not
/// cost 200 timeouts (at the redis crate's own 500 ms, over a minute and a half).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_never_delays_an_acknowledgement() {
    let Some(own) = OwnRedis::start() else {
        return;
    };
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let recorder = recorder_with(
        &db,
        &queue,
        &own.url(),
        &[
            ("BULK_RECORDER_REDIS_TIMEOUT_MS", "10000"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "200"),
            ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "1000"),
        ],
    );
    // A first message, so that the connection to Redis is made; then Redis goes silent.
    queue
        .publish_transactions(&[sample_transaction(1)], Format::Midaz)
        .await;
    wait_until(DRAIN, "the first message cleaned up", || async {
        cleaned(&recorder) == 1
    })
    .await;
    own.freeze();
    let mut transactions: Vec<Transaction> = (0..199).map(|_| sample_transaction(1)).collect();
    let mut poison = sample_transaction(1);
    poison.created_at = chrono::DateTime::from_timestamp(-220_898_664_000, 0).unwrap();
    transactions.insert(100, poison);
    queue
        .publish_transactions(&transactions, Format::Midaz)
        .await;
    wait_until(DRAIN, "every message settled", || async {
        recorder.settled_messages() == 201 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    assert!(
        recorder.metrics.fallbacks.get() >= 1,
        "the poison split the bulk"
    );
    own.thaw();
    recorder.stop().await;
}

/// A cleanup whose answer is lost after Redis ran it (requests reach the server through the
/// proxy, its answers wait past the timeout): the retry finds the entries gone. The script
/// keeps each batch's first result, so they are counted `removed`, once, never `absent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanup_whose_answer_is_lost_counts_what_redis_did() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let (proxy, through) = redis_behind_proxy().await;
    let mut redis = LedgerRedis::new(&redis_url());
    let transactions: Vec<Transaction> = (0..11).map(|_| sample_transaction(2)).collect();
    for t in &transactions {
        redis.back_up(t, "approved-final").await;
    }
    let (first, transactions) = transactions.split_first().unwrap();
    // The server knows the script already (as after the first cleanup): a held answer is then
    // one to work the server did.
    let script = ::redis::Script::new(bulk_recorder::ledger::backup::COMPARE_AND_DELETE);
    let _: String = script
        .prepare_invoke()
        .load_async(&mut redis.connection().await)
        .await
        .expect("SCRIPT LOAD");
    let recorder = connected_recorder(&db, &queue, &through, first).await;
    proxy.hold_answers();
    queue
        .publish_transactions(transactions, Format::Midaz)
        .await;
    wait_until(
        DRAIN,
        "the entries removed, the answer not back",
        || async {
            all_gone(&redis, transactions).await
                && recorder.metrics.ledger_cleanup_count("failed") == 10
        },
    )
    .await;
    proxy.release_answers();
    wait_until(DRAIN, "the cleanup answered for", || async {
        cleaned(&recorder) == 11
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(
        (
            metrics.ledger_cleanup_count("removed"),
            metrics.ledger_cleanup_count("absent")
        ),
        (11, 0)
    );
}

/// Redis away at shutdown: the entries not cleaned up are counted `dropped` (the ledger
/// republishes them after 30 minutes; they are found stored), not silently forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanups_left_at_shutdown_are_counted_dropped() {
    let Some(mut own) = OwnRedis::start() else {
        return;
    };
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let transactions: Vec<Transaction> = (0..10).map(|_| sample_transaction(2)).collect();
    own.stop();
    queue
        .publish_transactions(&transactions, Format::Midaz)
        .await;
    let recorder = recorder(&db, &queue, &own.url());
    wait_until(DRAIN, "stored and acknowledged", || async {
        recorder.committed_transactions() == 10 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.ledger_cleanup_count("dropped"), 10);
    assert_eq!(metrics.ledger_cleanup_count("removed"), 0);
}

/// A half-open connection to a single Redis (the peer gone silent on it, a NAT that dropped the
/// flow): new connections pass, the one the recorder holds answers nothing, and no error ever
/// comes. The connection is replaced after the first call without an answer, and the cleanups
/// go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_redis_connection_is_replaced() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let (proxy, through) = redis_behind_proxy().await;
    let mut redis = LedgerRedis::new(&redis_url());
    let transactions: Vec<Transaction> = (0..51).map(|_| sample_transaction(1)).collect();
    for t in &transactions {
        redis.back_up(t, "approved-final").await;
    }
    let (first, rest) = transactions.split_first().unwrap();
    let recorder = connected_recorder(&db, &queue, &through, first).await;
    proxy.silence_open_connections();
    queue.publish_transactions(rest, Format::Midaz).await;
    wait_until(
        Duration::from_secs(20),
        "the next 50 cleaned up on a new connection",
        || async { cleaned(&recorder) == 51 && all_gone(&redis, rest).await },
    )
    .await;
    recorder.stop().await;
}
