//! TLS for the end-to-end tests: a CA and a server certificate made for each test, a throwaway
//! PostgreSQL cluster with `ssl=on` (`initdb` + `pg_ctl` on a free port), and a TLS terminator
//! (`socat`) in front of the shared RabbitMQ. Everything started here is stopped, and every
//! file removed, when its value is dropped.
//!
//! `./scripts/test.sh` installs the tools when they are missing; a test run without them says
//! so and skips.

use std::{
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use uuid::Uuid;

use crate::{free_port, rabbitmq_url};

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

/// A directory of this test's own, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("temporary directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, a server certificate it signed for the address 127.0.0.1 only (no host name), and a
/// second CA that signed nothing here (the "wrong CA").
pub struct Certificates {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Certificates {
    pub fn new() -> Self {
        let dir = TempDir::new("br-tls-certs");
        let (ca_params, ca_key) = ca("bulk-recorder test CA");
        let (wrong_params, wrong_key) = ca("some other CA");
        let server_key = KeyPair::generate().expect("key");
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server_cert = server.signed_by(&server_key, &issuer).expect("sign");
        let write = |name: &str, pem: String| {
            let path = dir.0.join(name);
            std::fs::write(&path, pem).expect("write certificate");
            path
        };
        Self {
            ca: write("ca.crt", ca_params.self_signed(&ca_key).expect("ca").pem()),
            wrong_ca: write(
                "wrong-ca.crt",
                wrong_params.self_signed(&wrong_key).expect("ca").pem(),
            ),
            server_cert: write("server.crt", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            dir,
        }
    }
}

impl Default for Certificates {
    fn default() -> Self {
        Self::new()
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params, KeyPair::generate().expect("key"))
}

/// A program on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `initdb` and `pg_ctl`: on `PATH`, or in Debian's `/usr/lib/postgresql/<version>/bin`
/// (highest version first), where Debian keeps them off `PATH`.
fn postgres_tool(tool: &str) -> Option<PathBuf> {
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

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A PostgreSQL cluster of this test's own with `ssl=on`, trusting local connections.
pub struct TlsPostgres {
    pub port: u16,
    pg_ctl: PathBuf,
    data: PathBuf,
    owner: Option<String>,
    dir: TempDir,
}

impl TlsPostgres {
    /// Starts the cluster with the server certificate of `certs`; `None` (with a message) when
    /// PostgreSQL's server programs are not installed.
    pub fn start(certs: &Certificates) -> Option<Self> {
        let (Some(initdb), Some(pg_ctl)) = (postgres_tool("initdb"), postgres_tool("pg_ctl"))
        else {
            skip(
                "initdb/pg_ctl not found (PostgreSQL's server programs): ./scripts/test.sh installs them",
            );
            return None;
        };
        let dir = TempDir::new("br-tls-postgres");
        let data = dir.0.join("data");
        // PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
        let owner = is_root().then(|| "postgres".to_string());
        let server = Self {
            port: free_port(),
            pg_ctl,
            data,
            owner,
            dir,
        };
        let (cert, key) = (
            server.dir.0.join("server.crt"),
            server.dir.0.join("server.key"),
        );
        std::fs::copy(&certs.server_cert, &cert).expect("copy certificate");
        std::fs::copy(&certs.server_key, &key).expect("copy key");
        set_mode(&key, 0o600);
        if let Some(owner) = &server.owner {
            run(Command::new("chown").args(["-R", owner]).arg(&server.dir.0));
        }
        run(server
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
            .arg(&server.data));
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            server.port,
            server.dir.0.display(),
            cert.display(),
            key.display()
        );
        run(server
            .command(&server.pg_ctl)
            .args(["-w", "-t", "60", "-l"])
            .arg(server.dir.0.join("log"))
            .arg("-D")
            .arg(&server.data)
            .args(["-o", &options, "start"]));
        assert!(
            wait_for_port(server.port, Duration::from_secs(30)),
            "the TLS PostgreSQL answers"
        );
        Some(server)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres?<query>`.
    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{query}",
            self.port
        )
    }

    fn command(&self, program: &Path) -> Command {
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

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = self
            .command(&self.pg_ctl)
            .args(["-w", "-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `socat` terminating TLS on a free port and forwarding to the test broker.
pub struct TlsTerminator {
    pub port: u16,
    child: Child,
}

impl TlsTerminator {
    /// `None` (with a message) when `socat` is not installed.
    pub fn start(certs: &Certificates) -> Option<Self> {
        let Some(socat) = on_path("socat") else {
            skip("socat not found: ./scripts/test.sh installs it");
            return None;
        };
        let (uri, _) = bulk_recorder::config::connection_url::amqp_target(&rabbitmq_url())
            .expect("TEST_RABBITMQ_URL");
        let port = free_port();
        let child = Command::new(socat)
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                certs.server_cert.display(),
                certs.server_key.display()
            ))
            .arg(format!("TCP:{}:{}", uri.authority.host, uri.authority.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the connections' forked children stop with it.
            .process_group(0)
            .spawn()
            .expect("socat starts");
        let terminator = Self { port, child };
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "socat listens"
        );
        Some(terminator)
    }

    /// `amqps://guest:guest@127.0.0.1:<port>/%2f` plus `query` (e.g. `?cacertfile=...`),
    /// with the test broker's credentials and vhost.
    pub fn url(&self, query: &str) -> String {
        let (uri, _) = bulk_recorder::config::connection_url::amqp_target(&rabbitmq_url())
            .expect("TEST_RABBITMQ_URL");
        format!(
            "amqps://{}:{}@127.0.0.1:{}/{}{query}",
            uri.authority.userinfo.username,
            uri.authority.userinfo.password,
            self.port,
            if uri.vhost == "/" { "%2f" } else { &uri.vhost },
        )
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["--", &group]).status();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run(command: &mut Command) {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
