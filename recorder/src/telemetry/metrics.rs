//! The recorder's Prometheus metrics (names fixed by DESIGN.md).
//!
//! Row counters move only after COMMIT, so they always match what PostgreSQL holds.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::telemetry::counts::{RowCounts, WriteCounts};

/// What ended a collection window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushTrigger {
    Size,
    Timeout,
    Shutdown,
}

impl FlushTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushTrigger::Size => "size",
            FlushTrigger::Timeout => "timeout",
            FlushTrigger::Shutdown => "shutdown",
        }
    }
}

struct TableCounters {
    attempted: IntCounter,
    inserted: IntCounter,
    ignored: IntCounter,
    /// Status transitions: transactions only (operations never change once written).
    updated: Option<IntCounter>,
    conflicting: IntCounter,
}

impl TableCounters {
    fn new(registry: &Registry, table: &str, transitions: bool) -> Self {
        let counter = |what: &str, help: &str| {
            let c = IntCounter::new(
                format!("bulk_recorder_{table}_{what}_total"),
                help.replace("{}", table),
            )
            .expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        Self {
            attempted: counter("attempted", "{} rows the recorder tried to insert"),
            inserted: counter("inserted", "{} rows actually inserted (committed)"),
            ignored: counter(
                "ignored",
                "{} rows skipped because they were already stored as sent (redeliveries)",
            ),
            updated: transitions.then(|| {
                counter(
                    "updated",
                    "{} moved from PENDING to a final status (APPROVED, CANCELED)",
                )
            }),
            conflicting: counter(
                "conflicting",
                "{} not written because their transaction id was already stored with other \
                 content (the stored rows are kept)",
            ),
        }
    }

    fn add(&self, rows: RowCounts) {
        self.attempted.inc_by(rows.attempted);
        self.inserted.inc_by(rows.inserted);
        self.ignored.inc_by(rows.ignored);
        self.conflicting.inc_by(rows.conflicting);
        if let Some(updated) = &self.updated {
            updated.inc_by(rows.updated);
        }
    }

    fn get(&self) -> RowCounts {
        RowCounts {
            attempted: self.attempted.get(),
            inserted: self.inserted.get(),
            ignored: self.ignored.get(),
            updated: self.updated.as_ref().map_or(0, IntCounter::get),
            conflicting: self.conflicting.get(),
        }
    }
}

/// Every metric of one recorder process, on its own registry.
pub struct Metrics {
    registry: Registry,
    transactions: TableCounters,
    operations: TableCounters,
    pub bulk_duration: Histogram,
    pub bulk_size: Histogram,
    flushes: IntCounterVec,
    pub fallbacks: IntCounter,
    rejected: IntCounterVec,
    skipped: IntCounterVec,
    decoded: IntCounterVec,
    pub statements: IntCounter,
    pub retries: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let transactions = TableCounters::new(&registry, "transactions", true);
        let operations = TableCounters::new(&registry, "operations", false);
        let bulk_duration = Histogram::with_opts(
            HistogramOpts::new(
                "bulk_recorder_bulk_duration_seconds",
                "Time to write and commit one bulk",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        let bulk_size = Histogram::with_opts(
            HistogramOpts::new("bulk_recorder_bulk_size", "Messages per flushed bulk").buckets(
                vec![
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                ],
            ),
        )
        .expect("valid metric");
        let flushes = IntCounterVec::new(
            Opts::new(
                "bulk_recorder_flushes_total",
                "Bulks flushed, by what triggered the flush",
            ),
            &["trigger"],
        )
        .expect("valid metric");
        let fallbacks = IntCounter::new(
            "bulk_recorder_fallbacks_total",
            "Bulks refused on data and retried one message at a time",
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "bulk_recorder_messages_rejected_total",
                "Messages rejected without requeue (dead-lettered when the queue has a DLX), by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let skipped = IntCounterVec::new(
            Opts::new(
                "bulk_recorder_messages_skipped_total",
                "Messages acknowledged without writing anything (an empty ledger envelope), by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let decoded = IntCounterVec::new(
            Opts::new(
                "bulk_recorder_messages_decoded_total",
                "Messages decoded into a transaction, by format (midaz_legacy: a ledger message \
                 without Version, whose balance updates this recorder does not apply)",
            ),
            &["format"],
        )
        .expect("valid metric");
        let statements = IntCounter::new(
            "bulk_recorder_db_statements_total",
            "INSERT statements sent to PostgreSQL (BEGIN/COMMIT not counted)",
        )
        .expect("valid metric");
        let retries = IntCounter::new(
            "bulk_recorder_write_retries_total",
            "Writes retried after a transient database failure",
        )
        .expect("valid metric");
        for c in [&bulk_duration, &bulk_size] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for c in [&flushes, &rejected, &skipped, &decoded] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for c in [&fallbacks, &statements, &retries] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        Self {
            registry,
            transactions,
            operations,
            bulk_duration,
            bulk_size,
            flushes,
            fallbacks,
            rejected,
            skipped,
            decoded,
            statements,
            retries,
        }
    }

    /// Records committed rows.
    pub fn add_committed(&self, counts: WriteCounts) {
        self.transactions.add(counts.transactions);
        self.operations.add(counts.operations);
    }

    /// Cumulative committed counts of this process.
    pub fn totals(&self) -> WriteCounts {
        WriteCounts {
            transactions: self.transactions.get(),
            operations: self.operations.get(),
        }
    }

    pub fn flushed(&self, trigger: FlushTrigger, messages: usize) {
        self.flushes.with_label_values(&[trigger.as_str()]).inc();
        self.bulk_size.observe(messages as f64);
    }

    pub fn flushes(&self, trigger: FlushTrigger) -> u64 {
        self.flushes.with_label_values(&[trigger.as_str()]).get()
    }

    pub fn reject(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.with_label_values(&[reason]).get()
    }

    pub fn skip(&self, reason: &str) {
        self.skipped.with_label_values(&[reason]).inc();
    }

    pub fn skipped(&self, reason: &str) -> u64 {
        self.skipped.with_label_values(&[reason]).get()
    }

    pub fn decoded(&self, format: &str) {
        self.decoded.with_label_values(&[format]).inc();
    }

    pub fn decoded_count(&self, format: &str) -> u64 {
        self.decoded.with_label_values(&[format]).get()
    }

    /// All rejected messages, whatever the reason.
    pub fn rejected_total(&self) -> u64 {
        prometheus::core::Collector::collect(&self.rejected)
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// The text exposition format served on /metrics.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
