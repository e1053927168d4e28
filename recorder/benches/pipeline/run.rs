//! One timed run: release `bulk-recorder` processes draining a queue of pre-published messages
//! into a database, measured by the rows PostgreSQL holds at the end.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use sqlx::{Connection as _, PgConnection};

use crate::services::amqp_url;

/// What one run measured.
pub struct Row {
    pub mode: String,
    pub settings: String,
    pub transactions: usize,
    pub seconds: f64,
    pub operations_per_transaction: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub statements_per_bulk: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// CPU seconds the recorder processes used (user + system), all together.
    pub cpu_seconds: Option<f64>,
}

impl Row {
    /// A limit: a rate, nothing about bulks.
    pub fn limit(settings: &str, transactions: usize, seconds: f64) -> Self {
        Row {
            mode: "limit".into(),
            settings: settings.into(),
            transactions,
            seconds,
            operations_per_transaction: 5,
            p50_ms: None,
            p99_ms: None,
            statements_per_bulk: None,
            peak_rss_mib: None,
            cpu_seconds: None,
        }
    }

    pub fn rate(&self) -> f64 {
        self.transactions as f64 / self.seconds
    }

    /// The recorders' CPU time per message, in microseconds.
    pub fn cpu_us_per_message(&self) -> Option<f64> {
        self.cpu_seconds.map(|s| s * 1e6 / self.transactions as f64)
    }
}

/// A run to make: `processes` recorders with `env`, draining queue `queue` into `url`.
pub struct Run<'a> {
    pub mode: &'a str,
    pub settings: String,
    pub queue: &'a str,
    pub url: &'a str,
    pub env: Vec<(&'static str, String)>,
    pub processes: usize,
    /// Messages in the queue, and transactions already in the tables before it.
    pub messages: usize,
    pub rows_before: usize,
    pub operations: usize,
}

async fn scrape(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A quantile from the bulk duration histogram's buckets (summed over processes),
/// interpolated as Prometheus does.
fn quantile(expositions: &[String], q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for exposition in expositions {
        for (le, count) in exposition
            .lines()
            .filter_map(|l| l.strip_prefix("bulk_recorder_bulk_duration_seconds_bucket{le=\""))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse::<f64>().ok()?))
            })
        {
            match buckets.iter_mut().find(|(l, _)| *l == le) {
                Some(bucket) => bucket.1 += count,
                None => buckets.push((le, count)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower_le, mut lower_count) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower_le * 1e3);
            }
            let fraction = if count > lower_count {
                (rank - lower_count) / (count - lower_count)
            } else {
                1.0
            };
            return Some((lower_le + (le - lower_le) * fraction) * 1e3);
        }
        (lower_le, lower_count) = (le, count);
    }
    None
}

/// User + system CPU time of a process, from /proc (clock ticks of 1/100 s on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Run<'_> {
    /// Starts the recorders, waits until they committed every message, stops them, and checks
    /// that PostgreSQL holds every row.
    pub async fn measure(&self) -> Row {
        let ports: Vec<u16> = (0..self.processes).map(|_| free_port()).collect();
        let started = Instant::now();
        let mut children: Vec<_> = ports
            .iter()
            .map(|port| {
                tokio::process::Command::new(env!("CARGO_BIN_EXE_bulk-recorder"))
                    .env("RABBITMQ_URL", amqp_url())
                    .env("RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE", self.queue)
                    .env("DATABASE_URL", self.url)
                    .env("BULK_RECORDER_MIGRATE", "false")
                    .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
                    .env("RUST_LOG", "warn")
                    .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("the release bulk-recorder starts")
            })
            .collect();
        let target = self.messages as f64;
        let expositions = loop {
            let mut all = Vec::with_capacity(ports.len());
            for port in &ports {
                all.push(scrape(*port).await.unwrap_or_default());
            }
            let attempted: f64 = all
                .iter()
                .map(|e| sample(e, "bulk_recorder_transactions_attempted_total"))
                .sum();
            if attempted >= target {
                break all;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1800),
                "{} did not finish",
                self.settings
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let seconds = started.elapsed().as_secs_f64();
        let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
        let rss = pids
            .iter()
            .filter_map(|p| peak_rss_mib(*p))
            .reduce(f64::max);
        let cpu = pids
            .iter()
            .filter_map(|p| cpu_seconds(*p))
            .reduce(|a, b| a + b);
        for pid in &pids {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        for child in &mut children {
            let _ = child.wait().await;
        }
        self.check_stored().await;
        let flushes: f64 = expositions
            .iter()
            .map(|e| sample(e, "bulk_recorder_flushes_total"))
            .sum();
        let statements: f64 = expositions
            .iter()
            .map(|e| sample(e, "bulk_recorder_db_statements_total"))
            .sum();
        Row {
            mode: self.mode.to_string(),
            settings: self.settings.clone(),
            transactions: self.messages,
            seconds,
            operations_per_transaction: self.operations,
            p50_ms: quantile(&expositions, 0.5),
            p99_ms: quantile(&expositions, 0.99),
            statements_per_bulk: (flushes > 0.0).then(|| statements / flushes),
            peak_rss_mib: rss,
            cpu_seconds: cpu,
        }
    }

    async fn check_stored(&self) {
        let mut conn = PgConnection::connect(self.url).await.unwrap();
        let count = |table: &str| format!("SELECT count(*) FROM {table}");
        let stored: i64 = sqlx::query_scalar(&count("transaction"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let stored_ops: i64 = sqlx::query_scalar(&count("operation"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let expected = self.messages + self.rows_before;
        assert_eq!(
            stored as usize, expected,
            "{}: every transaction stored",
            self.settings
        );
        assert_eq!(
            stored_ops as usize,
            expected * self.operations,
            "{}: every operation stored",
            self.settings
        );
    }
}
