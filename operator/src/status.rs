//! The operator's writes to a BulkRecorder's status.
//!
//! Its own fields (observedGeneration, effectiveSize, replicas, readyReplicas, selector, backlog,
//! conditions, counts, lastReconcileTime) are server-side-applied under the operator's field
//! manager, so they never collide with the recorders' entries of `status.recorders`. Folding is
//! the one JSON patch: it removes entries other managers own and moves their counts into
//! `status.folded` atomically, guarded by `test` operations.
//!
//! When to write ([`decide`]): at once when anything but the counts and backlog changed; counts
//! and backlog at most once per [`REPORT_MIN_INTERVAL`] per resource (the recorders' own pace,
//! so that many busy recorders cost one write per resource, not one per report); and otherwise
//! only to refresh `lastReconcileTime` every [`HEARTBEAT`], which tells people whether an
//! operator still runs.

use std::time::Duration;

use bulk_recorder_crds::{BulkRecorder, BulkRecorderStatus, REPORT_MIN_INTERVAL};
use chrono::{DateTime, Utc};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{apply::FIELD_MANAGER, fold::Fold};

/// How old `status.lastReconcileTime` may get before an otherwise idle reconcile refreshes it:
/// with the periodic reconcile every minute, it is at most 5 minutes old while an operator runs.
pub const HEARTBEAT: Duration = Duration::from_secs(240);

/// What a reconcile does with the status it computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Apply it now.
    Now,
    /// Only counts or backlog moved, and the last write was recent: come back after this.
    Later(Duration),
    /// Nothing to write.
    No,
}

fn age(time: Option<&str>, now: DateTime<Utc>) -> Option<Duration> {
    let at = DateTime::parse_from_rfc3339(time?).ok()?;
    (now - at.with_timezone(&Utc))
        .to_std()
        .ok()
        .or(Some(Duration::ZERO))
}

/// Whether to write `next` over `current`, given how long ago this resource's status was last
/// written by this process (`None`: not since it started).
pub fn decide(
    current: &BulkRecorderStatus,
    next: &BulkRecorderStatus,
    since_last_write: Option<Duration>,
    now: DateTime<Utc>,
) -> Write {
    let counts_kept = BulkRecorderStatus {
        counts: current.counts,
        backlog: current.backlog,
        ..next.clone()
    };
    if differs(current, &counts_kept) {
        return Write::Now;
    }
    if differs(current, next) {
        return match since_last_write {
            Some(since) if since < REPORT_MIN_INTERVAL => Write::Later(REPORT_MIN_INTERVAL - since),
            _ => Write::Now,
        };
    }
    match age(current.last_reconcile_time.as_deref(), now) {
        Some(age) if age < HEARTBEAT => Write::No,
        _ => Write::Now,
    }
}

/// The operator's part of the status differs between `current` and `next` (its time aside).
pub fn differs(current: &BulkRecorderStatus, next: &BulkRecorderStatus) -> bool {
    current.observed_generation != next.observed_generation
        || current.effective_size != next.effective_size
        || current.replicas != next.replicas
        || current.ready_replicas != next.ready_replicas
        || current.selector != next.selector
        || current.backlog != next.backlog
        || current.counts != next.counts
        || !crate::conditions::same(&current.conditions, &next.conditions)
}

/// Applies the operator's fields of `next`.
pub async fn apply(
    api: &Api<BulkRecorder>,
    name: &str,
    next: &BulkRecorderStatus,
) -> Result<(), kube::Error> {
    // Unset fields are left out (a null in an apply would be a value, not an absence).
    let mut fields = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        if !value.is_null() {
            fields.insert(key.into(), value);
        }
    };
    put("observedGeneration", json!(next.observed_generation));
    put("effectiveSize", json!(next.effective_size));
    put("replicas", json!(next.replicas));
    put("readyReplicas", json!(next.ready_replicas));
    put("selector", json!(next.selector));
    put("backlog", json!(next.backlog));
    put("conditions", json!(next.conditions));
    put("counts", json!(next.counts));
    put("lastReconcileTime", json!(next.last_reconcile_time));
    let body = json!({
        "apiVersion": "bulkrecorder.io/v1alpha1",
        "kind": "BulkRecorder",
        "metadata": {"name": name},
        "status": fields,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The JSON patch that removes the retired entries of `status` and sets `status.folded`.
pub fn fold_patch(status: &BulkRecorderStatus, folding: &Fold) -> json_patch::Patch {
    let mut ops = Vec::new();
    for &index in &folding.remove {
        let entry = &status.recorders[index];
        ops.push(json!({"op": "test", "path": format!("/status/recorders/{index}/pod"), "value": entry.pod}));
        ops.push(json!({"op": "test", "path": format!("/status/recorders/{index}/startId"), "value": entry.start_id}));
        ops.push(json!({"op": "remove", "path": format!("/status/recorders/{index}")}));
    }
    ops.push(json!({"op": "add", "path": "/status/folded", "value": folding.folded}));
    serde_json::from_value(json!(ops)).expect("a JSON patch")
}

/// Sends the fold. `Ok(false)` when the list moved since it was read (a `test` failed, 422):
/// nothing was changed, and the caller reads the status again.
pub async fn fold(
    api: &Api<BulkRecorder>,
    br: &BulkRecorder,
    status: &BulkRecorderStatus,
    folding: &Fold,
) -> Result<bool, kube::Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let patch = Patch::<()>::Json(fold_patch(status, folding));
    match api.patch_status(&br.name_any(), &params, &patch).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 422 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulk_recorder_crds::Counts;

    fn at(time: &str) -> BulkRecorderStatus {
        BulkRecorderStatus {
            last_reconcile_time: Some(time.into()),
            counts: Some(Counts::default()),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_unchanged_status_is_written_only_to_refresh_its_time() {
        let fresh = at("2026-12-07T11:58:00Z");
        let next = at("2026-12-07T12:00:00Z");
        assert_eq!(decide(&fresh, &next, None, now()), Write::No);
        let old = at("2026-12-07T11:55:59Z");
        assert_eq!(decide(&old, &next, None, now()), Write::Now);
        assert_eq!(
            decide(&BulkRecorderStatus::default(), &next, None, now()),
            Write::Now,
            "never reconciled"
        );
    }

    #[test]
    fn counts_are_written_at_most_once_in_five_seconds_other_changes_at_once() {
        let current = at("2026-12-07T11:59:58Z");
        let mut counted = at("2026-12-07T12:00:00Z");
        counted.counts.as_mut().unwrap().transactions.inserted = 10;
        let recent = Some(Duration::from_secs(2));
        assert_eq!(
            decide(&current, &counted, recent, now()),
            Write::Later(Duration::from_secs(3))
        );
        assert_eq!(
            decide(&current, &counted, Some(Duration::from_secs(5)), now()),
            Write::Now
        );
        let ready = BulkRecorderStatus {
            ready_replicas: Some(1),
            ..counted
        };
        assert_eq!(decide(&current, &ready, recent, now()), Write::Now);
    }
}
