//! Parents before children: a transaction that refers to another (`parentTransactionId`, a
//! foreign key) must never be dead-lettered because its parent was written later, or is in a
//! bulk of another recorder that has not committed yet.

use std::time::Duration;

use bulk_recorder::message::{Format, Transaction};
use bulk_recorder_e2e::*;
use bulk_recorder_publish::sample_transaction;
use sqlx::Connection as _;
use uuid::Uuid;

const DRAIN: Duration = Duration::from_secs(60);

/// A child of `parent` whose id sorts before the parent's (so sorting by id alone would write
/// it first).
fn child_of(parent: &Transaction) -> Transaction {
    let mut child = sample_transaction(2);
    child.id = Uuid::from_u128(parent.id.as_u128() - 1);
    for op in &mut child.operations {
        op.transaction_id = child.id;
    }
    child.parent_transaction_id = Some(parent.id);
    child
}

/// Refused by PostgreSQL (22008, timestamp out of range): the bulk falls back to one message
/// at a time.
fn poison() -> Transaction {
    let mut t = sample_transaction(1);
    t.created_at = chrono::DateTime::from_timestamp(-220_898_664_000, 0).expect("a year -5030");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_fallback_a_child_delivered_before_its_parent_is_stored_after_it() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let parent = sample_transaction(2);
    let child = child_of(&parent);
    let bulk = [child.clone(), poison(), parent.clone()];
    queue.publish_transactions(&bulk, Format::Midaz).await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
            ("BULK_RECORDER_SIZE", "3"),
        ],
    ));
    wait_until(DRAIN, "the bulk settled", || async {
        recorder.settled_messages() == 3
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(
        metrics.fallbacks.get(),
        1,
        "the poison made the bulk fall back"
    );
    assert_eq!(
        stored_transaction_ids(&db).await,
        [parent.id, child.id].into_iter().collect()
    );
    assert_eq!(metrics.rejected("database"), 1, "only the poison");
    assert_eq!(metrics.rejected("missing_parent"), 0);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_split_into_statements_writes_parents_first_without_falling_back() {
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let parent = sample_transaction(1);
    let child = child_of(&parent);
    let grandchild = child_of(&child);
    queue
        .publish_transactions(
            &[grandchild.clone(), child.clone(), parent.clone()],
            Format::Json,
        )
        .await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
            ("BULK_RECORDER_SIZE", "3"),
            // One row per statement: three transaction statements, then the operations.
            ("BULK_RECORDER_MAX_ROWS_PER_INSERT", "1"),
        ],
    ));
    wait_until(DRAIN, "3 committed", || async {
        recorder.committed_transactions() == 3
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.fallbacks.get(), 0);
    assert_eq!(stored_transaction_ids(&db).await.len(), 3);
    assert_eq!(
        metrics.statements.get(),
        3 + 5 - 1,
        "a statement per transaction and per operation, the last transaction's with the first \
         operation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_waits_for_a_parent_that_another_recorder_commits_later() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let parent = sample_transaction(2);
    let child = child_of(&parent);
    queue
        .publish_transactions(std::slice::from_ref(&child), Format::Json)
        .await;
    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    // The child is refused (no parent) and waits aside; then the parent arrives elsewhere.
    wait_until(DRAIN, "the child waiting for its parent", || async {
        recorder.metrics.parked.get() == 1
    })
    .await;
    let other_queue = TestQueue::new();
    other_queue
        .publish_transactions(std::slice::from_ref(&parent), Format::Json)
        .await;
    let other = RunningRecorder::start(config(&db, &other_queue, &[]));
    wait_until(DRAIN, "both stored", || async {
        stored_transaction_ids(&db).await.len() == 2
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    other.stop().await;
    assert_eq!(metrics.rejected_total(), 0, "nothing dead-lettered");
    assert_eq!(metrics.parked.get(), 0, "the child no longer waits");
    assert_eq!(TestQueue::ready(&queue.name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_parent_never_comes_is_dead_lettered_as_missing_parent() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let orphan = child_of(&sample_transaction(1));
    let good = sample_transaction(2);
    queue
        .publish_transactions(&[orphan.clone(), good.clone()], Format::Json)
        .await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[("BULK_RECORDER_MISSING_PARENT_WAIT_MS", "1000")],
    ));
    wait_until(DRAIN, "both settled", || async {
        recorder.settled_messages() == 2
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.rejected("missing_parent"), 1);
    assert_eq!(
        stored_transaction_ids(&db).await,
        [good.id].into_iter().collect()
    );
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        1
    );
}

/// With every unacknowledged delivery in use (one channel, prefetch 1 and one bulk in flight: a
/// window of two deliveries, bulks of one), a child whose parent comes later in the same queue waits aside: the messages behind
/// it are stored and acknowledged (never with an acknowledgement that reaches the child's), its
/// parent can be delivered, and the child is stored right after it, long before its wait (here
/// the longest allowed) is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_waiting_for_its_parent_stops_nothing_behind_it() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let parent = sample_transaction(2);
    let child = child_of(&parent);
    let first = sample_transaction(2);
    queue
        .publish_transactions(&[first.clone(), child.clone()], Format::Json)
        .await;
    let overrides = [
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1"),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "1"),
        ("BULK_RECORDER_SIZE", "1"),
        ("BULK_RECORDER_BULKS_IN_FLIGHT", "1"),
        ("BULK_RECORDER_MISSING_PARENT_WAIT_MS", "600000"),
    ];
    let recorder = RunningRecorder::start(config(&db, &queue, &overrides));
    wait_until(DRAIN, "the first stored, the child waiting", || async {
        recorder.committed_transactions() == 1 && recorder.metrics.parked.get() == 1
    })
    .await;
    let later = sample_transaction(2);
    queue
        .publish_transactions(std::slice::from_ref(&later), Format::Json)
        .await;
    wait_until(DRAIN, "the later message stored", || async {
        recorder.committed_transactions() == 2
    })
    .await;
    wait_until(DRAIN, "the later message acknowledged", || async {
        broker_counts(&queue.name) == (0, 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker_counts(&queue.name),
        (0, 1),
        "the child's delivery is still unacknowledged"
    );
    queue
        .publish_transactions(std::slice::from_ref(&parent), Format::Json)
        .await;
    wait_until(DRAIN, "the parent and then the child stored", || async {
        stored_transaction_ids(&db).await.len() == 4
    })
    .await;
    wait_until(DRAIN, "everything acknowledged", || async {
        broker_counts(&queue.name) == (0, 0)
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.rejected_total(), 0, "nothing dead-lettered");
    assert_eq!(metrics.parked.get(), 0);
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        0
    );
}

/// Shutdown while a child waits for its parent: the child goes back to the queue (its parent may
/// come later), it is not dead-lettered, and the recorder does not spin on it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_a_waiting_child_goes_back_to_the_queue() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let orphan = child_of(&sample_transaction(1));
    queue
        .publish_transactions(std::slice::from_ref(&orphan), Format::Json)
        .await;
    // The longest wait: a shutdown that waited it out would not end within `stop`'s 30 s.
    let wait = [("BULK_RECORDER_MISSING_PARENT_WAIT_MS", "600000")];
    let recorder = RunningRecorder::start(config(&db, &queue, &wait));
    wait_until(DRAIN, "the child waiting", || async {
        recorder.metrics.parked.get() == 1
    })
    .await;
    let metrics = recorder.metrics.clone();
    let retries_before = metrics.retries.get();
    recorder.stop().await;
    assert_eq!(
        metrics.retries.get(),
        retries_before,
        "no retries while stopping"
    );
    assert_eq!(metrics.rejected_total(), 0);
    assert_eq!(TestQueue::ready(&queue.name).await, 1, "the child is back");
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        0
    );
}

/// An outage longer than the wait (here the table locked by maintenance: every write fails and
/// is held, while `SELECT 1` still answers): the parent's own bulk may be among the held ones,
/// so the child's wait does not run meanwhile. Once writes go through again the child is
/// tried again and keeps waiting; its parent, coming seconds later, is stored, and so is it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_wait_does_not_run_while_writes_are_held() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let parent = sample_transaction(2);
    let child = child_of(&parent);
    queue
        .publish_transactions(std::slice::from_ref(&child), Format::Json)
        .await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("BULK_RECORDER_MISSING_PARENT_WAIT_MS", "10000"),
            ("BULK_RECORDER_LOCK_TIMEOUT_MS", "200"),
        ],
    ));
    wait_until(DRAIN, "the child waiting for its parent", || async {
        recorder.metrics.parked.get() == 1
    })
    .await;
    let mut maintenance = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE transaction IN ACCESS EXCLUSIVE MODE")
        .execute(&mut maintenance)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    sqlx::raw_sql("COMMIT")
        .execute(&mut maintenance)
        .await
        .unwrap();
    // Past the wall-clock wait; the child is tried again (its write's backoff is at most 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    queue
        .publish_transactions(std::slice::from_ref(&parent), Format::Json)
        .await;
    wait_until(DRAIN, "both stored", || async {
        stored_transaction_ids(&db).await.len() == 2
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(metrics.rejected_total(), 0, "nothing dead-lettered");
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().unwrap()).await,
        0
    );
}

/// SIGTERM with a bulk still to be written that holds a child whose parent never comes: the
/// child is parked after SIGTERM, and the waiting room takes it (it used to have stopped
/// already: the session ended and the bulk's committed messages went back to the queue). The
/// six others are stored and acknowledged; only the child goes back, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_parked_after_sigterm_returns_alone_and_its_bulk_is_acknowledged() {
    let (db, queue) = (TestDb::create().await, TestQueue::with_dead_letters().await);
    let orphan = child_of(&sample_transaction(1));
    let mut batch: Vec<_> = (0..6).map(|_| sample_transaction(1)).collect();
    batch.insert(3, orphan.clone());
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[("BULK_RECORDER_FLUSH_TIMEOUT_MS", "60000")],
    ));
    queue.publish_transactions(&batch, Format::Json).await;
    wait_until(DRAIN, "all seven held in the collector", || async {
        broker_counts(&queue.name) == (0, 7)
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(stored_transaction_ids(&db).await.len(), 6);
    assert_eq!(
        TestQueue::ready(&queue.name).await,
        1,
        "only the child is back"
    );
    assert_eq!(metrics.shutdown_requeued.get(), 1);
    assert_eq!(metrics.rejected_total(), 0);
}

/// A child waits for its parent; SIGTERM comes while the parent is in the last bulk (bulks of
/// two, and a flush timeout longer than the test: the child's bulk was full, the parent's is
/// not). The last bulk is written, and the waiting room tries the child once more before it
/// stops: both are stored, nothing goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_sigterm_a_child_whose_parent_is_in_the_last_bulk_is_stored() {
    let db = TestDb::create().await;
    // Any return to the queue dead-letters the message: a child requeued at SIGTERM (and
    // redelivered before the consumers were cancelled) cannot pass for one stored in time.
    let queue = TestQueue::quorum_with_dead_letters(Some(0)).await;
    let parent = sample_transaction(2);
    let child = child_of(&parent);
    let other = sample_transaction(1);
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "60000"),
            ("BULK_RECORDER_SIZE", "2"),
        ],
    ));
    queue
        .publish_transactions(&[child.clone(), other.clone()], Format::Json)
        .await;
    wait_until(DRAIN, "the other stored, the child waiting", || async {
        recorder.committed_transactions() == 1 && recorder.metrics.parked.get() == 1
    })
    .await;
    queue
        .publish_transactions(std::slice::from_ref(&parent), Format::Json)
        .await;
    wait_until(DRAIN, "the parent held in the collector", || async {
        broker_counts(&queue.name) == (0, 2)
    })
    .await;
    let metrics = recorder.metrics.clone();
    recorder.stop().await;
    assert_eq!(
        stored_transaction_ids(&db).await,
        [parent.id, child.id, other.id].into_iter().collect()
    );
    assert_eq!(TestQueue::ready(&queue.name).await, 0, "nothing back");
    assert_eq!(
        TestQueue::ready(queue.dead_letters.as_ref().expect("dlq")).await,
        0,
        "nothing returned to the queue"
    );
    assert_eq!(metrics.shutdown_requeued.get(), 0);
}
