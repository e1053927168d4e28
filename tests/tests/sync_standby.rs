//! A primary with a synchronous standby (servers of this test's own), the recorder behind the
//! project's TCP proxy. A ledger acknowledges a message only when its rows would survive a
//! failover: while the standby is away nothing is acknowledged, whatever ends COMMIT's wait for
//! it (the recorder's own statement timeout, an administrator's cancel or terminate); once it is
//! back everything is stored and acknowledged once, with exact counts; and after a failover to
//! the standby every acknowledged message's rows are there.

use std::{collections::HashMap, time::Duration};

use bulk_recorder::config::Config;
use bulk_recorder_e2e::{pg_cluster::PgCluster, proxy::PgProxy, *};
use bulk_recorder_publish::sample_transaction;
use sqlx::{Connection, PgConnection};

const STANDBY: &str = "standby1";
/// An asynchronous second standby, for the failover tests.
const SECOND: &str = "standby2";

/// The primary, its standby, and the proxy the recorder connects through.
struct Replicated {
    primary: PgCluster,
    standby: PgCluster,
    proxy: PgProxy,
}

impl Replicated {
    /// A primary whose commits wait for the standby; `None` where the servers cannot be made.
    async fn synchronous() -> Option<Self> {
        let names = format!("synchronous_standby_names={STANDBY}");
        Self::start("primary", &[&names], "sync").await
    }

    /// A primary that streams to the standby without waiting for it.
    async fn asynchronous() -> Option<Self> {
        Self::start("async-primary", &[], "async").await
    }

    async fn start(name: &str, settings: &[&str], state: &str) -> Option<Self> {
        let primary = PgCluster::init(name)?;
        primary.start(settings);
        let standby = PgCluster::standby_of(&primary, STANDBY)?;
        standby.start(&[]);
        let proxy = PgProxy::start(&format!("127.0.0.1:{}", primary.port)).await;
        let replicated = Self {
            primary,
            standby,
            proxy,
        };
        replicated.on_primary("CREATE DATABASE ledger").await;
        replicated.wait_for_standby(state).await;
        Some(replicated)
    }

    async fn connect(&self, port: u16) -> PgConnection {
        let url = format!("postgres://postgres@127.0.0.1:{port}/ledger?sslmode=disable");
        PgConnection::connect(&url)
            .await
            .expect("the test's server")
    }

    async fn on_primary(&self, sql: &str) {
        self.on(self.primary.port, "postgres", sql).await;
    }

    async fn on(&self, port: u16, database: &str, sql: &str) {
        let url = format!("postgres://postgres@127.0.0.1:{port}/{database}?sslmode=disable");
        let mut conn = PgConnection::connect(&url)
            .await
            .expect("the test's server");
        sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
    }

    /// The recorder's tables, made by its migrations as the superuser.
    async fn migrate(&self) {
        let url = self.primary.url("ledger", "sslmode=disable");
        let pool = sqlx::PgPool::connect(&url).await.expect("primary");
        bulk_recorder::store::db::migrate(&pool)
            .await
            .expect("migrations");
        pool.close().await;
    }

    /// Waits until the standby streams from the primary in `state` (`sync`).
    async fn wait_for_standby(&self, state: &str) {
        self.wait_for(STANDBY, state).await;
    }

    async fn wait_for(&self, standby: &str, state: &str) {
        wait_until(DRAIN, "the standby streaming", || async {
            let mut conn = self.connect(self.primary.port).await;
            let found: Option<String> = sqlx::query_scalar(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
            )
            .bind(standby)
            .fetch_optional(&mut conn)
            .await
            .expect("pg_stat_replication");
            found.as_deref() == Some(state)
        })
        .await;
    }

    /// A second standby, streaming asynchronously.
    async fn second_standby(&self) -> PgCluster {
        let second = PgCluster::standby_of(&self.primary, SECOND).expect("pg_basebackup");
        second.start(&[]);
        self.wait_for(SECOND, "async").await;
        second
    }

    /// The recorder's session whose COMMIT waits for the standby, once there is one.
    async fn waiting_commit(&self) -> i32 {
        let mut conn = self.connect(self.primary.port).await;
        let deadline = std::time::Instant::now() + DRAIN;
        loop {
            let pid: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' \
                 AND application_name = 'bulk-recorder' ORDER BY backend_start LIMIT 1",
            )
            .fetch_optional(&mut conn)
            .await
            .expect("pg_stat_activity");
            if let Some(pid) = pid {
                return pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no COMMIT waits for the standby"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn transactions_on(&self, port: u16) -> (i64, i64) {
        let mut conn = self.connect(port).await;
        let count = |table: &str| format!("SELECT count(*) FROM {table}");
        let t: i64 = sqlx::query_scalar(&count("transaction"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let o: i64 = sqlx::query_scalar(&count("operation"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (t, o)
    }
}

const DRAIN: Duration = Duration::from_secs(60);

fn recorder_config(proxy: &PgProxy, queue: &TestQueue) -> Config {
    recorder_config_as(proxy, queue, "postgres", &[])
}

/// The recorder connecting as `user`, with `overrides`.
fn recorder_config_as(
    proxy: &PgProxy,
    queue: &TestQueue,
    user: &str,
    overrides: &[(&str, &str)],
) -> Config {
    let mut vars: HashMap<String, String> = [
        ("RABBITMQ_URL", rabbitmq_url()),
        (
            "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            queue.name.clone(),
        ),
        (
            "DATABASE_URL",
            format!(
                "postgres://{user}@127.0.0.1:{}/ledger?sslmode=disable",
                proxy.port
            ),
        ),
        ("METRICS_ADDR", "127.0.0.1:0".into()),
        ("RABBITMQ_NUMBERS_OF_WORKERS", "1".into()),
        ("RABBITMQ_NUMBERS_OF_PREFETCH", "40".into()),
        ("BULK_RECORDER_SIZE", "10".into()),
        ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "200".into()),
        // Short, so that a statement timeout on COMMIT would end its wait for the standby.
        ("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "1000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_vars(&vars).expect("valid configuration")
}

async fn publish(queue: &TestQueue, n: usize) {
    let batch: Vec<_> = (0..n).map(|_| sample_transaction(2)).collect();
    queue
        .publish_transactions(&batch, bulk_recorder::message::Format::Json)
        .await;
}

/// Nothing of the last `held` messages is acknowledged or counted: they stay unacknowledged.
async fn assert_held(recorder: &RunningRecorder, queue: &TestQueue, committed: u64, held: u64) {
    assert_eq!(
        recorder.committed_transactions(),
        committed,
        "counted before durable"
    );
    let (ready, unacked) = broker_counts(&queue.name);
    assert_eq!(
        ready + unacked,
        held,
        "acknowledged before the standby has it"
    );
    assert!(recorder.health.holding(), "readiness reports the held bulk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acknowledged_before_the_synchronous_standby_has_it() {
    let Some(servers) = Replicated::synchronous().await else {
        return;
    };
    let queue = TestQueue::new();
    let recorder = RunningRecorder::start(recorder_config(&servers.proxy, &queue));
    publish(&queue, 10).await;
    wait_until(DRAIN, "10 committed with the standby up", || async {
        recorder.committed_transactions() == 10
    })
    .await;

    // The standby goes away: COMMIT waits for it, past the recorder's statement timeout.
    servers.standby.stop("fast");
    publish(&queue, 10).await;
    servers.waiting_commit().await;
    wait_until(DRAIN, "the bulk held", || async {
        recorder.health.holding()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_held(&recorder, &queue, 10, 10).await;

    // An administrator cancels the wait: PostgreSQL says COMMIT succeeded (with a WARNING) and
    // the rows are committed on the primary only.
    let pid = servers.waiting_commit().await;
    servers
        .on_primary(&format!("SELECT pg_cancel_backend({pid})"))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        servers.transactions_on(servers.primary.port).await.0,
        20,
        "local commit"
    );
    assert_held(&recorder, &queue, 10, 10).await;

    // Another bulk's session is terminated while it waits: its answer is lost.
    publish(&queue, 10).await;
    // The cancelled session no longer waits: this is the next bulk's.
    let pid = servers.waiting_commit().await;
    servers
        .on_primary(&format!("SELECT pg_terminate_backend({pid})"))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_held(&recorder, &queue, 10, 20).await;

    // The standby comes back: everything is acknowledged once, counted exactly.
    servers.standby.start(&[]);
    servers.wait_for_standby("sync").await;
    wait_until(DRAIN, "30 committed", || async {
        recorder.committed_transactions() == 30
    })
    .await;
    wait_until(DRAIN, "nothing left in the queue", || async {
        broker_counts(&queue.name) == (0, 0)
    })
    .await;
    let counts = recorder.metrics.totals();
    assert_eq!(
        (counts.transactions.inserted, counts.transactions.ignored),
        (30, 0),
        "a resolved COMMIT counts as inserted, never as a duplicate of itself"
    );
    assert!(!recorder.health.holding());

    // Failover: the primary dies, the standby is promoted, the same address leads to it.
    publish(&queue, 10).await;
    wait_until(DRAIN, "40 committed", || async {
        recorder.committed_transactions() == 40
    })
    .await;
    servers.primary.stop("immediate");
    servers.standby.promote();
    servers
        .proxy
        .retarget(&format!("127.0.0.1:{}", servers.standby.port));
    assert_eq!(
        servers.transactions_on(servers.standby.port).await,
        (40, 80),
        "every acknowledged message's rows survived the failover"
    );
    publish(&queue, 10).await;
    wait_until(DRAIN, "the recorder writes to the new primary", || async {
        recorder.committed_transactions() == 50
    })
    .await;
    recorder.stop().await;
    assert_eq!(
        servers.transactions_on(servers.standby.port).await,
        (50, 100)
    );
    assert_eq!(broker_counts(&queue.name), (0, 0));
}

/// The answer to COMMIT is lost, then the primary dies before that commit reached its
/// (asynchronous) standby, which is promoted and hands out the same transaction ids again, to
/// other transactions. Asking `txid_status` there would say "committed" of another transaction
/// and acknowledge rows that are gone; the recorder sees another server (its start time) and
/// looks for a row it wrote instead: not there, so it writes the bulk again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_is_not_mistaken_for_another_transaction_after_a_failover() {
    let Some(servers) = Replicated::asynchronous().await else {
        return;
    };
    let queue = TestQueue::new();
    let recorder = RunningRecorder::start(recorder_config(&servers.proxy, &queue));
    publish(&queue, 10).await;
    wait_until(DRAIN, "10 committed and on the standby", || async {
        recorder.committed_transactions() == 10
            && servers.transactions_on(servers.standby.port).await.0 == 10
    })
    .await;

    // The standby stops receiving; the next COMMIT's answer is lost, and the primary dies.
    servers.standby.stop("fast");
    servers.proxy.cut_any_next_commit_and_freeze();
    publish(&queue, 10).await;
    wait_until(DRAIN, "the answer to a COMMIT lost", || async {
        servers.proxy.cuts() == 1
    })
    .await;
    servers.primary.stop("immediate");
    servers.standby.start(&[]);
    servers.standby.promote();
    // The new primary hands out the lost commit's transaction id (and more) to others.
    let mut conn = servers.connect(servers.standby.port).await;
    for _ in 0..200 {
        sqlx::query("SELECT txid_current()")
            .execute(&mut conn)
            .await
            .expect("an unrelated transaction");
    }
    servers
        .proxy
        .retarget(&format!("127.0.0.1:{}", servers.standby.port));
    servers.proxy.thaw();
    wait_until(DRAIN, "20 committed", || async {
        recorder.committed_transactions() == 20
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    assert_eq!(
        servers.transactions_on(servers.standby.port).await,
        (20, 40),
        "every acknowledged message's rows are on the new primary"
    );
    assert_eq!(
        (totals.transactions.inserted, totals.transactions.ignored),
        (20, 0)
    );
    assert_eq!(broker_counts(&queue.name), (0, 0));
}

/// CloudNativePG's `app` role, say: the tables made by someone else, and only `SELECT, INSERT,
/// UPDATE` on them. PostgreSQL shows such a role each `pg_stat_replication` row with its `pid`
/// only; the recorder must not read that as "no synchronous standby yet" and hold every bulk
/// forever: it trusts a COMMIT that returned (and says so at start-up, naming the grant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_table_grants_only_is_acknowledged_with_a_synchronous_standby() {
    let Some(servers) = Replicated::synchronous().await else {
        return;
    };
    servers.migrate().await;
    servers
        .on(
            servers.primary.port,
            "ledger",
            "CREATE ROLE app LOGIN; GRANT USAGE ON SCHEMA public TO app; \
             GRANT SELECT, INSERT, UPDATE ON transaction, operation TO app",
        )
        .await;
    let queue = TestQueue::new();
    let recorder = RunningRecorder::start(recorder_config_as(
        &servers.proxy,
        &queue,
        "app",
        &[("BULK_RECORDER_MIGRATE", "false")],
    ));
    publish(&queue, 20).await;
    wait_until(DRAIN, "20 stored and acknowledged", || async {
        recorder.committed_transactions() == 20 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    recorder.stop().await;
    assert_eq!(servers.transactions_on(servers.standby.port).await.0, 20);
}

/// A failover during a held wait: the synchronous standby is away, a COMMIT's wait for it is
/// cancelled (the commit is local to the primary), the primary dies, and the other standby
/// (asynchronous, stopped before that commit) is promoted. The new primary has no synchronous
/// standby: comparing the old primary's WAL position with it would call the commit durable and
/// acknowledge rows that are gone. The recorder sees another server, finds the rows missing
/// there, and writes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_commit_is_not_judged_by_another_servers_wal_after_a_failover() {
    let Some(servers) = Replicated::synchronous().await else {
        return;
    };
    let second = servers.second_standby().await;
    let queue = TestQueue::new();
    let recorder = RunningRecorder::start(recorder_config(&servers.proxy, &queue));
    publish(&queue, 10).await;
    wait_until(DRAIN, "10 committed and on the second standby", || async {
        recorder.committed_transactions() == 10
            && servers.transactions_on(second.port).await.0 == 10
    })
    .await;

    // Both standbys away; a commit's wait is cancelled: committed on the primary only.
    servers.standby.stop("fast");
    second.stop("fast");
    publish(&queue, 10).await;
    let pid = servers.waiting_commit().await;
    servers
        .on_primary(&format!("SELECT pg_cancel_backend({pid})"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_held(&recorder, &queue, 10, 10).await;

    // The primary dies; the second standby becomes the primary behind the same address.
    servers.primary.stop("immediate");
    second.start(&[]);
    second.promote();
    servers
        .proxy
        .retarget(&format!("127.0.0.1:{}", second.port));
    wait_until(DRAIN, "20 committed", || async {
        recorder.committed_transactions() == 20
    })
    .await;
    let totals = recorder.metrics.totals();
    recorder.stop().await;
    assert_eq!(
        servers.transactions_on(second.port).await,
        (20, 40),
        "every acknowledged message's rows are on the new primary"
    );
    assert_eq!(
        (totals.transactions.inserted, totals.transactions.ignored),
        (20, 0)
    );
    assert_eq!(broker_counts(&queue.name), (0, 0));
}
