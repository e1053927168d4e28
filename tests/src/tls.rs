//! TLS for the end-to-end tests: a CA and a server certificate made for each test, a throwaway
//! PostgreSQL cluster with `ssl=on` (`initdb` + `pg_ctl` on a free port), and a TLS terminator
//! (`socat`) in front of the shared RabbitMQ. Everything started here is stopped, and every
//! file removed, when its value is dropped.
//!
//! `./scripts/test.sh` installs the tools when they are missing; a test run without them says
//! so and skips.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub use crate::pg_cluster::TempDir;
use crate::{
    free_port,
    pg_cluster::{PgCluster, is_root, on_path, run, wait_for_port},
    rabbitmq_url, skip,
};

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

/// A PostgreSQL cluster of this test's own with `ssl=on`, trusting local connections.
pub struct TlsPostgres {
    pub port: u16,
    _cluster: PgCluster,
}

impl TlsPostgres {
    /// Starts the cluster with the server certificate of `certs`; `None` (with a message) when
    /// PostgreSQL's server programs are not installed.
    pub fn start(certs: &Certificates) -> Option<Self> {
        let cluster = PgCluster::init("tls")?;
        let (cert, key) = (
            cluster.dir.0.join("server.crt"),
            cluster.dir.0.join("server.key"),
        );
        std::fs::copy(&certs.server_cert, &cert).expect("copy certificate");
        std::fs::copy(&certs.server_key, &key).expect("copy key");
        set_mode(&key, 0o600);
        if is_root() {
            run(Command::new("chown")
                .args(["postgres"])
                .arg(&cert)
                .arg(&key));
        }
        cluster.start(&[
            "ssl=on",
            &format!("ssl_cert_file={}", cert.display()),
            &format!("ssl_key_file={}", key.display()),
            "fsync=off",
        ]);
        Some(Self {
            port: cluster.port,
            _cluster: cluster,
        })
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres?<query>`.
    pub fn url(&self, query: &str) -> String {
        self._cluster.url("postgres", query)
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

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
