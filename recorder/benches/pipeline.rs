//! The benchmark: bulk vs one-by-one vs this machine's limit, measured side by side in one run
//! on the same data. Run it with `./scripts/bench.sh` (see the README's Performance section).
//!
//! Every mode drains the same pre-published messages with the release `bulk-recorder` binary
//! into a fresh database. A rate is rows counted in PostgreSQL over the wall time from the
//! recorder's start to the last commit. The limit is the slower of RabbitMQ consume-and-ack
//! alone and PostgreSQL COPY of the same rows alone.

use std::{
    fmt::Write as _,
    process::Stdio,
    time::{Duration, Instant},
};

use bulk_recorder::{
    message::{Format, Transaction},
    publish::{self, encode, sample_transaction},
    store::db,
};
use futures::StreamExt;
use lapin::{
    Connection, ConnectionProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions},
    types::FieldTable,
};
use sqlx::{Connection as _, PgConnection};

struct Args {
    count: usize,
    baseline_count: usize,
}

fn args() -> Args {
    let mut args = Args {
        count: 50_000,
        baseline_count: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match arg.as_str() {
            "--count" => args.count = value(),
            "--baseline-count" => args.baseline_count = value(),
            "--bench" => {}
            other => panic!("unknown argument {other}: use --count N [--baseline-count N]"),
        }
    }
    if args.baseline_count == 0 {
        args.baseline_count = (args.count / 10).clamp(1, 5000);
    }
    args
}

fn admin_url() -> String {
    std::env::var("BENCH_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

fn amqp_url() -> String {
    std::env::var("BENCH_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn database_url(name: &str) -> String {
    let admin = admin_url();
    format!("{}/{name}", &admin[..admin.rfind('/').unwrap()])
}

async fn fresh_database(name: &str) -> String {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = database_url(name);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    db::migrate(&pool).await.unwrap();
    pool.close().await;
    url
}

async fn drop_database(name: &str) {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

async fn fresh_queue(name: &str, bodies: &[Vec<u8>]) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    bulk_recorder::broker::ensure_queue(&connection, name)
        .await
        .unwrap();
    publish::publish_bodies(
        &connection,
        name,
        bodies.iter().map(|b| (b.clone(), "application/json")),
    )
    .await
    .unwrap();
    let _ = connection.close(200, "ok".into()).await;
}

async fn delete_queue(name: &str) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "ok".into()).await;
}

/// One measured run.
struct Row {
    mode: String,
    settings: String,
    transactions: usize,
    seconds: f64,
    operations_per_transaction: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    statements_per_bulk: Option<f64>,
    peak_rss_mib: Option<f64>,
    /// CPU seconds the recorder process used (user + system).
    cpu_seconds: Option<f64>,
}

impl Row {
    /// A limit measurement: a rate, nothing about bulks.
    fn limit(settings: &str, transactions: usize, seconds: f64) -> Self {
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

    fn rate(&self) -> f64 {
        self.transactions as f64 / self.seconds
    }
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

/// A quantile from the histogram's buckets, interpolated as Prometheus does.
fn quantile(exposition: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("bulk_recorder_bulk_duration_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
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

/// Drains `bodies` with the release recorder in the given environment.
async fn drain(
    label: &str,
    settings: &str,
    bodies: &[Vec<u8>],
    prefill: &[Transaction],
    ops: usize,
    env: &[(&str, String)],
) -> Row {
    let name = format!(
        "bench_{}",
        label.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let url = fresh_database(&name).await;
    // Rows already in the tables (loaded by COPY before timing), so that a run of few
    // messages pays for indexes of the same size as the runs of all of them.
    copy_rows(&url, prefill).await;
    fresh_queue(&name, bodies).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bulk-recorder"))
        .env("RABBITMQ_URL", amqp_url())
        .env("RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE", &name)
        .env("DATABASE_URL", &url)
        .env("BULK_RECORDER_MIGRATE", "false")
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the release bulk-recorder starts");
    let target = bodies.len() as f64;
    let exposition = loop {
        if let Some(text) = scrape(port).await
            && sample(&text, "bulk_recorder_transactions_attempted_total") >= target
        {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{label} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib(child.id().unwrap());
    let cpu = cpu_seconds(child.id().unwrap());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status();
    let _ = child.wait().await;

    let mut conn = PgConnection::connect(&url).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transaction")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let stored_ops: i64 = sqlx::query_scalar("SELECT count(*) FROM operation")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        stored as usize,
        bodies.len() + prefill.len(),
        "{label}: every transaction stored"
    );
    assert_eq!(
        stored_ops as usize,
        (bodies.len() + prefill.len()) * ops,
        "{label}: every operation stored"
    );
    drop_database(&name).await;
    delete_queue(&name).await;

    let flushes = sample(&exposition, "bulk_recorder_flushes_total");
    Row {
        mode: label.split(' ').next().unwrap().to_string(),
        settings: settings.to_string(),
        transactions: stored as usize - prefill.len(),
        seconds,
        operations_per_transaction: ops,
        p50_ms: quantile(&exposition, 0.5),
        p99_ms: quantile(&exposition, 0.99),
        statements_per_bulk: (flushes > 0.0)
            .then(|| sample(&exposition, "bulk_recorder_db_statements_total") / flushes),
        peak_rss_mib: rss,
        cpu_seconds: cpu,
    }
}

/// RabbitMQ alone: consume and acknowledge (prefetch 1000, `multiple` acks), no decoding.
async fn broker_limit(bodies: &[Vec<u8>]) -> Row {
    let name = "bench_broker_limit";
    fresh_queue(name, bodies).await;
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            name.into(),
            "limit".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut received = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.unwrap();
        received += 1;
        if received % 250 == 0 || received == bodies.len() {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .unwrap();
        }
        if received == bodies.len() {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = connection.close(200, "ok".into()).await;
    delete_queue(name).await;
    Row::limit(
        "RabbitMQ consume+ack only, prefetch 1000",
        received,
        seconds,
    )
}

fn csv_field(out: &mut String, value: Option<&dyn std::fmt::Display>) {
    if let Some(v) = value {
        let text = v.to_string();
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    }
}

/// One CSV line; `None` is an empty (NULL) field.
fn csv_line(out: &mut String, fields: &[Option<&dyn std::fmt::Display>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, *field);
    }
    out.push('\n');
}

fn csv_rows(transactions: &[Transaction]) -> (String, String) {
    let (mut t_csv, mut o_csv) = (String::new(), String::new());
    for t in transactions {
        let fields: [Option<&dyn std::fmt::Display>; 11] = [
            Some(&t.id),
            Some(&t.description),
            Some(&t.status.code),
            t.amount.as_ref().map(|a| a as _),
            Some(&t.asset_code),
            Some(&t.chart_of_accounts_group_name),
            Some(&t.ledger_id),
            Some(&t.organization_id),
            t.route.as_ref().map(|r| r as _),
            Some(&t.created_at),
            t.updated_at.as_ref().map(|u| u as _),
        ];
        csv_line(&mut t_csv, &fields);
        for o in &t.operations {
            let before = o.balance.as_ref().unwrap();
            let after = o.balance_after.as_ref().unwrap();
            let fields: [Option<&dyn std::fmt::Display>; 20] = [
                Some(&o.id),
                Some(&o.transaction_id),
                Some(&o.description),
                Some(&o.kind),
                Some(&o.asset_code),
                o.amount
                    .as_ref()
                    .and_then(|a| a.value.as_ref())
                    .map(|v| v as _),
                before.available.as_ref().map(|v| v as _),
                before.on_hold.as_ref().map(|v| v as _),
                after.available.as_ref().map(|v| v as _),
                after.on_hold.as_ref().map(|v| v as _),
                Some(&o.status.code),
                Some(&o.account_id),
                Some(&o.account_alias),
                Some(&o.balance_id),
                Some(&o.chart_of_accounts),
                Some(&o.organization_id),
                Some(&o.ledger_id),
                o.direction.as_ref().map(|d| d as _),
                Some(&o.created_at),
                o.updated_at.as_ref().map(|u| u as _),
            ];
            csv_line(&mut o_csv, &fields);
        }
    }
    (t_csv, o_csv)
}

/// PostgreSQL alone: COPY of the same rows into the same tables (keys and indexes included).
/// COPY of `transactions` and their operations into the tables at `url`.
async fn copy_rows(url: &str, transactions: &[Transaction]) {
    let (t_csv, o_csv) = csv_rows(transactions);
    let mut conn = PgConnection::connect(url).await.unwrap();
    for (statement, rows) in [
        (
            "COPY transaction (id, description, status, amount, asset_code, chart_of_accounts_group_name, \
             ledger_id, organization_id, route, created_at, updated_at) FROM STDIN WITH (FORMAT csv)",
            t_csv,
        ),
        (
            "COPY operation (id, transaction_id, description, type, asset_code, amount, available_balance, \
             on_hold_balance, available_balance_after, on_hold_balance_after, status, account_id, account_alias, \
             balance_id, chart_of_accounts, organization_id, ledger_id, direction, created_at, updated_at) \
             FROM STDIN WITH (FORMAT csv)",
            o_csv,
        ),
    ] {
        let mut copy = conn.copy_in_raw(statement).await.unwrap();
        copy.send(rows.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
    conn.close().await.unwrap();
}

/// PostgreSQL alone: COPY of the same rows into the same tables (keys and indexes included).
async fn database_limit(transactions: &[Transaction]) -> Row {
    let name = "bench_copy_limit";
    let url = fresh_database(name).await;
    let started = Instant::now();
    copy_rows(&url, transactions).await;
    let seconds = started.elapsed().as_secs_f64();
    drop_database(name).await;
    Row::limit(
        "PostgreSQL COPY only (csv, same rows and indexes)",
        transactions.len(),
        seconds,
    )
}

fn opt(value: Option<f64>, precision: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.precision$}"))
}

#[tokio::main]
async fn main() {
    let args = args();
    const OPS: usize = 5;
    eprintln!("generating {} transactions x {OPS} operations", args.count);
    let transactions: Vec<Transaction> = (0..args.count).map(|_| sample_transaction(OPS)).collect();
    let bodies: Vec<Vec<u8>> = transactions
        .iter()
        .map(|t| encode(t, Format::Json))
        .collect();

    let mut rows = Vec::new();
    // (workers, prefetch, size, maxRowsPerInsert); size 0 = workers x prefetch. A size below
    // workers x prefetch lets the next bulk be delivered while one is in the database.
    let settings: [(u16, u16, usize, usize); 4] = [
        (5, 10, 0, 1000),
        (5, 100, 0, 2000),
        (4, 250, 400, 2000),
        (8, 250, 1000, 2000),
    ];
    for (workers, prefetch, size, max_rows) in settings {
        let label = format!("bulk w{workers} p{prefetch} s{size}");
        let shown = if size == 0 {
            workers as usize * prefetch as usize
        } else {
            size
        };
        let defaults = if (workers, prefetch, size, max_rows) == (5, 10, 0, 1000) {
            " (defaults)"
        } else {
            ""
        };
        let text = format!(
            "workers={workers} prefetch={prefetch} size={shown} maxRowsPerInsert={max_rows}{defaults}"
        );
        eprintln!("draining {} messages: {text}", bodies.len());
        let env = [
            ("RABBITMQ_NUMBERS_OF_WORKERS", workers.to_string()),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", prefetch.to_string()),
            ("BULK_RECORDER_SIZE", size.to_string()),
            ("BULK_RECORDER_MAX_ROWS_PER_INSERT", max_rows.to_string()),
        ];
        rows.push(drain(&label, &text, &bodies, &[], OPS, &env).await);
    }
    // The baseline drains the first messages into tables that already hold the rest of the
    // same transactions: the same table size as the bulk runs, in far less time.
    let k = args.baseline_count.min(bodies.len());
    eprintln!(
        "draining {k} messages one by one, into tables holding the other {}",
        bodies.len() - k
    );
    let baseline_settings = format!(
        "workers=5 prefetch=10, one INSERT per row, {k} messages into tables holding {}",
        bodies.len() - k
    );
    rows.push(
        drain(
            "one-by-one",
            &baseline_settings,
            &bodies[..k],
            &transactions[k..],
            OPS,
            &[("BULK_RECORDER_ENABLED", "false".into())],
        )
        .await,
    );
    eprintln!("measuring the limits");
    let broker = broker_limit(&bodies).await;
    let database = database_limit(&transactions).await;
    let limit = broker.rate().min(database.rate());
    rows.push(broker);
    rows.push(database);

    let mut table = String::new();
    writeln!(
        table,
        "| mode | settings | transactions | txn/s | ops/s | p50 bulk ms | p99 bulk ms | statements/bulk | peak RSS MiB | recorder CPU s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    for row in &rows {
        writeln!(
            table,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            row.mode,
            row.settings,
            row.transactions,
            row.rate(),
            row.rate() * row.operations_per_transaction as f64,
            opt(row.p50_ms, 2),
            opt(row.p99_ms, 2),
            opt(row.statements_per_bulk, 2),
            opt(row.peak_rss_mib, 1),
            opt(row.cpu_seconds, 1),
        )
        .unwrap();
    }
    println!("{table}");
    let best = rows
        .iter()
        .filter(|r| r.mode == "bulk")
        .max_by(|a, b| a.rate().total_cmp(&b.rate()))
        .unwrap();
    let baseline = rows.iter().find(|r| r.mode == "one-by-one").unwrap();
    let statements = best.statements_per_bulk.unwrap_or(0.0);
    println!(
        "best bulk: {} at {:.0} txn/s; end-to-end limit {:.0} txn/s",
        best.settings,
        best.rate(),
        limit
    );
    println!(
        "bulk_vs_one_by_one={:.1}x bulk_vs_limit={:.2} statements_per_bulk={}",
        best.rate() / baseline.rate(),
        best.rate() / limit,
        if statements.fract() == 0.0 {
            format!("{statements:.0}")
        } else {
            format!("{statements:.2}")
        }
    );
}
