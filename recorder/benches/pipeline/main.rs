//! The benchmark: bulk vs one-by-one vs this machine's limit, measured side by side in one run
//! on the same data. Run it with `./scripts/bench.sh` (see the README's Performance section).
//!
//! Every run drains pre-published messages with the release `bulk-recorder` binary into a
//! fresh database; a rate is the messages drained over the wall time from the recorders'
//! start to the last commit, and every row is checked in PostgreSQL afterwards. The limit is
//! the slower of RabbitMQ consume-and-ack alone and PostgreSQL `COPY` of the same rows alone
//! (the better of one and two connections).
//!
//! - default: the decode cost per format, bulk settings, the ledger's own format, one-by-one,
//!   the limits, and 1, 2 and 3 recorders on one queue (scale-out);
//! - `--growth`: the same drains into tables preloaded to 0, 500,000 and 2,000,000
//!   transactions;
//! - `--writer`: the bulk write alone (no broker, no decoding), at each setting's size and
//!   bulks in flight.

mod copy;
mod decode;
mod run;
mod services;
mod writer;

use std::{fmt::Write as _, time::Instant};

use bulk_recorder::message::{Format, Transaction};
use bulk_recorder_publish::{content_type, encode, sample_transaction};
use futures::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};

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

/// The fastest setting found on the development machine (see the README): enough unacked
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
    settings: Vec<Setting>,
}

fn args() -> Args {
    let mut args = Args {
        count: 50_000,
        baseline_count: 0,
        growth: false,
        writer: false,
        settings: vec![
            DEFAULTS,
            Setting(4, 250, 400, 2000, 2),
            // Bulks of 1000 and a prefetch of 1000: the memory bound of the README.
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
            "--settings" => {
                args.settings = value().split(',').map(Setting::parse).collect();
                assert!(!args.settings.is_empty());
            }
            "--bench" => {}
            other => panic!(
                "unknown argument {other}: use [--count N] [--baseline-count N] [--growth] \
                 [--writer] [--settings w:p:s:m:f,...]"
            ),
        }
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

/// RabbitMQ alone: consume and acknowledge (prefetch 1000, `multiple` acks), no decoding.
async fn broker_limit(messages: &[(Vec<u8>, &'static str)]) -> Row {
    let name = "bench_broker_limit";
    fresh_queue(name, messages).await;
    let connection = services::amqp().await;
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
        if received % 250 == 0 || received == messages.len() {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await
                .unwrap();
        }
        if received == messages.len() {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = connection.close(200, "ok".into()).await;
    services::delete_queue(name).await;
    Row::limit(
        "RabbitMQ consume+ack only, prefetch 1000",
        received,
        seconds,
    )
}

/// PostgreSQL alone: COPY of the same rows into the same empty tables (keys and indexes
/// included), over `connections` connections at once.
async fn copy_limit(transactions: &[Transaction], connections: usize) -> Row {
    let name = "bench_copy_limit";
    let url = fresh_database(name, None).await;
    let seconds = copy::timed_copy(&url, transactions, connections, 5000).await;
    drop_database(name).await;
    Row::limit(
        &format!(
            "PostgreSQL COPY only, {connections} connection{}, same rows and indexes",
            if connections > 1 { "s" } else { "" }
        ),
        transactions.len(),
        seconds,
    )
}

fn opt(value: Option<f64>, precision: usize) -> String {
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

#[tokio::main]
async fn main() {
    let args = args();
    if args.growth {
        return growth(&args).await;
    }
    if args.writer {
        return writer::alone(args.count, &args.settings).await;
    }
    let started = Instant::now();

    let mut table = String::from("| format | body bytes | decode us/message |\n|---|---:|---:|\n");
    for cost in decode::costs() {
        writeln!(
            table,
            "| {} | {} | {:.1} |",
            cost.format, cost.bytes, cost.micros
        )
        .unwrap();
    }
    println!("{table}");

    eprintln!("generating {} transactions x {OPS} operations", args.count);
    let transactions: Vec<Transaction> = (0..args.count).map(|_| sample_transaction(OPS)).collect();
    let json = bodies(&transactions, Format::Json);
    let mut rows = Vec::new();
    for &setting in &args.settings {
        let (row, _) = drain(
            "bulk",
            setting.describe(),
            &json,
            None,
            0,
            &[],
            setting.env(),
            1,
        )
        .await;
        rows.push(row);
    }
    let best_index = (0..rows.len())
        .max_by(|&a, &b| rows[a].rate().total_cmp(&rows[b].rate()))
        .expect("a bulk setting");
    let best = args.settings[best_index];

    let midaz = bodies(&transactions, Format::Midaz);
    let (row, _) = drain(
        "bulk midaz",
        format!("{}, the ledger's own message format", best.describe()),
        &midaz,
        None,
        0,
        &[],
        best.env(),
        1,
    )
    .await;
    rows.push(row);

    // The baseline drains the first messages into tables that already hold the rest of the
    // same transactions: the same table size as the bulk runs, in far less time.
    let k = args.baseline_count.min(json.len());
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
    rows.push(row);

    eprintln!("measuring the limits");
    let broker = broker_limit(&json).await;
    let copy_one = copy_limit(&transactions, 1).await;
    let copy_two = copy_limit(&transactions, 2).await;
    let database = copy_one.rate().max(copy_two.rate());
    let limit = broker.rate().min(database);
    rows.extend([broker, copy_one, copy_two]);
    println!("{}", runs_table(&rows));

    let mut scale = String::from(
        "| recorders | settings (each) | transactions | total txn/s | vs 1 recorder |\n|---:|---|---:|---:|---:|\n",
    );
    let mut single = None;
    for processes in 1..=3 {
        let (row, _) = drain(
            "scale-out",
            best.describe(),
            &json,
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
    println!("{scale}");

    let best_row = &rows[best_index];
    let midaz_row = rows.iter().find(|r| r.mode == "bulk midaz").unwrap();
    let baseline = rows.iter().find(|r| r.mode == "one-by-one").unwrap();
    let statements = best_row.statements_per_bulk.unwrap_or(0.0);
    println!(
        "best bulk: {} at {:.0} txn/s (ledger format {:.0}, {:.2} of it); limit {:.0} txn/s; \
         benchmark took {:.0} s",
        best_row.settings,
        best_row.rate(),
        midaz_row.rate(),
        midaz_row.rate() / best_row.rate(),
        limit,
        started.elapsed().as_secs_f64()
    );
    println!(
        "bulk_vs_one_by_one={:.1}x bulk_vs_limit={:.2} statements_per_bulk={}",
        best_row.rate() / baseline.rate(),
        best_row.rate() / limit,
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
