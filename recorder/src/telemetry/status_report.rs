//! Reporting this recorder's counts into its BulkRecorder's status, when it runs in a cluster.
//!
//! Each process server-side-applies only its own entry of `status.recorders` (keyed by pod and
//! start id) under a field manager of its own incarnation
//! ([`bulk_recorder_crds::report_field_manager`]): an apply removes the entries its manager
//! applied before and leaves out, so a manager shared by a pod's incarnations would delete the
//! previous incarnation's counts. The operator folds the entries of processes that are gone into
//! the totals.
//!
//! Reports go out on change, not on a clock: every [`REPORT_POLL`] the process compares what it
//! would report with what it last reported, and applies its entry when they differ and the last
//! attempt is at least [`REPORT_MIN_INTERVAL`] old. A bulk shows in the status within a few
//! seconds, a busy recorder writes at most once in five seconds, and an idle one writes nothing.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bulk_recorder_crds::{BulkRecorder, REPORT_MIN_INTERVAL, REPORT_POLL, report_field_manager};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::{sync::watch, time::Instant};

use crate::{
    config::ReportTarget,
    telemetry::counts::{RowCounts, WriteCounts},
    telemetry::metrics::Metrics,
};

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

/// What a report says, apart from its time: a report is due when this changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    pub totals: WriteCounts,
    /// Messages rejected without requeue, every reason together.
    pub rejected: u64,
    /// Ready messages in the queue as last read (none before the first read).
    pub backlog: Option<u64>,
}

/// What this process reports about itself.
pub struct Snapshot {
    pub reported: Reported,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The apply body: this process's entry and nothing else.
pub fn entry_patch(target: &ReportTarget, start_id: &str, snapshot: &Snapshot) -> Value {
    let reported = &snapshot.reported;
    let mut entry = json!({
        "pod": target.pod,
        "startId": start_id,
        "transactions": rows(reported.totals.transactions),
        "operations": rows(reported.totals.operations),
        "rejected": reported.rejected,
        "lastReport": snapshot.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(backlog) = reported.backlog {
        entry["backlog"] = json!(backlog);
    }
    json!({
        "apiVersion": "bulkrecorder.io/v1alpha1",
        "kind": "BulkRecorder",
        "metadata": {"name": target.name},
        "status": {"recorders": [entry]}
    })
}

/// Decides when a report is due: on change, at most once per `min_interval` (a failed report
/// counts as an attempt, so an unreachable API server is asked again after the same pause).
#[derive(Debug)]
pub struct Pacer {
    min_interval: Duration,
    last_reported: Option<Reported>,
    last_attempt: Option<Instant>,
}

impl Pacer {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_reported: None,
            last_attempt: None,
        }
    }

    /// Whether `current` should be reported at `now`: the first report is due at once (it
    /// makes the entry, and the backlog, visible), later ones when something changed.
    pub fn due(&self, current: &Reported, now: Instant) -> bool {
        let changed = self.last_reported.as_ref() != Some(current);
        let rested = self
            .last_attempt
            .is_none_or(|at| now.duration_since(at) >= self.min_interval);
        changed && rested
    }

    pub fn attempted(&mut self, now: Instant) {
        self.last_attempt = Some(now);
    }

    pub fn succeeded(&mut self, reported: Reported) {
        self.last_reported = Some(reported);
    }
}

/// Reports to one BulkRecorder.
pub struct Reporter {
    api: Api<BulkRecorder>,
    target: ReportTarget,
    start_id: String,
    metrics: Arc<Metrics>,
    pacer: Mutex<Pacer>,
}

impl Reporter {
    pub fn new(client: Client, target: ReportTarget, metrics: Arc<Metrics>) -> Self {
        Self {
            api: Api::namespaced(client, &target.namespace),
            start_id: start_id(),
            target,
            metrics,
            pacer: Mutex::new(Pacer::new(REPORT_MIN_INTERVAL)),
        }
    }

    fn current(&self) -> Reported {
        Reported {
            totals: self.metrics.totals(),
            rejected: self.metrics.rejected_total(),
            backlog: self.metrics.backlog(),
        }
    }

    /// Applies this process's entry with its current counts, whether or not they changed.
    pub async fn report(&self) -> Result<(), kube::Error> {
        self.send(self.current()).await
    }

    async fn send(&self, reported: Reported) -> Result<(), kube::Error> {
        self.pacer.lock().expect("lock").attempted(Instant::now());
        let snapshot = Snapshot {
            reported,
            now: chrono::Utc::now(),
        };
        let body = entry_patch(&self.target, &self.start_id, &snapshot);
        let manager = report_field_manager(&self.target.pod, &self.start_id);
        let params = PatchParams::apply(&manager).force();
        self.api
            .patch_status(&self.target.name, &params, &Patch::Apply(&body))
            .await?;
        self.pacer.lock().expect("lock").succeeded(reported);
        Ok(())
    }

    /// Reports whenever the counts, rejections or backlog change (see [`Pacer`]) until `stop`
    /// turns true; the caller reports once more after draining, so the final counts are the
    /// committed ones.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(REPORT_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let current = self.current();
            if !self
                .pacer
                .lock()
                .expect("lock")
                .due(&current, Instant::now())
            {
                continue;
            }
            if let Err(error) = self.send(current).await {
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
            reported: Reported {
                totals,
                rejected: 3,
                backlog: None,
            },
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
        assert_eq!(entry["rejected"], 3);
        assert_eq!(entry["lastReport"], "2026-11-24T10:00:00Z");
        assert!(entry.get("backlog").is_none(), "not read yet: not claimed");
        let read = Snapshot {
            reported: Reported {
                backlog: Some(1200),
                ..snapshot.reported
            },
            ..snapshot
        };
        assert_eq!(
            entry_patch(&target, "s1", &read)["status"]["recorders"][0]["backlog"],
            1200
        );
    }

    /// Simulates a recorder polled every second: `change(second)` says whether its counts
    /// moved in that second. Returns the seconds at which it reported.
    fn reports(seconds: u64, change: impl Fn(u64) -> bool) -> Vec<u64> {
        let start = Instant::now();
        let mut pacer = Pacer::new(REPORT_MIN_INTERVAL);
        let mut current = Reported::default();
        let mut sent = Vec::new();
        for second in 0..seconds {
            if change(second) {
                current.totals.transactions.attempted += 1;
            }
            let now = start + Duration::from_secs(second);
            if pacer.due(&current, now) {
                pacer.attempted(now);
                pacer.succeeded(current);
                sent.push(second);
            }
        }
        sent
    }

    #[test]
    fn a_busy_recorder_reports_at_most_once_in_five_seconds() {
        let sent = reports(60, |_| true);
        assert_eq!(sent.len(), 12, "{sent:?}");
        assert!(sent.windows(2).all(|w| w[1] - w[0] >= 5), "{sent:?}");
    }

    #[test]
    fn an_idle_recorder_reports_nothing_and_a_change_goes_out_at_once() {
        // Busy for 10 s, idle for two minutes, then one bulk at second 130.
        let sent = reports(140, |s| s < 10 || s == 130);
        let idle: Vec<_> = sent.iter().filter(|s| (15..130).contains(*s)).collect();
        assert!(idle.is_empty(), "reports while idle: {sent:?}");
        assert_eq!(sent.last(), Some(&130), "the next bulk within a poll");
        // The last change of the busy spell (second 9) is not lost: it goes out at 10.
        assert!(sent.contains(&10), "{sent:?}");
    }

    #[test]
    fn a_failed_report_is_retried_after_the_pause() {
        let start = Instant::now();
        let mut pacer = Pacer::new(REPORT_MIN_INTERVAL);
        let current = Reported {
            rejected: 1,
            ..Default::default()
        };
        assert!(pacer.due(&current, start), "the first report at once");
        pacer.attempted(start);
        assert!(!pacer.due(&current, start + Duration::from_secs(4)));
        assert!(pacer.due(&current, start + Duration::from_secs(5)));
    }

    #[test]
    fn each_process_gets_a_new_start_id() {
        assert_ne!(start_id(), start_id());
    }
}
