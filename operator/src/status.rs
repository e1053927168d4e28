//! The operator's writes to a BulkRecorder's status.
//!
//! Its own fields (observedGeneration, effectiveSize, replicas, readyReplicas, selector, backlog,
//! conditions, counts) are server-side-applied under the operator's field manager, so they never collide
//! with the recorders' entries of `status.recorders`. Folding is the one JSON patch: it removes
//! entries other managers own and moves their counts into `status.folded` atomically, guarded by
//! `test` operations.

use bulk_recorder_crds::{BulkRecorder, BulkRecorderStatus};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{apply::FIELD_MANAGER, fold::Fold};

/// The operator's part of the status differs between `current` and `next`.
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
