//! What is stored and how it is rendered: resourceVersions, uids, creation, `generation` moving
//! with the spec only, no-op writes not persisted, the change log watches read, and
//! `managedFields` as the API server shows them.

use serde_json::{Value, json};

use super::{
    Change, ObjectKey, Shared, State,
    writes::{self, Managers, Stored},
};

/// The object with its `managedFields` (managers only; the field sets stay internal).
pub(super) fn rendered(stored: &Stored) -> Value {
    let mut object = stored.object.clone();
    let entries: Vec<Value> = stored
        .managers
        .keys()
        .map(|m| {
            let mut e =
                json!({"manager": m.name, "operation": m.operation, "fieldsType": "FieldsV1"});
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if !entries.is_empty() {
        object["metadata"]["managedFields"] = Value::Array(entries);
    }
    object
}

pub(super) fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

/// Identity fields only the server sets.
pub(super) fn keep_identity(before: &Value, after: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
        "name",
        "namespace",
    ] {
        let old = before["metadata"][field].clone();
        if let Some(meta) = after["metadata"].as_object_mut() {
            if old.is_null() {
                meta.remove(field);
            } else {
                meta.insert(field.into(), old);
            }
        }
    }
}

/// Writes a CPU quantity the way the API server stores it for built-in kinds ("0.5" becomes
/// "500m"), so that a client comparing what it sent with what is stored sees a difference.
fn canonical_quantities(object: &mut Value) {
    let Some(containers) = object
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for container in containers {
        for part in ["requests", "limits"] {
            if let Some(cpu) = container.pointer_mut(&format!("/resources/{part}/cpu"))
                && let Some(text) = cpu.as_str()
                && text.contains('.')
                && let Ok(cores) = text.parse::<f64>()
            {
                *cpu = json!(format!("{}m", (cores * 1000.0).round() as i64));
            }
        }
    }
}

/// Stores `next` at `key` unless nothing changed; returns the object as stored.
pub(super) fn persist(
    state: &mut State,
    shared: &Shared,
    key: &ObjectKey,
    mut next: Stored,
    create: bool,
) -> Value {
    if key.group == "apps" {
        canonical_quantities(&mut next.object);
    }
    let before = state.objects.get(key).cloned();
    if let Some(before) = &before {
        let same_object = before.object == next.object;
        let same_managers: Managers = before.managers.clone();
        if same_object && same_managers == next.managers {
            return rendered(before);
        }
    }
    state.rv += 1;
    let meta = next.object["metadata"]
        .as_object_mut()
        .expect("objects have metadata");
    meta.insert("resourceVersion".into(), json!(state.rv.to_string()));
    if create || before.is_none() {
        state.uids += 1;
        meta.entry("uid")
            .or_insert_with(|| json!(format!("00000000-0000-4000-8000-{:012}", state.uids)));
        meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        meta.insert("generation".into(), json!(1));
        meta.insert("namespace".into(), json!(key.namespace));
        if key.namespace.is_empty() {
            meta.remove("namespace");
        }
    } else if let Some(before) = &before
        && writes::spec_changed(&before.object, &next.object)
    {
        let generation = before.object["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0)
            + 1;
        next.object["metadata"]["generation"] = json!(generation);
    }
    let kind = if before.is_some() {
        "MODIFIED"
    } else {
        "ADDED"
    };
    state.changes.push(Change {
        rv: state.rv,
        group: key.group.clone(),
        resource: key.resource.clone(),
        namespace: key.namespace.clone(),
        kind,
        object: next.object.clone(),
    });
    let out = rendered(&next);
    state.objects.insert(key.clone(), next);
    shared.changes.send_replace(state.rv);
    out
}

pub(super) fn remove(state: &mut State, shared: &Shared, key: &ObjectKey) -> Option<Value> {
    let stored = state.objects.remove(key)?;
    state.rv += 1;
    state.changes.push(Change {
        rv: state.rv,
        group: key.group.clone(),
        resource: key.resource.clone(),
        namespace: key.namespace.clone(),
        kind: "DELETED",
        object: stored.object.clone(),
    });
    shared.changes.send_replace(state.rv);
    Some(stored.object)
}
