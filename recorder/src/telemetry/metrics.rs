//! The recorder's Prometheus metrics (names fixed by DESIGN.md).
//!
//! Row counters move only after COMMIT, so they always match what PostgreSQL holds.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
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
            counter(
                registry,
                &format!("bulk_recorder_{table}_{what}_total"),
                &help.replace("{}", table),
            )
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
    /// Messages waiting for a parent transaction that is not stored yet.
    pub parked: IntGauge,
    /// Rejected messages whose dead letter the broker has not confirmed yet.
    pub dead_letters_pending: IntGauge,
    queue_messages: IntGauge,
    queue_consumers: IntGauge,
    /// Whether `queue_messages` has been read at least once.
    queue_read: AtomicBool,
    holding_seconds: Gauge,
    ready: IntGauge,
    dead_lettered: IntCounterVec,
    ledger_cleanup: IntCounterVec,
    metadata_not_stored: IntCounter,
    metadata_documents: IntCounterVec,
    events_published: IntCounterVec,
}

/// Label values known in advance: exported at zero from the start, so that `rate()` and
/// `increase()` see the first event.
const REJECT_REASONS: [&str; 7] = [
    "empty",
    "too_large",
    "malformed",
    "invalid",
    "unsupported",
    "database",
    "missing_parent",
];
pub const CLEANUP_RESULTS: [&str; 5] = ["removed", "kept", "absent", "failed", "dropped"];

/// Registers `metric` and returns it.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    register(registry, vec)
}

fn counter_vec2(registry: &Registry, name: &str, help: &str, labels: [&str; 2]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), &labels).expect("valid metric");
    register(registry, vec)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn float_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    register(registry, Gauge::new(name, help).expect("valid metric"))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    register(registry, Histogram::with_opts(opts).expect("valid metric"))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let metrics = Self {
            transactions: TableCounters::new(&r, "transactions", true),
            operations: TableCounters::new(&r, "operations", false),
            bulk_duration: histogram(
                &r,
                "bulk_recorder_bulk_duration_seconds",
                "Time to write one bulk and have its commit durable",
                vec![
                    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            bulk_size: histogram(
                &r,
                "bulk_recorder_bulk_size",
                "Messages per flushed bulk",
                vec![
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                ],
            ),
            flushes: counter_vec(
                &r,
                "bulk_recorder_flushes_total",
                "Bulks flushed, by what triggered the flush",
                "trigger",
            ),
            fallbacks: counter(
                &r,
                "bulk_recorder_fallbacks_total",
                "Bulks refused (on data, or by the same error again and again) and written in parts",
            ),
            rejected: counter_vec(
                &r,
                "bulk_recorder_messages_rejected_total",
                "Messages rejected without requeue (dead-lettered), by reason",
                "reason",
            ),
            skipped: counter_vec(
                &r,
                "bulk_recorder_messages_skipped_total",
                "Messages acknowledged without writing anything (an empty ledger envelope), by reason",
                "reason",
            ),
            decoded: counter_vec(
                &r,
                "bulk_recorder_messages_decoded_total",
                "Messages decoded into a transaction, by format (midaz_legacy: a ledger message \
                 without Version, whose balance updates this recorder does not apply)",
                "format",
            ),
            statements: counter(
                &r,
                "bulk_recorder_db_statements_total",
                "Statements sent to PostgreSQL to write bulks (BEGIN/COMMIT not counted)",
            ),
            retries: counter(
                &r,
                "bulk_recorder_write_retries_total",
                "Writes retried after a transient database failure",
            ),
            parked: gauge(
                &r,
                "bulk_recorder_parked_messages",
                "Messages waiting for a parent transaction that is not stored yet (unacknowledged)",
            ),
            dead_letters_pending: gauge(
                &r,
                "bulk_recorder_dead_letters_pending",
                "Rejected messages whose copy to BULK_RECORDER_DEAD_LETTER_EXCHANGE the broker has \
                 not confirmed yet (unacknowledged meanwhile)",
            ),
            queue_messages: gauge(
                &r,
                "bulk_recorder_queue_messages",
                "Messages ready in the queue, as last read by this recorder (a passive declare every 5 s)",
            ),
            queue_consumers: gauge(
                &r,
                "bulk_recorder_queue_consumers",
                "Consumers of the queue, as last read by this recorder",
            ),
            queue_read: AtomicBool::new(false),
            holding_seconds: float_gauge(
                &r,
                "bulk_recorder_holding_seconds",
                "How long the longest-held bulk has been held unacknowledged (a failing write, or \
                 a commit not yet on the synchronous standbys); 0 when none is",
            ),
            ready: gauge(
                &r,
                "bulk_recorder_ready",
                "1 while the recorder is ready (broker and database connected, no bulk held), else 0",
            ),
            dead_lettered: counter_vec(
                &r,
                "bulk_recorder_dead_lettered_total",
                "Rejected messages published to BULK_RECORDER_DEAD_LETTER_EXCHANGE with their reason, by reason",
                "reason",
            ),
            ledger_cleanup: counter_vec(
                &r,
                "bulk_recorder_ledger_cleanup_total",
                "The ledger's Redis backup entries after their messages were persisted, by result: \
                 removed, kept (its status moved on), absent, failed (retried in the background), \
                 dropped (given up: the ledger republishes it, the recorder ignores the duplicate)",
                "result",
            ),
            metadata_not_stored: counter(
                &r,
                "bulk_recorder_metadata_not_stored_total",
                "Messages whose transaction or operations carry metadata, which the ledger keeps in \
                 its document store, recorded without MONGODB_URL (their metadata is not stored)",
            ),
            metadata_documents: counter_vec2(
                &r,
                "bulk_recorder_metadata_documents_total",
                "The ledger's metadata documents upserted (MONGODB_URL), by collection and result: \
                 written, or existed (a redelivery, a duplicate, a commit: left unchanged)",
                ["collection", "result"],
            ),
            events_published: counter_vec(
                &r,
                "bulk_recorder_events_published_total",
                "The ledger's events published and confirmed by the broker, by kind (transaction, \
                 overdraft)",
                "kind",
            ),
            registry: r,
        };
        metrics.export_known_labels();
        metrics
    }

    /// Label values known in advance, exported at zero.
    fn export_known_labels(&self) {
        for reason in REJECT_REASONS {
            self.rejected.with_label_values(&[reason]);
        }
        for result in CLEANUP_RESULTS {
            self.ledger_cleanup.with_label_values(&[result]);
        }
        for collection in ["transaction", "operation"] {
            for result in ["written", "existed"] {
                self.metadata_documents
                    .with_label_values(&[collection, result]);
            }
        }
        for kind in ["transaction", "overdraft"] {
            self.events_published.with_label_values(&[kind]);
        }
        for trigger in [
            FlushTrigger::Size,
            FlushTrigger::Timeout,
            FlushTrigger::Shutdown,
        ] {
            self.flushes.with_label_values(&[trigger.as_str()]);
        }
    }

    /// The queue's depth as just read.
    pub fn queue_depth(&self, ready: u32, consumers: u32) {
        self.queue_messages.set(i64::from(ready));
        self.queue_consumers.set(i64::from(consumers));
        self.queue_read.store(true, Ordering::Relaxed);
    }

    /// Ready messages in the queue as last read; `None` before the first read.
    pub fn backlog(&self) -> Option<u64> {
        self.queue_read
            .load(Ordering::Relaxed)
            .then(|| self.queue_messages.get().max(0) as u64)
    }

    /// Readiness, as gauges (set when /metrics is read).
    pub fn set_health(&self, health: &crate::telemetry::health::Health) {
        self.ready.set(i64::from(health.ready()));
        self.holding_seconds.set(health.held_for().as_secs_f64());
    }

    pub fn dead_lettered(&self, reason: &str) {
        self.dead_lettered.with_label_values(&[reason]).inc();
    }

    pub fn dead_lettered_count(&self, reason: &str) -> u64 {
        self.dead_lettered.with_label_values(&[reason]).get()
    }

    pub fn ledger_cleanup(&self, result: &str, n: u64) {
        self.ledger_cleanup.with_label_values(&[result]).inc_by(n);
    }

    pub fn ledger_cleanup_count(&self, result: &str) -> u64 {
        self.ledger_cleanup.with_label_values(&[result]).get()
    }

    pub fn metadata_not_stored(&self) {
        self.metadata_not_stored.inc();
    }

    pub fn metadata_not_stored_count(&self) -> u64 {
        self.metadata_not_stored.get()
    }

    pub fn metadata_documents(&self, collection: &str, result: &str, n: u64) {
        self.metadata_documents
            .with_label_values(&[collection, result])
            .inc_by(n);
    }

    pub fn metadata_documents_count(&self, collection: &str, result: &str) -> u64 {
        self.metadata_documents
            .with_label_values(&[collection, result])
            .get()
    }

    pub fn event_published(&self, kind: &str) {
        self.events_published.with_label_values(&[kind]).inc();
    }

    pub fn events_published_count(&self, kind: &str) -> u64 {
        self.events_published.with_label_values(&[kind]).get()
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
