//! A RabbitMQ node of a test's own (`rabbitmq-server` on free ports with a data directory of its
//! own), for what the shared broker cannot be: a resource alarm that blocks publishers would
//! stall every other test. Shut down, and its files removed, when dropped.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    free_port,
    pg_cluster::{TempDir, is_root, on_path, wait_for_port},
    skip,
};

pub struct RabbitNode {
    pub port: u16,
    name: String,
    _dir: TempDir,
    server: Child,
}

impl RabbitNode {
    /// Starts a node and waits until it serves AMQP; `None` (with a message) without RabbitMQ.
    /// A node that fails to boot (ports picked free but taken meanwhile by another test's node,
    /// a machine too loaded for the boot's own timeouts) is tried again on other ports.
    pub fn start() -> Option<Self> {
        if on_path("rabbitmq-server").is_none() {
            skip("rabbitmq-server not found: ./scripts/test.sh installs RabbitMQ");
            return None;
        }
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::boot() {
                Ok(node) => return Some(node),
                Err(why) => failures.push(why),
            }
        }
        panic!("the test's RabbitMQ node did not start: {failures:?}");
    }

    fn boot() -> Result<Self, String> {
        let dir = TempDir::new("br-rabbit");
        if is_root() {
            // The server drops to the `rabbitmq` user.
            let _ = Command::new("chown")
                .args(["-R", "rabbitmq:rabbitmq"])
                .arg(&dir.0)
                .status();
        }
        let port = free_port();
        let name = format!("br-test-{port}@localhost");
        let path = |leaf: &str| dir.0.join(leaf).display().to_string();
        let server = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &name)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("none"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server starts");
        // Dropped (shut down, its files removed) if it does not boot.
        let node = Self {
            port,
            name,
            _dir: dir,
            server,
        };
        if !wait_for_port(port, Duration::from_secs(60)) {
            return Err(format!("nothing serves AMQP on {port} after 60 s"));
        }
        node.try_ctl(&["await_startup", "--timeout", "60"])?;
        Ok(node)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `rabbitmqctl -n <this node> <args>`; panics when it fails.
    pub fn ctl(&self, args: &[&str]) {
        if let Err(why) = self.try_ctl(args) {
            panic!("{why}");
        }
    }

    fn try_ctl(&self, args: &[&str]) -> Result<(), String> {
        let output = Command::new("rabbitmqctl")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// Raises (or clears) a memory alarm: the node blocks every connection that publishes.
    pub fn memory_alarm(&self, on: bool) {
        let watermark = if on { "0.000001" } else { "0.4" };
        self.ctl(&["set_vm_memory_high_watermark", watermark]);
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.name, "shutdown"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
