//! How a write changes a stored object, as the API server does it: server-side apply with
//! field managers, updates (merge patch, JSON patch, replace, create) that take ownership of
//! what they change, the status subresource that writes only `status` (and the main resource
//! that never does), `generation` that moves with the spec only, and no-op writes that are not
//! persisted.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::fields::{self, FieldSet, Path};

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Manager {
    pub name: String,
    /// `Apply` or `Update`.
    pub operation: &'static str,
    /// `""` for the main resource, `status` for the status subresource.
    pub subresource: String,
}

pub type Managers = BTreeMap<Manager, FieldSet>;

/// An object as stored: its JSON and who owns which of its fields.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    pub object: Value,
    pub managers: Managers,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// 409: fields owned by other managers with other values (an apply without force).
    Conflict(String),
    /// 422: the patch does not apply (a failed JSON patch `test`, a bad path).
    Invalid(String),
}

/// The part of an object a request may write: `status` on the status subresource, the rest on
/// the main resource.
fn in_scope(subresource: &str) -> (&'static str, bool) {
    ("status", subresource == "status")
}

/// Server-side apply of `config` by `manager` to `stored` (None: the object does not exist).
pub fn apply(
    stored: Option<&Stored>,
    config: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
) -> Result<Stored, Refusal> {
    let (top, inside) = in_scope(subresource);
    let me = Manager {
        name: manager.into(),
        operation: "Apply",
        subresource: subresource.into(),
    };
    let config_fields = fields::scoped(
        fields::field_set(&fields::without_identity(config)),
        top,
        inside,
    );
    let mut next = stored.cloned().unwrap_or_else(|| Stored {
        object: json!({
            "apiVersion": config["apiVersion"],
            "kind": config["kind"],
            "metadata": {"name": config["metadata"]["name"], "namespace": config["metadata"]["namespace"]},
        }),
        managers: Managers::new(),
    });

    let conflicts = conflicts(&next, &me, &config_fields, config);
    if !conflicts.is_empty() && !force {
        let names: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("{}: {p:?}", m.name))
            .collect();
        return Err(Refusal::Conflict(format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            names.join("; ")
        )));
    }
    // With force, this manager takes the conflicting fields from the others.
    for (other, path) in &conflicts {
        if let Some(set) = next.managers.get_mut(other) {
            set.remove(path);
        }
    }

    let scoped_config = fields::part(config, top, inside);
    let mut merged = next.object.clone();
    fields::merge(&mut merged, &fields::without_identity(&scoped_config));

    remove_left_out(&mut merged, &next.managers, &me, &config_fields);
    next.object = merged;
    next.managers.insert(me, config_fields);
    settle(&mut next);
    Ok(next)
}

/// Fields another manager owns, with a value this apply would change.
fn conflicts(
    stored: &Stored,
    me: &Manager,
    config_fields: &FieldSet,
    config: &Value,
) -> Vec<(Manager, Path)> {
    let mut conflicts = Vec::new();
    for (other, set) in stored.managers.iter().filter(|(m, _)| *m != me) {
        for path in set.intersection(config_fields) {
            if fields::get(&stored.object, path) != fields::get(config, path) {
                conflicts.push((other.clone(), path.clone()));
            }
        }
    }
    conflicts
}

/// What `me` applied before and leaves out now goes, unless somebody else owns it (or something
/// inside it).
fn remove_left_out(
    merged: &mut Value,
    managers: &Managers,
    me: &Manager,
    config_fields: &FieldSet,
) {
    let prior = managers.get(me).cloned().unwrap_or_default();
    // Outermost first, so that a list-map entry goes whole (its key fields with it).
    let mut removed: Vec<_> = prior.difference(config_fields).cloned().collect();
    removed.sort_by_key(|p| p.len());
    for path in removed {
        if fields::get(merged, &path).is_none() {
            continue;
        }
        let owned_elsewhere = managers
            .iter()
            .filter(|(m, _)| *m != me)
            .any(|(_, set)| set.iter().any(|p| fields::covers(&path, p)));
        if !owned_elsewhere {
            fields::remove(merged, &path);
        }
    }
}

/// An update (anything but apply) by `manager` that turns the object into `candidate`: only
/// the request's scope is taken from it, and the manager owns what it changed.
pub fn update(
    stored: Option<&Stored>,
    candidate: Value,
    manager: &str,
    subresource: &str,
) -> Stored {
    let (top, inside) = in_scope(subresource);
    let before = stored.cloned().unwrap_or_default();
    let mut object = if stored.is_none() {
        candidate.clone()
    } else {
        before.object.clone()
    };
    if let (Some(target), Some(source)) = (object.as_object_mut(), candidate.as_object()) {
        if stored.is_some() {
            // Keep the other scope as it was: the status subresource writes only `status`,
            // the main resource never does.
            target.retain(|k, _| (k == top) != inside || k == "apiVersion" || k == "kind");
            for (k, v) in source {
                if (k == top) == inside && k != "apiVersion" && k != "kind" {
                    target.insert(k.clone(), v.clone());
                }
            }
            if inside {
                target.insert("metadata".into(), before.object["metadata"].clone());
            }
        } else if !inside {
            target.remove(top);
        }
    }
    let mut next = Stored {
        object,
        managers: before.managers.clone(),
    };
    let written = fields::scoped(fields::written(&before.object, &next.object), top, inside);
    if !written.is_empty() {
        for set in next.managers.values_mut() {
            set.retain(|p| !written.contains(p));
        }
        next.managers
            .entry(Manager {
                name: manager.into(),
                operation: "Update",
                subresource: subresource.into(),
            })
            .or_default()
            .extend(written);
    }
    settle(&mut next);
    next
}

/// Drops ownership of fields that no longer exist, and managers that own nothing.
fn settle(stored: &mut Stored) {
    let object = &stored.object;
    for set in stored.managers.values_mut() {
        set.retain(|p| fields::get(object, p).is_some());
    }
    stored.managers.retain(|_, set| !set.is_empty());
}

/// True when the spec (anything outside `metadata` and `status`) differs: what moves
/// `metadata.generation`.
pub fn spec_changed(before: &Value, after: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        v
    };
    strip(before) != strip(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(start: &str, inserted: i64) -> Value {
        json!({"apiVersion": "bulkrecorder.io/v1alpha1", "kind": "BulkRecorder",
            "metadata": {"name": "orders"},
            "status": {"recorders": [{"pod": "rec-0", "startId": start, "inserted": inserted}]}})
    }

    fn stored() -> Stored {
        Stored {
            object: json!({"apiVersion": "bulkrecorder.io/v1alpha1", "kind": "BulkRecorder",
                "metadata": {"name": "orders", "namespace": "ledger"}, "spec": {"workers": 5}}),
            managers: Managers::new(),
        }
    }

    /// The behaviour behind issue 11's first item, as a real API server shows it.
    #[test]
    fn an_apply_that_leaves_out_an_entry_it_applied_before_removes_it() {
        let first = apply(Some(&stored()), &entry("s1", 300), "rec-0", "status", true).unwrap();
        let second = apply(Some(&first), &entry("s2", 200), "rec-0", "status", true).unwrap();
        let entries = second.object["status"]["recorders"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "the first incarnation's entry is gone");
        assert_eq!(entries[0]["startId"], "s2");

        // Two managers: both entries stay.
        let other = apply(Some(&first), &entry("s2", 200), "rec-0-s2", "status", true).unwrap();
        assert_eq!(
            other.object["status"]["recorders"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_field_left_out_of_the_next_apply_is_removed_and_a_canonicalised_one_is_not_a_change() {
        let with = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "r", "resources": {"limits": {"cpu": "500m"}}}]}}}});
        let without = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "r"}]}}}});
        let first = apply(None, &with, "op", "", true).unwrap();
        let second = apply(Some(&first), &without, "op", "", true).unwrap();
        assert_eq!(
            second.object["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "r"})
        );
    }

    #[test]
    fn the_status_subresource_writes_only_the_status_and_the_main_resource_never_does() {
        let mut candidate = stored().object;
        candidate["spec"]["workers"] = json!(9);
        candidate["status"] = json!({"replicas": 1});
        let via_status = update(Some(&stored()), candidate.clone(), "m", "status");
        assert_eq!(via_status.object["spec"]["workers"], 5);
        assert_eq!(via_status.object["status"]["replicas"], 1);
        let via_main = update(Some(&stored()), candidate, "m", "");
        assert_eq!(via_main.object["spec"]["workers"], 9);
        assert!(via_main.object.get("status").is_none());
    }

    #[test]
    fn an_apply_without_force_conflicts_with_another_managers_value() {
        let first = apply(Some(&stored()), &entry("s1", 1), "a", "status", true).unwrap();
        let refused = apply(Some(&first), &entry("s1", 2), "b", "status", false);
        assert!(matches!(refused, Err(Refusal::Conflict(_))), "{refused:?}");
    }
}
