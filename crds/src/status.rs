//! What the operator and the recorders report.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The observed state of a BulkRecorder.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRecorderStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Messages per bulk the recorders use (spec.size, or workers * prefetch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_size: Option<i64>,
    /// Recorder pods the Deployment has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Recorder pods that are ready (connected to the broker and the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The recorder pods' label selector (the scale subresource's, which HorizontalPodAutoscalers
    /// and KEDA require).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Ready messages in the queue, as last measured by a recorder (the entry of `recorders`
    /// that reported last with a measurement). Unset while no recorder runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// Ready, Progressing and Degraded; PodMonitorReady while spec.monitoring.podMonitor is true.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Rows written by every recorder that ever ran for this resource: `folded` plus the
    /// entries in `recorders`. Only grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// Counts of recorder processes that are gone (their pod deleted, or their container
    /// restarted), folded in exactly once when their entry was removed from `recorders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded: Option<Counts>,
    /// When the operator last reconciled the resource (RFC 3339). Refreshed at least every 5
    /// minutes while an operator runs (the Reconciled column shows its age): an older time means
    /// no operator is running, and the rest of the status is frozen since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_time: Option<String>,
    /// One entry per recorder process, written by that process only (its own field manager).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pod", "startId"]))]
    pub recorders: Vec<RecorderReport>,
}

/// Cumulative counts of one recorder process.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecorderReport {
    /// The pod the recorder runs in.
    pub pod: String,
    /// Identifies the process inside the pod: a restarted container starts a new entry with
    /// its counters at zero.
    pub start_id: String,
    /// Transaction rows.
    pub transactions: RowCounts,
    /// Operation rows.
    pub operations: RowCounts,
    /// Messages this process rejected without requeue (dead-lettered, or dropped by the queue's
    /// policy), every reason together.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub rejected: i64,
    /// When the recorder last reported (RFC 3339).
    pub last_report: String,
    /// Ready messages in the queue when the recorder last measured it (one queue, so every
    /// recorder of the resource measures the same number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backlog: Option<i64>,
}

/// Counts for both tables, and the messages rejected.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Counts {
    /// Transaction rows.
    pub transactions: RowCounts,
    /// Operation rows.
    pub operations: RowCounts,
    /// Messages rejected without requeue (dead-lettered, or dropped by the queue's policy), every
    /// reason together; the recorders' bulk_recorder_messages_rejected_total says which.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub rejected: i64,
}

/// Rows of one table: every attempted row is exactly one of inserted, updated, conflicting or
/// ignored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RowCounts {
    /// Rows the recorders tried to write.
    #[schemars(range(min = 0))]
    pub attempted: i64,
    /// Rows actually inserted (committed).
    #[schemars(range(min = 0))]
    pub inserted: i64,
    /// Rows already stored as sent (redeliveries, duplicates, repeated transitions).
    #[schemars(range(min = 0))]
    pub ignored: i64,
    /// Stored PENDING transactions moved to a final status (transactions only).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub updated: i64,
    /// Ids stored with other content that were no valid transition: the stored row was kept
    /// (a producer reusing ids). Worth an alert when it grows.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub conflicting: i64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, rhs: Self) {
        self.attempted += rhs.attempted;
        self.inserted += rhs.inserted;
        self.ignored += rhs.ignored;
        self.updated += rhs.updated;
        self.conflicting += rhs.conflicting;
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, rhs: Self) {
        self.transactions += rhs.transactions;
        self.operations += rhs.operations;
        self.rejected += rhs.rejected;
    }
}

impl RecorderReport {
    pub fn counts(&self) -> Counts {
        Counts {
            transactions: self.transactions,
            operations: self.operations,
            rejected: self.rejected,
        }
    }
}
