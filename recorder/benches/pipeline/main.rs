//! The benchmark: bulk vs one-by-one vs this machine's limit, measured side by side in one run
//! on the same data. Run it with `./scripts/bench.sh` (see docs/performance.md).
//!
//! Every run drains pre-published messages with the release `bulk-recorder` binary into a
//! fresh database; a rate is the messages drained over the wall time from the recorders'
//! start to the last commit, and every row is checked in PostgreSQL afterwards. The limit is
//! RabbitMQ consume-and-ack and PostgreSQL `COPY` of the same rows (encoded beforehand) at the
//! same time, the recorder's own work replaced by nothing; each alone is a row too.
//!
//! - default: the recorder's own cost per step (decode, encode), the bulk settings, the
//!   recorder's CPU per message for every format at the defaults and the best setting, the
//!   ledger's document store and events on, tracing on, one-by-one, the limits, and 1, 2 and 3
//!   recorders on one queue (scale-out);
//! - `--growth`: the same drains into tables preloaded to 0, 500,000 and 2,000,000
//!   transactions;
//! - `--writer`: the bulk write alone (no broker, no decoding), at each setting's size and
//!   bulks in flight;
//! - `--memory`: peak resident memory over 1,000,000 transactions (`--count` sets it) at the
//!   defaults and the best setting.

#[path = "../codec/costs.rs"]
mod codec;
mod collector;
mod copy;
mod limits;
mod memory;
mod run;
mod services;
mod writer;

use std::{fmt::Write as _, time::Instant};

use bulk_recorder::message::{Format, Transaction};
use bulk_recorder_publish::{content_type, encode, sample_transaction, with_metadata};

use run::{Row, Run};
use services::{drop_database, fresh_database, fresh_queue, table_mib};

const OPS: usize = 5;

/// Message bodies with their content types.
type Messages = [(Vec<u8>, &'static str)];
/// Environment of the recorders.
type Env = Vec<(&'static str, String)>;

/// A bulk setting: workers, prefetch, size (0 = workers x prefetch), maxRowsPerInsert, bulks
/// in flight.
#[derive(Clone, Copy, PartialEq)]
struct Setting(u16, u16, usize, usize, usize);

const DEFAULTS: Setting = Setting(5, 10, 0, 1000, 2);

/// The fastest setting found on the development machine (see docs/performance.md): enough unacked
/// messages that the next bulk fills while three are in the database.
const BEST: Setting = Setting(4, 1000, 1000, 2000, 3);

impl Setting {
    fn parse(text: &str) -> Self {
        let n: Vec<usize> = text
            .split(':')
            .map(|v| v.parse().expect("w:p:s:m:f numbers"))
            .collect();
        assert_eq!(
            n.len(),
            5,
            "a setting is workers:prefetch:size:maxRows:inFlight"
        );
        Setting(n[0] as u16, n[1] as u16, n[2], n[3], n[4])
    }

    fn size(self) -> usize {
        if self.2 == 0 {
            self.0 as usize * self.1 as usize
        } else {
            self.2
        }
    }

    fn describe(self) -> String {
        let Setting(w, p, _, m, f) = self;
        let defaults = if self == DEFAULTS { " (defaults)" } else { "" };
        format!(
            "workers={w} prefetch={p} size={} maxRowsPerInsert={m} inFlight={f}{defaults}",
            self.size()
        )
    }

    fn env(self) -> Vec<(&'static str, String)> {
        let Setting(w, p, s, m, f) = self;
        vec![
            ("RABBITMQ_NUMBERS_OF_WORKERS", w.to_string()),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", p.to_string()),
            ("BULK_RECORDER_SIZE", s.to_string()),
            ("BULK_RECORDER_MAX_ROWS_PER_INSERT", m.to_string()),
            ("BULK_RECORDER_BULKS_IN_FLIGHT", f.to_string()),
        ]
    }
}

struct Args {
    count: usize,
    baseline_count: usize,
    growth: bool,
    writer: bool,
    memory: bool,
    settings: Vec<Setting>,
}

fn args() -> Args {
    let mut args = Args {
        count: 50_000,
        baseline_count: 0,
        growth: false,
        writer: false,
        memory: false,
        settings: vec![
            DEFAULTS,
            Setting(4, 250, 400, 2000, 2),
            // Bulks of 1000 and a prefetch of 1000: the memory bound of docs/performance.md.
            Setting(2, 1000, 1000, 2000, 2),
            BEST,
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match arg.as_str() {
            "--count" => args.count = value().parse().expect("a number"),
            "--baseline-count" => args.baseline_count = value().parse().expect("a number"),
            "--growth" => args.growth = true,
            "--writer" => args.writer = true,
            "--memory" => args.memory = true,
            "--settings" => {
                args.settings = value().split(',').map(Setting::parse).collect();
                assert!(!args.settings.is_empty());
            }
            "--bench" => {}
            other => panic!(
                "unknown argument {other}: use [--count N] [--baseline-count N] [--growth] \
                 [--writer] [--memory] [--settings w:p:s:m:f,...]"
            ),
        }
    }
    if args.memory && !std::env::args().any(|a| a == "--count") {
        args.count = 1_000_000;
    }
    if args.baseline_count == 0 {
        args.baseline_count = (args.count / 10).clamp(1, 5000);
    }
    args
}

fn bodies(transactions: &[Transaction], format: Format) -> Vec<(Vec<u8>, &'static str)> {
    transactions
        .iter()
        .map(|t| (encode(t, format), content_type(format)))
        .collect()
}

/// Drains `messages` with `processes` recorders at `env` into a copy of `template` (or empty
/// tables) that also receives `prefill` by COPY before timing.
#[allow(clippy::too_many_arguments)]
async fn drain(
    mode: &str,
    settings: String,
    messages: &[(Vec<u8>, &'static str)],
    template: Option<&str>,
    rows_before: usize,
    prefill: &[Transaction],
    env: Vec<(&'static str, String)>,
    processes: usize,
) -> (Row, f64) {
    let name = "bench_run";
    let url = fresh_database(name, template).await;
    copy::copy_rows(&url, prefill).await;
    fresh_queue(name, messages).await;
    eprintln!("draining {} messages: {mode} {settings}", messages.len());
    let row = Run {
        mode,
        settings,
        queue: name,
        url: &url,
        env,
        processes,
        messages: messages.len(),
        rows_before: rows_before + prefill.len(),
        operations: OPS,
    }
    .measure()
    .await;
    let mib = table_mib(&url).await;
    drop_database(name).await;
    services::delete_queue(name).await;
    (row, mib)
}

pub fn opt(value: Option<f64>, precision: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.precision$}"))
}

fn runs_table(rows: &[Row]) -> String {
    let mut table = String::from(
        "| mode | settings | transactions | txn/s | ops/s | p50 bulk ms | p99 bulk ms | statements/bulk | peak RSS MiB | recorder CPU us/msg |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
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
            opt(
                row.cpu_seconds.map(|s| s * 1e6 / row.transactions as f64),
                1
            ),
        )
        .unwrap();
    }
    table
}

/// A bulk run of one recorder into empty tables.
async fn bulk(mode: &str, setting: Setting, note: &str, messages: &Messages, extra: Env) -> Row {
    let mut env = setting.env();
    env.extend(extra);
    let (row, _) = drain(
        mode,
        format!("{}{note}", setting.describe()),
        messages,
        None,
        0,
        &[],
        env,
        1,
    )
    .await;
    row
}

/// The bulk settings on JSON; returns their rows and the fastest setting.
async fn settings_runs(settings: &[Setting], json: &Messages) -> (Vec<Row>, Setting) {
    let mut rows = Vec::new();
    for &setting in settings {
        rows.push(bulk("bulk", setting, "", json, vec![]).await);
    }
    let best = (0..rows.len())
        .max_by(|&a, &b| rows[a].rate().total_cmp(&rows[b].rate()))
        .expect("a bulk setting");
    (rows, settings[best])
}

/// The recorder's CPU per message, each format at the defaults and the best setting (JSON at
/// both comes from the settings' runs).
async fn format_runs(transactions: &[Transaction], best: Setting) -> Vec<Row> {
    let mut rows = Vec::new();
    for (mode, format) in [
        ("bulk msgpack", Format::Msgpack),
        ("bulk midaz", Format::Midaz),
    ] {
        let messages = bodies(transactions, format);
        for setting in [DEFAULTS, best] {
            rows.push(bulk(mode, setting, "", &messages, vec![]).await);
        }
    }
    rows
}

/// What the ledger's side costs: the same transactions, all with metadata, without and with
/// the document store and both kinds of events; and tracing on against the best JSON run.
async fn feature_runs(transactions: &[Transaction], best: Setting, json: &Messages) -> Vec<Row> {
    let with: Vec<Transaction> = transactions
        .iter()
        .cloned()
        .map(|mut t| {
            with_metadata(&mut t);
            t
        })
        .collect();
    let messages = bodies(&with, Format::Json);
    let mongodb =
        std::env::var("BENCH_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    // The broker's own topic exchange, bound to a queue that keeps only the newest event.
    services::bind_event_sink().await;
    let events = vec![
        (
            "RABBITMQ_TRANSACTION_EVENTS_EXCHANGE",
            "amq.topic".to_string(),
        ),
        ("RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE", "amq.topic".into()),
    ];
    let mut ledger_side = events.clone();
    ledger_side.extend([
        ("MONGODB_URL", mongodb),
        ("MONGODB_DATABASE", "bench_metadata".into()),
    ]);
    let mut rows = vec![
        bulk(
            "metadata off",
            best,
            ", metadata on every message, no document store, no events",
            &messages,
            vec![],
        )
        .await,
        bulk(
            "events",
            best,
            ", metadata on every message, transaction and overdraft events confirmed (amq.topic)",
            &messages,
            events,
        )
        .await,
        bulk(
            "metadata + events",
            best,
            ", metadata stored (MONGODB_URL, SecantusDB), and the events",
            &messages,
            ledger_side,
        )
        .await,
    ];
    services::drop_mongodb_database("bench_metadata").await;
    services::delete_queue(services::EVENT_SINK).await;
    match collector::Collector::start() {
        Some(collector) => {
            let endpoint = format!("http://127.0.0.1:{}", collector.grpc_port);
            let tracing = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)];
            rows.push(
                bulk(
                    "tracing",
                    best,
                    ", every bulk traced (OTLP gRPC to rotel)",
                    json,
                    tracing,
                )
                .await,
            );
        }
        None => eprintln!("BENCH_ROTEL_AGENT is not set: no run with tracing on"),
    }
    rows
}

/// One-by-one: the first messages into tables that already hold the rest of the same
/// transactions (the same table size as the bulk runs, in far less time).
async fn baseline(transactions: &[Transaction], json: &Messages, count: usize) -> Row {
    let k = count.min(json.len());
    let (row, _) = drain(
        "one-by-one",
        format!(
            "workers=5 prefetch=10, one INSERT per row, {k} messages into tables holding {}",
            json.len() - k
        ),
        &json[..k],
        None,
        0,
        &transactions[k..],
        vec![("BULK_RECORDER_ENABLED", "false".into())],
        1,
    )
    .await;
    row
}

/// The limits: each side alone, and both at the same time (the one `bulk_vs_limit` uses).
async fn limit_runs(transactions: &[Transaction], json: &Messages) -> Vec<Row> {
    eprintln!("measuring the limits");
    vec![
        limits::broker(json).await,
        limits::database(transactions, 1).await,
        limits::database(transactions, 2).await,
        limits::together(json, transactions).await,
    ]
}

async fn scale_out(best: Setting, json: &Messages) -> String {
    let mut scale = String::from(
        "| recorders | settings (each) | transactions | total txn/s | vs 1 recorder |\n|---:|---|---:|---:|---:|\n",
    );
    let mut single = None;
    for processes in 1..=3 {
        let (row, _) = drain(
            "scale-out",
            best.describe(),
            json,
            None,
            0,
            &[],
            best.env(),
            processes,
        )
        .await;
        let one = *single.get_or_insert(row.rate());
        writeln!(
            scale,
            "| {processes} | {} | {} | {:.0} | {:.2} |",
            best.describe(),
            row.transactions,
            row.rate(),
            row.rate() / one
        )
        .unwrap();
    }
    scale
}

fn find<'a>(rows: &'a [Row], mode: &str, setting: Setting) -> &'a Row {
    let described = setting.describe();
    rows.iter()
        .find(|r| r.mode == mode && r.settings.starts_with(&described))
        .unwrap_or_else(|| panic!("a {mode} run at {described}"))
}

/// The recorder's CPU per message by format, at the defaults and the best setting.
fn cpu_line(rows: &[Row], best: Setting) -> String {
    let mut line = String::from("recorder_cpu_us_per_msg");
    for (name, setting) in [("defaults", DEFAULTS), ("best", best)] {
        for (format, mode) in [
            ("json", "bulk"),
            ("msgpack", "bulk msgpack"),
            ("midaz", "bulk midaz"),
        ] {
            let cpu = find(rows, mode, setting).cpu_us_per_message();
            write!(line, " {name}_{format}={}", opt(cpu, 1)).unwrap();
        }
    }
    line
}

/// Rate and CPU of a run with something on against the same run without it.
fn feature_line(rows: &[Row], best: Setting) -> String {
    let ratio = |on: &Row, off: &Row| {
        let cpu = on
            .cpu_us_per_message()
            .zip(off.cpu_us_per_message())
            .map(|(a, b)| a / b);
        format!("{:.2} (cpu {})", on.rate() / off.rate(), opt(cpu, 2))
    };
    let mode = |m: &str| rows.iter().find(|r| r.mode == m).unwrap();
    let mut line = format!(
        "with_events_vs_without={} with_document_store_and_events_vs_without={}",
        ratio(mode("events"), mode("metadata off")),
        ratio(mode("metadata + events"), mode("metadata off")),
    );
    if let Some(traced) = rows.iter().find(|r| r.mode == "tracing") {
        write!(
            line,
            " with_tracing_vs_without={}",
            ratio(traced, find(rows, "bulk", best))
        )
        .unwrap();
    }
    line
}

#[tokio::main]
async fn main() {
    let args = args();
    if args.growth {
        return growth(&args).await;
    }
    if args.writer {
        return writer::alone(args.count, &args.settings).await;
    }
    if args.memory {
        return memory::peaks(args.count).await;
    }
    let started = Instant::now();
    println!("{}", codec::table());

    eprintln!("generating {} transactions x {OPS} operations", args.count);
    let transactions: Vec<Transaction> = (0..args.count).map(|_| sample_transaction(OPS)).collect();
    let json = bodies(&transactions, Format::Json);
    let (mut rows, best) = settings_runs(&args.settings, &json).await;
    if !args.settings.contains(&DEFAULTS) {
        rows.push(bulk("bulk", DEFAULTS, "", &json, vec![]).await);
    }
    rows.extend(format_runs(&transactions, best).await);
    rows.extend(feature_runs(&transactions, best, &json).await);
    rows.push(baseline(&transactions, &json, args.baseline_count).await);
    rows.extend(limit_runs(&transactions, &json).await);
    println!("{}", runs_table(&rows));
    println!("{}", scale_out(best, &json).await);

    let best_row = find(&rows, "bulk", best);
    let midaz_row = find(&rows, "bulk midaz", best);
    let baseline = rows.iter().find(|r| r.mode == "one-by-one").unwrap();
    let limit_rate = |prefix: &str| {
        rows.iter()
            .filter(|r| r.mode == "limit" && r.settings.starts_with(prefix))
            .map(Row::rate)
            .fold(0.0, f64::max)
    };
    let together = limit_rate("RabbitMQ consume+ack and");
    let separate = limit_rate("RabbitMQ consume+ack only").min(limit_rate("PostgreSQL COPY only"));
    let statements = best_row.statements_per_bulk.unwrap_or(0.0);
    println!(
        "best bulk: {} at {:.0} txn/s (ledger format {:.0}, {:.2} of it); limit {:.0} txn/s \
         (broker and database at the same time; {:.0} each alone); benchmark took {:.0} s",
        best_row.settings,
        best_row.rate(),
        midaz_row.rate(),
        midaz_row.rate() / best_row.rate(),
        together,
        separate,
        started.elapsed().as_secs_f64()
    );
    println!("{}", cpu_line(&rows, best));
    println!("{}", feature_line(&rows, best));
    println!(
        "bulk_vs_one_by_one={:.1}x bulk_vs_limit={:.2} bulk_vs_separate_limits={:.2} statements_per_bulk={}",
        best_row.rate() / baseline.rate(),
        best_row.rate() / together,
        best_row.rate() / separate,
        if statements.fract() == 0.0 {
            format!("{statements:.0}")
        } else {
            format!("{statements:.2}")
        }
    );
}

/// The growth curve: the same drains into tables preloaded (by COPY) to larger sizes.
async fn growth(args: &Args) {
    const SIZES: [usize; 3] = [0, 500_000, 2_000_000];
    let best = BEST;
    let started = Instant::now();
    let transactions: Vec<Transaction> = (0..args.count).map(|_| sample_transaction(OPS)).collect();
    let json = bodies(&transactions, Format::Json);
    let k = args.baseline_count.min(json.len());
    let mut table = String::from(
        "| rows before | mode | settings | transactions | txn/s | p50 bulk ms | p99 bulk ms | tables + indexes after, MiB |\n|---:|---|---|---:|---:|---:|---:|---:|\n",
    );
    for size in SIZES {
        let template = format!("bench_growth_{size}");
        eprintln!("preloading {size} transactions");
        let url = fresh_database(&template, None).await;
        copy::preload(&url, size, OPS).await;
        let runs: [(&str, Setting, &Messages, Env); 3] = [
            ("bulk", DEFAULTS, &json, DEFAULTS.env()),
            ("bulk", best, &json, best.env()),
            (
                "one-by-one",
                DEFAULTS,
                &json[..k],
                vec![("BULK_RECORDER_ENABLED", "false".into())],
            ),
        ];
        for (mode, setting, messages, env) in runs {
            let settings = if mode == "bulk" {
                setting.describe()
            } else {
                "workers=5 prefetch=10, one INSERT per row".into()
            };
            let (row, mib) =
                drain(mode, settings, messages, Some(&template), size, &[], env, 1).await;
            writeln!(
                table,
                "| {size} | {} | {} | {} | {:.0} | {} | {} | {:.0} |",
                row.mode,
                row.settings,
                row.transactions,
                row.rate(),
                opt(row.p50_ms, 2),
                opt(row.p99_ms, 2),
                mib
            )
            .unwrap();
        }
        drop_database(&template).await;
    }
    println!("{table}");
    println!("growth curve took {:.0} s", started.elapsed().as_secs_f64());
}
