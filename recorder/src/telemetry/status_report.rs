//! Reporting this recorder's counts into its BulkRecorder's status, when it runs in a cluster.
//!
//! Each process server-side-applies only its own entry of `status.recorders` (keyed by pod and
//! start id) under a field manager of its own incarnation
//! ([`bulk_recorder_crds::report_field_manager`]): an apply removes the entries its manager
//! applied before and leaves out, so a manager shared by a pod's incarnations would delete the
//! previous incarnation's counts. The operator folds the entries of processes that are gone into
//! the totals.

use std::{sync::Arc, time::Duration};

use bulk_recorder_crds::{BulkRecorder, REPORT_INTERVAL, report_field_manager};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    config::ReportTarget,
    telemetry::counts::{RowCounts, WriteCounts},
    telemetry::metrics::Metrics,
};

/// The wait before the next report: [`REPORT_INTERVAL`] ±20%, so that pods started together
/// drift apart; `first` is a random part of it, so that they do not start together either.
pub fn next_delay(first: bool) -> Duration {
    if first {
        REPORT_INTERVAL.mul_f64(fastrand::f64())
    } else {
        REPORT_INTERVAL.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

/// Identifies this process among the incarnations of its pod (a restarted container starts
/// over at zero and must not overwrite the previous entry).
pub fn start_id() -> String {
    format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        fastrand::u32(..)
    )
}

fn rows(r: RowCounts) -> Value {
    json!({
        "attempted": r.attempted,
        "inserted": r.inserted,
        "ignored": r.ignored,
        "updated": r.updated,
        "conflicting": r.conflicting,
    })
}

/// What this process reports about itself.
pub struct Snapshot {
    pub totals: WriteCounts,
    /// Ready messages in the queue as last read (none before the first read).
    pub backlog: Option<u64>,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The apply body: this process's entry and nothing else.
pub fn entry_patch(target: &ReportTarget, start_id: &str, snapshot: &Snapshot) -> Value {
    let mut entry = json!({
        "pod": target.pod,
        "startId": start_id,
        "transactions": rows(snapshot.totals.transactions),
        "operations": rows(snapshot.totals.operations),
        "lastReport": snapshot.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(backlog) = snapshot.backlog {
        entry["backlog"] = json!(backlog);
    }
    json!({
        "apiVersion": "bulkrecorder.io/v1alpha1",
        "kind": "BulkRecorder",
        "metadata": {"name": target.name},
        "status": {"recorders": [entry]}
    })
}

/// Reports to one BulkRecorder.
pub struct Reporter {
    api: Api<BulkRecorder>,
    target: ReportTarget,
    start_id: String,
    metrics: Arc<Metrics>,
}

impl Reporter {
    pub fn new(client: Client, target: ReportTarget, metrics: Arc<Metrics>) -> Self {
        Self {
            api: Api::namespaced(client, &target.namespace),
            start_id: start_id(),
            target,
            metrics,
        }
    }

    /// Applies this process's entry with its current counts.
    pub async fn report(&self) -> Result<(), kube::Error> {
        let snapshot = Snapshot {
            totals: self.metrics.totals(),
            backlog: self.metrics.backlog(),
            now: chrono::Utc::now(),
        };
        let body = entry_patch(&self.target, &self.start_id, &snapshot);
        let manager = report_field_manager(&self.target.pod, &self.start_id);
        let params = PatchParams::apply(&manager).force();
        self.api
            .patch_status(&self.target.name, &params, &Patch::Apply(&body))
            .await?;
        Ok(())
    }

    /// Reports about every [`REPORT_INTERVAL`] until `stop` turns true; the caller reports once
    /// more after draining, so the final counts are the committed ones.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut first = true;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(next_delay(first)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            first = false;
            if let Err(error) = self.report().await {
                tracing::warn!(%error, resource = self.target.name, "could not report counts to the BulkRecorder status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_carries_only_this_processs_entry() {
        let target = ReportTarget {
            name: "orders".into(),
            namespace: "ledger".into(),
            pod: "orders-7d9f-abcde".into(),
        };
        let totals = WriteCounts {
            transactions: RowCounts::new(10, 8),
            operations: RowCounts::new(50, 40),
        };
        let snapshot = Snapshot {
            totals,
            backlog: None,
            now: "2026-11-24T10:00:00Z".parse().unwrap(),
        };
        let patch = entry_patch(&target, "s1", &snapshot);
        assert_eq!(patch["metadata"], json!({"name": "orders"}));
        assert_eq!(
            patch["status"].as_object().unwrap().len(),
            1,
            "no other status field is claimed"
        );
        let entry = &patch["status"]["recorders"][0];
        assert_eq!(entry["pod"], "orders-7d9f-abcde");
        assert_eq!(entry["startId"], "s1");
        assert_eq!(
            entry["transactions"],
            json!({"attempted": 10, "inserted": 8, "ignored": 2, "updated": 0, "conflicting": 0})
        );
        assert_eq!(entry["lastReport"], "2026-11-24T10:00:00Z");
        assert!(entry.get("backlog").is_none(), "not read yet: not claimed");
        let read = Snapshot {
            backlog: Some(1200),
            ..snapshot
        };
        assert_eq!(
            entry_patch(&target, "s1", &read)["status"]["recorders"][0]["backlog"],
            1200
        );
    }

    #[test]
    fn reports_are_spread_around_the_interval() {
        for _ in 0..100 {
            let next = next_delay(false);
            assert!(next >= REPORT_INTERVAL.mul_f64(0.8) && next <= REPORT_INTERVAL.mul_f64(1.2));
            assert!(next_delay(true) <= REPORT_INTERVAL);
        }
    }

    #[test]
    fn each_process_gets_a_new_start_id() {
        assert_ne!(start_id(), start_id());
    }
}
