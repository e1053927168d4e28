//! An OTLP collector for the run with tracing on: rotel, as `./scripts/bench.sh` installs it,
//! receiving over gRPC and dropping what it receives (the benchmark measures the recorder's
//! side of tracing, not a collector's storage).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Collector {
    pub grpc_port: u16,
    child: Child,
}

impl Collector {
    /// `None` without `BENCH_ROTEL_AGENT` (the run with tracing on is then left out).
    pub fn start() -> Option<Self> {
        let agent = std::env::var_os("BENCH_ROTEL_AGENT").map(PathBuf::from)?;
        let grpc_port = crate::run::free_port();
        let http_port = crate::run::free_port();
        let mut command = Command::new(agent);
        if let Some(libdir) = std::env::var_os("BENCH_ROTEL_LIBDIR") {
            command.env("LD_LIBRARY_PATH", libdir);
        }
        let child = command
            .args(["start", "--exporter", "blackhole"])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rotel-agent starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "rotel answers");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { grpc_port, child })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
