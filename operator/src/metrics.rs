//! The operator's own metrics: reconciles, failures and their duration.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounter,
    pub failures: IntCounter,
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let reconciles =
            IntCounter::new("bulk_recorder_operator_reconciles_total", "Reconciles run").unwrap();
        let failures = IntCounter::new(
            "bulk_recorder_operator_reconcile_errors_total",
            "Reconciles that failed",
        )
        .unwrap();
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "bulk_recorder_operator_reconcile_duration_seconds",
                "Time per reconcile",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .unwrap();
        registry.register(Box::new(reconciles.clone())).unwrap();
        registry.register(Box::new(failures.clone())).unwrap();
        registry.register(Box::new(duration.clone())).unwrap();
        Self {
            registry,
            reconciles,
            failures,
            duration,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("utf-8")
    }
}
