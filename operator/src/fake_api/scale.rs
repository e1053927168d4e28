//! The scale subresource of a custom resource, as the API server serves it for a CRD with
//! `subresources.scale`: an `autoscaling/v1` Scale whose `spec.replicas` is the resource's
//! `.spec.replicas`, `status.replicas` its `.status.replicas` and `status.selector` its
//! `.status.selector`. Reads and writes go through `bulkrecorders/scale` in RBAC; a write sets
//! `.spec.replicas` only, checked against the CRD's schema, bumps `generation` when it changes
//! something, honours a resourceVersion precondition, and is owned by its field manager with
//! subresource `scale` (as `kubectl scale`, the HPA controller and KEDA write it).

use serde_json::{Value, json};

use super::{
    Shared, State,
    crud::refused,
    kinds::SCALABLE,
    patch::{patched, replaced},
    request::{Answer, Incoming, Target, status},
    storage::{keep_identity, persist},
    writes::{self, Stored},
};

/// The Scale of a stored object. Like the API server's Go types, a zero `spec.replicas` and an
/// empty selector are left out.
pub(super) fn to_scale(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut scale = json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0)}});
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas != 0 {
        scale["spec"]["replicas"] = json!(replicas);
    }
    if let Some(selector) = object["status"]["selector"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        scale["status"]["selector"] = json!(selector);
    }
    scale
}

/// The range the BulkRecorder CRD's schema allows for `spec.replicas`.
fn replicas_range() -> (i64, i64) {
    let crd = serde_json::to_value(bulk_recorder_crds::crd()).expect("the CRD serializes");
    let replicas = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["replicas"];
    let bound = |key: &str| replicas[key].as_f64().map(|v| v as i64);
    (
        bound("minimum").unwrap_or(0),
        bound("maximum").unwrap_or(i64::MAX),
    )
}

/// `spec.replicas` of a Scale a client sent, or the answer refusing it.
fn requested_replicas(scale: &Value, name: &str) -> Result<i64, Answer> {
    let replicas = match &scale["spec"]["replicas"] {
        // Absent is the Go zero value.
        Value::Null => 0,
        value => value.as_i64().ok_or_else(|| {
            let message = format!("json: cannot unmarshal {value} into Go struct field ScaleSpec.spec.replicas of type int32");
            status(400, "BadRequest", &message)
        })?,
    };
    if replicas < 0 {
        let message = format!(
            "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
        );
        return Err(status(422, "Invalid", &message));
    }
    let (min, max) = replicas_range();
    if replicas < min || replicas > max {
        let (word, bound) = if replicas > max {
            ("less", max)
        } else {
            ("greater", min)
        };
        let message = format!(
            "BulkRecorder.bulkrecorder.io \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: spec.replicas in body should be {word} than or equal to {bound}"
        );
        return Err(status(422, "Invalid", &message));
    }
    Ok(replicas)
}

/// The Scale the request asks for (a replace, a patch, or an apply of one).
fn wanted(current: &Value, verb: &str, incoming: &Incoming, name: &str) -> Result<Value, Answer> {
    let body = incoming.body.clone();
    match verb {
        "update" => {
            let sent = body["metadata"]["name"].as_str().unwrap_or(name);
            if sent != name {
                let message = format!(
                    "the name of the object ({sent}) does not match the name on the URL ({name})"
                );
                return Err(status(400, "BadRequest", &message));
            }
            replaced(current, body).map_err(refused)
        }
        "patch" if incoming.content_type.starts_with("application/apply-patch") => {
            // Applied fields merge into the current Scale; ownership is settled on the object.
            let mut merged = current.clone();
            json_patch::merge(&mut merged, &body);
            Ok(merged)
        }
        "patch" => patched(current.clone(), &incoming.content_type, body).map_err(refused),
        _ => Err(status(405, "MethodNotAllowed", "not supported by the fake")),
    }
}

/// The resource after the write: server-side apply of `spec.replicas` for an apply (conflicting
/// with another manager's value unless forced), an update otherwise.
fn written(existing: &Stored, replicas: i64, incoming: &Incoming) -> Result<Stored, Answer> {
    let manager = incoming.query.field_manager.as_deref().unwrap_or("");
    if !incoming.content_type.starts_with("application/apply-patch") {
        let mut candidate = existing.object.clone();
        candidate["spec"]["replicas"] = json!(replicas);
        let manager = if manager.is_empty() {
            "unknown"
        } else {
            manager
        };
        return Ok(writes::update(Some(existing), candidate, manager, "scale"));
    }
    if manager.is_empty() {
        let message = "fieldManager is required for apply requests";
        return Err(status(400, "BadRequest", message));
    }
    let meta = &existing.object["metadata"];
    let config = json!({"apiVersion": existing.object["apiVersion"], "kind": existing.object["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": replicas}});
    writes::apply(
        Some(existing),
        &config,
        manager,
        "scale",
        incoming.query.force,
    )
    .map_err(refused)
}

pub(super) fn serve(
    state: &mut State,
    shared: &Shared,
    target: &Target,
    verb: &'static str,
    incoming: &Incoming,
) -> Answer {
    let not_found = |what: &str| status(404, "NotFound", what);
    let Some(name) = target.name.clone() else {
        return not_found("the server could not find the requested resource");
    };
    if !SCALABLE.contains(&(target.group.as_str(), target.resource.as_str())) {
        return not_found("the server could not find the requested resource");
    }
    let key = target.key(&name);
    let Some(existing) = state.objects.get(&key).cloned() else {
        return not_found(&format!(
            "{}.{} \"{name}\" not found",
            target.resource, target.group
        ));
    };
    let current = to_scale(&existing.object);
    if verb == "get" {
        return (200, current);
    }
    let result = wanted(&current, verb, incoming, &name)
        .and_then(|scale| requested_replicas(&scale, &name))
        .and_then(|replicas| written(&existing, replicas, incoming));
    match result {
        Ok(mut next) => {
            keep_identity(&existing.object, &mut next.object);
            (200, to_scale(&persist(state, shared, &key, next, false)))
        }
        Err(answer) => answer,
    }
}
