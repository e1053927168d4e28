//! Every metric of the recorder, once: name, type (with labels or buckets) and meaning. The
//! registry is built from this table ([`super::metrics::Metrics::new`]), and a test finds it,
//! row for row, in `docs/configuration.md`, so that the code and the documentation cannot
//! disagree.

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    /// A counter per value of these labels.
    Counters(&'static [&'static str]),
    Gauge,
    Histogram(&'static [f64]),
}

#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn m(name: &'static str, kind: Kind, help: &'static str) -> MetricDef {
    MetricDef { name, kind, help }
}

/// The definition of `name`; a typo in the code is a bug, caught by every test.
pub fn def(name: &str) -> &'static MetricDef {
    METRICS
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the table of metrics"))
}

impl MetricDef {
    /// This metric's row of the documentation's metrics table.
    pub fn row(&self) -> String {
        let kind = match self.kind {
            Kind::Counter => "counter".to_string(),
            Kind::Counters(labels) => format!("counter by `{}`", labels.join("`, `")),
            Kind::Gauge => "gauge".to_string(),
            Kind::Histogram(_) => "histogram".to_string(),
        };
        format!("| `{}` | {kind} | {} |", self.name, self.help)
    }
}

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0,
];
const SIZE_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

pub static METRICS: &[MetricDef] = &[
    m(
        "bulk_recorder_transactions_attempted_total",
        Kind::Counter,
        "transaction rows the recorder tried to write (committed writes only, like every row count)",
    ),
    m(
        "bulk_recorder_transactions_inserted_total",
        Kind::Counter,
        "transaction rows inserted",
    ),
    m(
        "bulk_recorder_transactions_updated_total",
        Kind::Counter,
        "transactions moved from PENDING to a final status (APPROVED, CANCELED)",
    ),
    m(
        "bulk_recorder_transactions_ignored_total",
        Kind::Counter,
        "transaction rows already stored as sent (redeliveries, duplicates, repeated transitions)",
    ),
    m(
        "bulk_recorder_transactions_conflicting_total",
        Kind::Counter,
        "transactions not written because their id was stored with other content (the stored row is kept)",
    ),
    m(
        "bulk_recorder_operations_attempted_total",
        Kind::Counter,
        "operation rows the recorder tried to write",
    ),
    m(
        "bulk_recorder_operations_inserted_total",
        Kind::Counter,
        "operation rows inserted",
    ),
    m(
        "bulk_recorder_operations_ignored_total",
        Kind::Counter,
        "operation rows already stored as sent",
    ),
    m(
        "bulk_recorder_operations_conflicting_total",
        Kind::Counter,
        "operation rows not written: their transaction conflicts, or their id is stored with other content",
    ),
    m(
        "bulk_recorder_bulk_duration_seconds",
        Kind::Histogram(DURATION_BUCKETS),
        "time to write one bulk and have its commit durable",
    ),
    m(
        "bulk_recorder_bulk_size",
        Kind::Histogram(SIZE_BUCKETS),
        "messages per flushed bulk",
    ),
    m(
        "bulk_recorder_flushes_total",
        Kind::Counters(&["trigger"]),
        "bulks flushed, by what flushed them: `size`, `timeout`, `shutdown`",
    ),
    m(
        "bulk_recorder_fallbacks_total",
        Kind::Counter,
        "bulks refused (on data, or by the same error again and again) and written in parts",
    ),
    m(
        "bulk_recorder_messages_rejected_total",
        Kind::Counters(&["reason"]),
        "messages rejected without requeue (dead-lettered), by reason: `empty`, `too_large`, `malformed`, `invalid`, `unsupported`, `database`, `missing_parent`; counted once the rejection is done",
    ),
    m(
        "bulk_recorder_messages_skipped_total",
        Kind::Counters(&["reason"]),
        "messages acknowledged without writing anything (an empty ledger envelope), by reason",
    ),
    m(
        "bulk_recorder_messages_decoded_total",
        Kind::Counters(&["format"]),
        "messages decoded into a transaction, by format (`midaz_legacy`: a ledger message without `Version`, whose balance updates this recorder does not apply)",
    ),
    m(
        "bulk_recorder_db_statements_total",
        Kind::Counter,
        "statements sent to PostgreSQL to write bulks (BEGIN and COMMIT not counted)",
    ),
    m(
        "bulk_recorder_write_retries_total",
        Kind::Counter,
        "writes retried after a failure that was not the rows'",
    ),
    m(
        "bulk_recorder_parked_messages",
        Kind::Gauge,
        "messages waiting for a parent transaction that is not stored yet (unacknowledged)",
    ),
    m(
        "bulk_recorder_dead_letters_pending",
        Kind::Gauge,
        "rejected messages whose copy to `BULK_RECORDER_DEAD_LETTER_EXCHANGE` the broker has not confirmed yet (unacknowledged meanwhile)",
    ),
    m(
        "bulk_recorder_queue_messages",
        Kind::Gauge,
        "messages ready in the queue, as last read (a passive declare every 5 s)",
    ),
    m(
        "bulk_recorder_queue_consumers",
        Kind::Gauge,
        "consumers of the queue, as last read",
    ),
    m(
        "bulk_recorder_holding_seconds",
        Kind::Gauge,
        "how long the longest-held bulk has been held unacknowledged (a failing write, a commit not yet on the synchronous standbys, metadata or events not yet stored, a dead letter not confirmed); 0 when none is",
    ),
    m(
        "bulk_recorder_ready",
        Kind::Gauge,
        "1 while the recorder is ready (broker and database connected, nothing held), else 0",
    ),
    m(
        "bulk_recorder_dead_lettered_total",
        Kind::Counters(&["reason"]),
        "rejected messages published to `BULK_RECORDER_DEAD_LETTER_EXCHANGE` with their reason, by reason",
    ),
    m(
        "bulk_recorder_ledger_cleanup_total",
        Kind::Counters(&["result"]),
        "the ledger's Redis backup entries of persisted messages, by result: `removed`, `kept` (its status moved on), `absent`, `failed` (retried), `dropped` (given up: the ledger republishes it and the recorder finds it stored)",
    ),
    m(
        "bulk_recorder_metadata_not_stored_total",
        Kind::Counter,
        "messages carrying metadata recorded without `MONGODB_URL` (their metadata is not stored)",
    ),
    m(
        "bulk_recorder_metadata_documents_total",
        Kind::Counters(&["collection", "result"]),
        "the ledger's metadata documents upserted, by collection (`transaction`, `operation`) and result: `written`, or `existed` (a redelivery, a duplicate, a commit: left unchanged)",
    ),
    m(
        "bulk_recorder_events_published_total",
        Kind::Counters(&["kind"]),
        "the ledger's events published, routed and confirmed by the broker, by kind: `transaction`, `overdraft`",
    ),
    m(
        "bulk_recorder_events_unroutable_total",
        Kind::Counters(&["kind"]),
        "the ledger's events the broker confirmed but routed to no queue (nothing bound for their routing key: dropped, as the ledger's own are), by kind",
    ),
    m(
        "bulk_recorder_shutdown_requeued_total",
        Kind::Counter,
        "messages returned to the queue at shutdown: what could not be finished within `BULK_RECORDER_SHUTDOWN_TIMEOUT_MS`, and children still waiting for their parent",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The documentation's table of metrics (docs/configuration.md) holds exactly these rows.
    #[test]
    fn the_documentation_lists_every_metric_as_the_code_registers_it() {
        let expected: Vec<String> = METRICS.iter().map(MetricDef::row).collect();
        crate::docs_table::assert_configuration_table(
            "| metric | type | meaning |",
            "metrics",
            &expected,
        );
    }
}
