//! Helpers shared by the end-to-end tests: a database and queues of their own for each test,
//! a recorder running in process, and the broker's and database's own counts.
//!
//! Everything talks to the real services (PostgreSQL on 127.0.0.1:5432, RabbitMQ on :5672 by
//! default; override with `TEST_POSTGRES_ADMIN_URL` and `TEST_RABBITMQ_URL`). Each test gets a
//! fresh database and fresh queues, dropped when the test ends, so tests run in parallel and
//! leave nothing behind.

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use bulk_recorder::{
    config::Config,
    message::{Format, Transaction},
    pipeline::recorder::{self, RecorderError},
    telemetry::health::Health,
    telemetry::metrics::Metrics,
};
use bulk_recorder_publish as publish;
use lapin::{
    Connection, ConnectionProperties,
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
};
use sqlx::{Connection as _, PgConnection, PgPool, Row};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

pub mod exchange;
pub mod kube_cluster;
pub mod ledger;
pub mod mongo;
pub mod otel;
pub mod pg_cluster;
pub mod proxy;
pub mod rabbit_node;
pub mod redis;
pub mod tls;

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

pub fn rabbitmq_url() -> String {
    std::env::var("TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Says why a test is skipped, past the test harness's capture so that logs show it.
pub fn skip(why: &str) {
    use std::io::Write;
    let message = format!("skipped: {why}");
    match std::fs::OpenOptions::new().write(true).open("/dev/stderr") {
        Ok(mut stderr) => {
            let _ = writeln!(stderr, "{message}");
        }
        Err(_) => eprintln!("{message}"),
    }
}

/// A database of this test's own, dropped (with its connections) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!("br_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("PostgreSQL admin connection");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = postgres_admin_url();
        let url = format!(
            "{}/{name}",
            &base[..base.rfind('/').expect("a database in the URL")]
        );
        Self { name, url }
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.expect("test database")
    }

    /// Rows in `table` (`transaction` or `operation`).
    pub async fn count(&self, table: &str) -> i64 {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .expect("test database");
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .expect("catalog");
        if !exists {
            return 0;
        }
        sqlx::query(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .expect("count")
            .get(0)
    }

    /// Lets clients connect, or refuses every new connection (the database "goes away").
    pub async fn allow_connections(&self, allowed: bool) {
        let mut admin = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("admin");
        sqlx::query(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allowed}",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("alter database");
    }

    /// Ends every connection the recorder holds to this database (as a failover would).
    pub async fn terminate_backends(&self) -> i64 {
        let mut admin = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("admin");
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name = 'bulk-recorder'",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await
        .expect("terminate")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(async move {
            if let Ok(mut admin) = PgConnection::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        });
    }
}

/// A login role of this test's own on the shared server (least privilege: no grants until the
/// test gives some); its privileges and the role are dropped when the value is dropped, before
/// the test's database (declare it after the database).
pub struct TestRole {
    pub name: String,
    /// The test database's URL (as the administrator), where its grants are.
    db_url: String,
}

impl TestRole {
    pub async fn create(db: &TestDb) -> Self {
        let name = format!("br_role_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("admin");
        // A password too: a server installed by scripts/services.sh asks for one over TCP.
        sqlx::query(&format!("CREATE ROLE {name} LOGIN PASSWORD '{name}'"))
            .execute(&mut admin)
            .await
            .expect("create role");
        Self {
            name,
            db_url: db.url.clone(),
        }
    }

    /// Runs `sql` as the administrator in the test's database; `{role}` names this role.
    pub async fn admin(&self, sql: &str) {
        let sql = sql.replace("{role}", &self.name);
        let mut conn = PgConnection::connect(&self.db_url).await.expect("admin");
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .expect("admin sql");
    }

    /// The test database's URL, connecting as this role.
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&self.db_url).expect("database URL");
        url.set_username(&self.name).expect("a user");
        url.set_password(Some(&self.name)).expect("a password");
        url.to_string()
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let (name, db_url) = (self.name.clone(), self.db_url.clone());
        run_detached(async move {
            if let Ok(mut conn) = PgConnection::connect(&db_url).await {
                let _ = sqlx::query(&format!("DROP OWNED BY {name}"))
                    .execute(&mut conn)
                    .await;
            }
            if let Ok(mut admin) = PgConnection::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {name}"))
                    .execute(&mut admin)
                    .await;
            }
        });
    }
}

/// Queues of this test's own: the work queue and, optionally, its dead-letter queue.
pub struct TestQueue {
    pub name: String,
    pub dead_letters: Option<String>,
}

impl TestQueue {
    /// A name only: the recorder declares the queue itself (durable, no arguments).
    pub fn new() -> Self {
        Self {
            name: format!("br-test-{}", Uuid::new_v4().simple()),
            dead_letters: None,
        }
    }

    /// A queue declared beforehand as an operator would: quorum type, a dead-letter queue and
    /// a length limit. The recorder must consume it without redeclaring it.
    pub async fn with_dead_letters() -> Self {
        Self::quorum_with_dead_letters(None).await
    }

    /// The same, with `x-delivery-limit`: a message returned to the queue more than `limit`
    /// times is dead-lettered by the broker (RabbitMQ 4 sets 20 on every quorum queue).
    pub async fn quorum_with_dead_letters(delivery_limit: Option<i64>) -> Self {
        let name = format!("br-test-{}", Uuid::new_v4().simple());
        let dlq = format!("{name}.dlq");
        declare_quorum_with_dead_letters(&name, &dlq, delivery_limit).await;
        Self {
            name,
            dead_letters: Some(dlq),
        }
    }

    /// Messages ready in `queue` (unacknowledged ones are not counted).
    pub async fn ready(queue: &str) -> u32 {
        let connection = connect().await;
        let channel = connection.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let count = match channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => q.message_count(),
            Err(_) => 0,
        };
        let _ = connection.close(200, "ok".into()).await;
        count
    }

    pub async fn publish(&self, plan: &publish::PublishPlan) -> publish::Published {
        publish::publish(&rabbitmq_url(), &self.name, plan)
            .await
            .expect("publish")
    }

    /// Publishes the given transactions, then the raw bodies, in that order.
    pub async fn publish_transactions(&self, transactions: &[Transaction], format: Format) {
        let connection = connect().await;
        bulk_recorder_publish::declare_queue(&connection, &self.name)
            .await
            .expect("queue");
        let bodies = transactions
            .iter()
            .map(|t| (publish::encode(t, format), publish::content_type(format)));
        publish::publish_bodies(&connection, &self.name, bodies)
            .await
            .expect("publish");
        let _ = connection.close(200, "ok".into()).await;
    }

    pub async fn publish_raw(&self, bodies: Vec<(Vec<u8>, &'static str)>) {
        let connection = connect().await;
        bulk_recorder_publish::declare_queue(&connection, &self.name)
            .await
            .expect("queue");
        publish::publish_bodies(&connection, &self.name, bodies)
            .await
            .expect("publish");
        let _ = connection.close(200, "ok".into()).await;
    }
}

/// Declares `dlq` and `name`, a quorum queue dead-lettering to `dlq` with a length limit (and a
/// delivery limit), as an operator would.
pub async fn declare_quorum_with_dead_letters(name: &str, dlq: &str, delivery_limit: Option<i64>) {
    let connection = connect().await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            dlq.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("declare dead-letter queue");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dlq.into()),
    );
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1_000_000));
    if let Some(limit) = delivery_limit {
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
    }
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
        .expect("declare queue with arguments");
    let _ = connection.close(200, "ok".into()).await;
}

/// The type and arguments of `queue` as the broker lists it; `None` when it does not exist.
pub fn queue_listing(queue: &str) -> Option<serde_json::Value> {
    rabbitmqctl_json("list_queues", &["name", "type", "arguments"])
        .into_iter()
        .find(|row| row["name"] == queue)
}

impl Default for TestQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let queues: Vec<String> = std::iter::once(self.name.clone())
            .chain(self.dead_letters.clone())
            .collect();
        run_detached(async move {
            if let Ok(connection) =
                Connection::connect(&rabbitmq_url(), ConnectionProperties::default()).await
            {
                for queue in queues {
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "ok".into()).await;
            }
        });
    }
}

pub async fn connect() -> Connection {
    Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ connection")
}

/// Cleanup from `Drop`, which may run inside a runtime: a thread with a runtime of its own.
pub fn run_detached(work: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work)
    })
    .join();
}

/// The recorder configuration for this test's database and queue, with `overrides`.
pub fn config(db: &TestDb, queue: &TestQueue, overrides: &[(&str, &str)]) -> Config {
    Config::from_vars(&env(db, queue, overrides)).expect("valid test configuration")
}

/// The environment a recorder process would get.
pub fn env(db: &TestDb, queue: &TestQueue, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("RABBITMQ_URL", rabbitmq_url()),
        (
            "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            queue.name.clone(),
        ),
        ("DATABASE_URL", db.url.clone()),
        ("METRICS_ADDR", "127.0.0.1:0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    vars
}

/// With `RUST_LOG` set, the in-process recorders log into the test's captured output (shown
/// for failing tests), which is what a test that hangs needs.
fn log_when_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A recorder running in this process, as `bulk-recorder` runs it.
pub struct RunningRecorder {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RecorderError>>,
}

impl RunningRecorder {
    pub fn start(config: Config) -> Self {
        log_when_asked();
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(recorder::run(
            config,
            metrics.clone(),
            health.clone(),
            shutdown,
        ));
        Self {
            metrics,
            health,
            stop,
            task,
        }
    }

    /// Asks for a graceful shutdown (as SIGTERM does) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the recorder stops within 30 s")
            .expect("recorder task")
            .expect("recorder result");
    }

    pub fn committed_transactions(&self) -> u64 {
        self.metrics.totals().transactions.attempted
    }

    /// Asserts that, a few seconds on, `held` messages of `queue` still wait unacknowledged
    /// (none back in the queue) and readiness says so: `why` they are held.
    pub async fn assert_holds(&self, queue: &str, held: u64, why: &str) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(broker_counts(queue), (0, held), "{why}");
        assert!(!self.health.ready(), "readiness off while {why}");
    }

    /// Messages done with: committed, skipped (nothing to write) or rejected.
    pub fn settled_messages(&self) -> u64 {
        let m = &self.metrics;
        self.committed_transactions() + m.skipped("empty") + m.rejected_total()
    }
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rows `rabbitmqctl <command> -q <columns> --formatter json` prints.
pub fn rabbitmqctl_json(command: &str, columns: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new("rabbitmqctl")
        .arg(command)
        .arg("-q")
        .args(columns)
        .args(["--formatter", "json"])
        .output()
        .expect("rabbitmqctl runs");
    serde_json::from_slice(&output.stdout).expect("rabbitmqctl json")
}

/// The broker's own view of a queue: (ready, unacknowledged), from `rabbitmqctl`.
pub fn broker_counts(queue: &str) -> (u64, u64) {
    let columns = ["name", "messages_ready", "messages_unacknowledged"];
    rabbitmqctl_json("list_queues", &columns)
        .iter()
        .find(|row| row["name"] == queue)
        .map(|row| {
            (
                row["messages_ready"].as_u64().unwrap_or(0),
                row["messages_unacknowledged"].as_u64().unwrap_or(0),
            )
        })
        .unwrap_or((0, 0))
}

/// Closes, on the broker's side, the connections named `bulk-recorder:<queue>`.
pub fn close_recorder_connections(queue: &str) -> usize {
    // The plain listing prints pids in the form `close_connection` accepts (the JSON one does not).
    let output = Command::new("rabbitmqctl")
        .args(["list_connections", "-s", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&output.stdout);
    let wanted = format!("\"bulk-recorder:{queue}\"");
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(&wanted)) {
        let pid = line.split('\t').next().unwrap_or_default();
        let status = Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test: broker connection closed"])
            .status()
            .expect("rabbitmqctl runs");
        closed += usize::from(status.success());
    }
    closed
}

/// The `bulk-recorder` binary with `vars` as its whole environment; killed when dropped.
pub fn spawn_recorder(vars: HashMap<String, String>) -> tokio::process::Child {
    tokio::process::Command::new(recorder_binary())
        .env_clear()
        .envs(vars)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("bulk-recorder starts")
}

/// Sends a signal (`-TERM`, `-KILL`) to a child process.
pub fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args([name, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Sends SIGTERM and asserts that the recorder exits successfully within `bound` (`what` names
/// the promise in the failure message).
pub async fn terminate_within(child: &mut tokio::process::Child, bound: Duration, what: &str) {
    signal(child, "-TERM");
    let status = tokio::time::timeout(bound, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what}: no exit within {bound:?}"))
        .expect("wait");
    assert!(status.success(), "{what}: {status}");
}

/// The `bulk-recorder` binary, built by `cargo test` for the recorder crate's own tests.
pub fn recorder_binary() -> PathBuf {
    if let Ok(path) = std::env::var("BULK_RECORDER_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = dir.join("bulk-recorder");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p bulk-recorder` first (scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// Ids of the transactions stored in the database.
pub async fn stored_transaction_ids(db: &TestDb) -> std::collections::BTreeSet<Uuid> {
    let pool = db.pool().await;
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM transaction")
        .fetch_all(&pool)
        .await
        .expect("query");
    pool.close().await;
    ids.into_iter().collect()
}

/// A free local port for a child process's METRICS_ADDR.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A plain HTTP/1.1 GET: (status code, body). Enough for /metrics and the probes.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of an unlabelled sample in a Prometheus text exposition.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The start of every fault test: `count` transactions of `operations` each are queued, a
/// recorder with `overrides` is draining them, and at least `committed` are already stored.
pub async fn recorder_mid_drain(
    db: &TestDb,
    queue: &TestQueue,
    count: usize,
    operations: usize,
    overrides: &[(&str, &str)],
    committed: u64,
) -> (Vec<Transaction>, RunningRecorder) {
    let transactions: Vec<_> = (0..count)
        .map(|_| publish::sample_transaction(operations))
        .collect();
    queue
        .publish_transactions(&transactions, Format::Json)
        .await;
    let recorder = RunningRecorder::start(config(db, queue, overrides));
    wait_until(
        Duration::from_secs(60),
        "the first bulks committed",
        || async { recorder.committed_transactions() >= committed },
    )
    .await;
    (transactions, recorder)
}

/// The end of every fault test: each transaction is stored exactly once with all its
/// operations, and nothing is left in the queue.
pub async fn assert_stored_exactly_once(
    db: &TestDb,
    queue: &TestQueue,
    transactions: &[Transaction],
) {
    let expected: std::collections::BTreeSet<Uuid> = transactions.iter().map(|t| t.id).collect();
    assert_eq!(
        stored_transaction_ids(db).await,
        expected,
        "every transaction stored once"
    );
    let operations: usize = transactions.iter().map(|t| t.operations.len()).sum();
    assert_eq!(
        db.count("operation").await as usize,
        operations,
        "every operation stored once"
    );
    assert_eq!(
        TestQueue::ready(&queue.name).await,
        0,
        "nothing left in the queue"
    );
}
