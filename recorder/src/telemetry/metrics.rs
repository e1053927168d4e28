//! The recorder's Prometheus metrics (names fixed by DESIGN.md).
//!
//! Row counters move only after COMMIT, so they always match what PostgreSQL holds.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::metric_table::{Kind, def};
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
        let counter =
            |what: &str| counter(registry, &format!("bulk_recorder_{table}_{what}_total"));
        Self {
            attempted: counter("attempted"),
            inserted: counter("inserted"),
            ignored: counter("ignored"),
            updated: transitions.then(|| counter("updated")),
            conflicting: counter("conflicting"),
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
    events_unroutable: IntCounterVec,
    /// Messages returned to the queue at shutdown.
    pub shutdown_requeued: IntCounter,
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

fn counter(registry: &Registry, name: &str) -> IntCounter {
    let def = def(name);
    register(
        registry,
        IntCounter::new(def.name, def.help).expect("valid metric"),
    )
}

fn counters(registry: &Registry, name: &str) -> IntCounterVec {
    let def = def(name);
    let Kind::Counters(labels) = def.kind else {
        panic!("{name} has no labels")
    };
    let vec = IntCounterVec::new(Opts::new(def.name, def.help), labels).expect("valid metric");
    register(registry, vec)
}

fn gauge(registry: &Registry, name: &str) -> IntGauge {
    let def = def(name);
    register(
        registry,
        IntGauge::new(def.name, def.help).expect("valid metric"),
    )
}

fn float_gauge(registry: &Registry, name: &str) -> Gauge {
    let def = def(name);
    register(
        registry,
        Gauge::new(def.name, def.help).expect("valid metric"),
    )
}

fn histogram(registry: &Registry, name: &str) -> Histogram {
    let def = def(name);
    let Kind::Histogram(buckets) = def.kind else {
        panic!("{name} is no histogram")
    };
    let opts = HistogramOpts::new(def.name, def.help).buckets(buckets.to_vec());
    register(registry, Histogram::with_opts(opts).expect("valid metric"))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry, built from the table of metrics ([`super::metric_table`]).
    pub fn new() -> Self {
        let r = Registry::new();
        let metrics = Self {
            transactions: TableCounters::new(&r, "transactions", true),
            operations: TableCounters::new(&r, "operations", false),
            bulk_duration: histogram(&r, "bulk_recorder_bulk_duration_seconds"),
            bulk_size: histogram(&r, "bulk_recorder_bulk_size"),
            flushes: counters(&r, "bulk_recorder_flushes_total"),
            fallbacks: counter(&r, "bulk_recorder_fallbacks_total"),
            rejected: counters(&r, "bulk_recorder_messages_rejected_total"),
            skipped: counters(&r, "bulk_recorder_messages_skipped_total"),
            decoded: counters(&r, "bulk_recorder_messages_decoded_total"),
            statements: counter(&r, "bulk_recorder_db_statements_total"),
            retries: counter(&r, "bulk_recorder_write_retries_total"),
            parked: gauge(&r, "bulk_recorder_parked_messages"),
            dead_letters_pending: gauge(&r, "bulk_recorder_dead_letters_pending"),
            queue_messages: gauge(&r, "bulk_recorder_queue_messages"),
            queue_consumers: gauge(&r, "bulk_recorder_queue_consumers"),
            queue_read: AtomicBool::new(false),
            holding_seconds: float_gauge(&r, "bulk_recorder_holding_seconds"),
            ready: gauge(&r, "bulk_recorder_ready"),
            dead_lettered: counters(&r, "bulk_recorder_dead_lettered_total"),
            ledger_cleanup: counters(&r, "bulk_recorder_ledger_cleanup_total"),
            metadata_not_stored: counter(&r, "bulk_recorder_metadata_not_stored_total"),
            metadata_documents: counters(&r, "bulk_recorder_metadata_documents_total"),
            events_published: counters(&r, "bulk_recorder_events_published_total"),
            events_unroutable: counters(&r, "bulk_recorder_events_unroutable_total"),
            shutdown_requeued: counter(&r, "bulk_recorder_shutdown_requeued_total"),
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
            self.events_unroutable.with_label_values(&[kind]);
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

    pub fn event_unroutable(&self, kind: &str) {
        self.events_unroutable.with_label_values(&[kind]).inc();
    }

    pub fn events_unroutable_count(&self, kind: &str) -> u64 {
        self.events_unroutable.with_label_values(&[kind]).get()
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
