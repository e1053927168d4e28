//! Throwaway PostgreSQL servers of a test's own (`initdb`, `pg_ctl`, `pg_basebackup` on free
//! ports), for what the shared server cannot be: TLS, a primary with a synchronous standby, a
//! failover. Stopped, and their files removed, when dropped.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{free_port, skip};

/// A directory of this test's own, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// PostgreSQL's server programs: on `PATH`, or in Debian's `/usr/lib/postgresql/<version>/bin`
/// (highest version first), where Debian keeps them off `PATH`.
pub fn postgres_tool(tool: &str) -> Option<PathBuf> {
    if let Some(path) = on_path(tool) {
        return Some(path);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin").join(tool)))
        })
        .filter(|(_, path)| path.is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, path)| path)
}

/// A program on `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One server (a data directory and a port), trusting local connections.
pub struct PgCluster {
    pub port: u16,
    pub data: PathBuf,
    pub dir: TempDir,
    /// PostgreSQL refuses to run as root: as root, it runs as `postgres`.
    owner: Option<String>,
    pg_ctl: PathBuf,
}

impl PgCluster {
    /// A new, empty data directory (`initdb`); `None` (with a message) without the programs.
    pub fn init(name: &str) -> Option<Self> {
        let (Some(initdb), Some(pg_ctl)) = (postgres_tool("initdb"), postgres_tool("pg_ctl"))
        else {
            skip(
                "initdb/pg_ctl not found (PostgreSQL's server programs): ./scripts/test.sh installs them",
            );
            return None;
        };
        let cluster = Self::empty(name, pg_ctl);
        run(cluster
            .command(&initdb)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&cluster.data));
        Some(cluster)
    }

    /// A standby of `primary`, cloned by `pg_basebackup -R` (so it streams from it), that the
    /// primary knows as `application_name`.
    pub fn standby_of(primary: &PgCluster, application_name: &str) -> Option<Self> {
        let basebackup = postgres_tool("pg_basebackup")?;
        let cluster = Self::empty(application_name, primary.pg_ctl.clone());
        run(cluster
            .command(&basebackup)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-R", "-X", "stream", "-c", "fast", "-D"])
            .arg(&cluster.data));
        let conninfo = format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={application_name}'\n",
            primary.port
        );
        append(&cluster.data.join("postgresql.auto.conf"), &conninfo);
        Some(cluster)
    }

    fn empty(name: &str, pg_ctl: PathBuf) -> Self {
        let dir = TempDir::new(&format!("br-pg-{name}"));
        let owner = is_root().then(|| "postgres".to_string());
        if let Some(owner) = &owner {
            run(Command::new("chown").args(["-R", owner]).arg(&dir.0));
        }
        Self {
            port: free_port(),
            data: dir.0.join("data"),
            dir,
            owner,
            pg_ctl,
        }
    }

    /// Starts the server with `settings` (`-c name=value` each) on its port.
    pub fn start(&self, settings: &[&str]) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.0.display()
        );
        for setting in settings {
            options.push_str(&format!(" -c {setting}"));
        }
        run(self
            .command(&self.pg_ctl)
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.0.join("log"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "start"]));
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)),
            "the PostgreSQL of this test answers"
        );
    }

    /// Stops the server: `fast` (a clean shutdown) or `immediate` (as a crash).
    pub fn stop(&self, mode: &str) {
        let _ = self
            .command(&self.pg_ctl)
            .args(["-w", "-m", mode, "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Makes a standby the primary.
    pub fn promote(&self) {
        run(self
            .command(&self.pg_ctl)
            .args(["-w", "-D"])
            .arg(&self.data)
            .arg("promote"));
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>?<query>`.
    pub fn url(&self, database: &str, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?{query}",
            self.port
        )
    }

    pub fn command(&self, program: &Path) -> Command {
        match &self.owner {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(text.as_bytes()).expect("append");
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

pub fn run(command: &mut Command) {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
