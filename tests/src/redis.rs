//! The ledger's Redis in the tests: its backup entries written as the ledger writes them (values
//! from `tests/fixtures/ledger-redis/`, read from its source), on the shared Redis
//! (127.0.0.1:6379, or `TEST_REDIS_URL`) under this test's own fields and keys, removed when
//! dropped; and a throwaway `redis-server` of a test's own, to stop, freeze and restart.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bulk_recorder::{ledger::backup::BACKUP_HASH, message::Transaction};
use redis::AsyncCommands;

use crate::{
    free_port,
    pg_cluster::{TempDir, on_path, wait_for_port},
    skip,
};

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The ids of the fixtures' transaction, organization and ledger.
const FIXTURE_IDS: [&str; 3] = [
    "0193a6a4-5c3e-7b1e-9f2a-6d1c2b3a4f50",
    "0193a6a4-0000-7000-8000-000000000002",
    "0193a6a4-0000-7000-8000-000000000001",
];

/// `tests/fixtures/ledger-redis/<name>.json` for `t`: the ledger's bytes, with `t`'s ids in
/// place of the fixture's.
pub fn backup_value(name: &str, t: &Transaction) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/ledger-redis")
        .join(format!("{name}.json"));
    let mut text = std::fs::read_to_string(&path).expect("fixture");
    let ids = [t.id, t.organization_id, t.ledger_id];
    for (fixture, id) in FIXTURE_IDS.iter().zip(ids) {
        text = text.replace(fixture, &id.to_string());
    }
    text.trim_end().to_string()
}

/// The ledger's field for `t` in the backup hash, and its write-behind key.
pub fn keys(t: &Transaction) -> (String, String) {
    let ids = format!("{}:{}:{}", t.organization_id, t.ledger_id, t.id);
    (
        format!("transaction:{{transactions}}:{ids}"),
        format!("wb_transaction:{{{ids}}}"),
    )
}

/// Backup entries of this test's transactions in the Redis at `url` (one server, or the nodes
/// of a cluster).
pub struct LedgerRedis {
    pub url: String,
    cluster: Option<Vec<String>>,
    written: Vec<(String, String)>,
}

/// A connection to one server or to a cluster.
pub enum Connection {
    One(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Connection::One(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::One(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl LedgerRedis {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            cluster: None,
            written: Vec::new(),
        }
    }

    /// On `cluster` (thrown away with it: nothing to remove).
    pub fn cluster(cluster: &OwnCluster) -> Self {
        Self {
            url: cluster.url(),
            cluster: Some(cluster.node_urls()),
            written: Vec::new(),
        }
    }

    pub async fn connection(&self) -> Connection {
        match &self.cluster {
            Some(nodes) => Connection::Cluster(
                redis::cluster::ClusterClient::new(nodes.clone())
                    .expect("cluster URLs")
                    .get_async_connection()
                    .await
                    .expect("the cluster answers"),
            ),
            None => Connection::One(
                redis::Client::open(self.url.as_str())
                    .expect("a Redis URL")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("Redis answers"),
            ),
        }
    }

    /// What the ledger stores before publishing `t`: its backup entry (`fixture`'s value) and
    /// its write-behind key (24 h).
    pub async fn back_up(&mut self, t: &Transaction, fixture: &str) {
        let (field, write_behind) = keys(t);
        let mut conn = self.connection().await;
        let _: () = conn
            .hset(BACKUP_HASH, &field, backup_value(fixture, t))
            .await
            .expect("HSET");
        let _: () = conn
            .set_ex(&write_behind, b"\x81\xa2ID\xa1x".as_slice(), 86_400)
            .await
            .expect("SET");
        self.written.push((field, write_behind));
    }

    /// The backup entry's `transaction_status`, or `None` when it is gone.
    pub async fn entry_status(&self, t: &Transaction) -> Option<String> {
        let mut conn = self.connection().await;
        let value: Option<String> = conn.hget(BACKUP_HASH, keys(t).0).await.expect("HGET");
        value.map(|v| {
            serde_json::from_str::<serde_json::Value>(&v).expect("JSON")["transaction_status"]
                .as_str()
                .expect("a status")
                .to_string()
        })
    }

    pub async fn write_behind_exists(&self, t: &Transaction) -> bool {
        let mut conn = self.connection().await;
        conn.exists(keys(t).1).await.expect("EXISTS")
    }
}

impl Drop for LedgerRedis {
    fn drop(&mut self) {
        if self.cluster.is_some() {
            return;
        }
        let (url, written) = (self.url.clone(), std::mem::take(&mut self.written));
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            for (field, write_behind) in written {
                let _: Result<(), _> = redis::cmd("HDEL")
                    .arg(BACKUP_HASH)
                    .arg(field)
                    .query(&mut conn);
                let _: Result<(), _> = redis::cmd("DEL").arg(write_behind).query(&mut conn);
            }
        })
        .join();
    }
}

/// A `redis-server` of this test's own, persisting to an append-only file so that a restart
/// keeps its entries.
pub struct OwnRedis {
    pub port: u16,
    dir: TempDir,
    server: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    /// `None` (with a message) when `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        let Some(server) = on_path("redis-server") else {
            skip("redis-server not found: ./scripts/test.sh installs it");
            return None;
        };
        let mut redis = Self {
            port: free_port(),
            dir: TempDir::new("br-redis"),
            server,
            child: None,
        };
        redis.run();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let child = Command::new(&self.server)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(20)),
            "the test's redis-server answers"
        );
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Stops the server; [`OwnRedis::restart`] brings it back with its entries.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.run();
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT");
        }
        self.stop();
    }
}

/// A Redis Cluster of this test's own: three `redis-server --cluster-enabled yes` joined by
/// `redis-cli --cluster create` (no replicas), every slot served.
pub struct OwnCluster {
    pub ports: Vec<u16>,
    _dir: TempDir,
    children: Vec<Child>,
}

impl OwnCluster {
    /// `None` (with a message) without `redis-server` and `redis-cli`.
    pub fn start() -> Option<Self> {
        let (Some(server), Some(cli)) = (on_path("redis-server"), on_path("redis-cli")) else {
            skip("redis-server/redis-cli not found: ./scripts/test.sh installs them");
            return None;
        };
        let dir = TempDir::new("br-redis-cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let children = ports
            .iter()
            .map(|port| {
                Command::new(&server)
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args([
                        "--cluster-enabled",
                        "yes",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .arg("--dir")
                    .arg(&dir.0)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server starts")
            })
            .collect();
        let cluster = Self {
            ports,
            _dir: dir,
            children,
        };
        for port in &cluster.ports {
            assert!(
                wait_for_port(*port, Duration::from_secs(20)),
                "a node answers"
            );
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_until_served(&cli);
        Some(cluster)
    }

    fn wait_until_served(&self, cli: &std::path::Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for port in &self.ports {
            loop {
                let info = Command::new(cli)
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster serves every slot"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `REDIS_URL` for the recorder.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    pub fn node_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Keys on each node.
    pub async fn keys_per_node(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for url in self.node_urls() {
            let mut conn = redis::Client::open(url)
                .expect("a node URL")
                .get_multiplexed_async_connection()
                .await
                .expect("the node answers");
            counts.push(
                redis::cmd("DBSIZE")
                    .query_async(&mut conn)
                    .await
                    .expect("DBSIZE"),
            );
        }
        counts
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
