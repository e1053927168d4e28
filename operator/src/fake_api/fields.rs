//! Field ownership as the API server tracks it for server-side apply (structured-merge-diff),
//! reduced to the shapes the operator and the recorders write.
//!
//! A field set holds the leaves an actor wrote and, for lists of type `map`, one element per
//! entry (named by its keys). What matters for the tests: an apply by a manager that omits a
//! field or a list entry it applied before removes it, unless another manager owns it too; and
//! lists not declared as maps are atomic (replaced whole).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a path: an object field, or the entry of a list-map with these key values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Elem {
    Field(String),
    Key(String),
}

pub type Path = Vec<Elem>;
pub type FieldSet = BTreeSet<Path>;

/// The built-in kinds' lists of type `map` and their keys, by the field names leading to them:
/// Kubernetes' OpenAPI marks them (`x-kubernetes-list-type` and `patchMergeKey`s), but
/// k8s-openapi's types do not carry that, so the ones the operator writes are listed here. The
/// BulkRecorder's own come from its CRD ([`crd_list_maps`]). Every other list is atomic
/// (replaced whole), as in the real schemas.
const BUILT_IN_LIST_MAPS: &[(&str, &[&str])] = &[
    ("metadata.ownerReferences", &["uid"]),
    ("spec.template.spec.containers", &["name"]),
    ("spec.template.spec.initContainers", &["name"]),
    ("spec.template.spec.containers.env", &["name"]),
    (
        "spec.template.spec.containers.ports",
        &["containerPort", "protocol"],
    ),
    ("spec.template.spec.containers.volumeMounts", &["mountPath"]),
    ("spec.template.spec.volumes", &["name"]),
    ("spec.template.spec.imagePullSecrets", &["name"]),
    ("spec.ports", &["port", "protocol"]),
];

/// The lists the BulkRecorder CRD declares `x-kubernetes-list-type: map`, with their
/// `x-kubernetes-list-map-keys`, by the field names leading to them: read from the generated
/// CRD, so the fake keys entries exactly as a real API server with that CRD does.
pub fn crd_list_maps() -> &'static [(String, Vec<String>)] {
    static MAPS: std::sync::OnceLock<Vec<(String, Vec<String>)>> = std::sync::OnceLock::new();
    MAPS.get_or_init(|| {
        let crd = serde_json::to_value(bulk_recorder_crds::crd()).expect("the CRD serializes");
        let mut maps = Vec::new();
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            schema_list_maps(
                &version["schema"]["openAPIV3Schema"],
                &mut Vec::new(),
                &mut maps,
            );
        }
        maps
    })
}

fn schema_list_maps(schema: &Value, names: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    if schema["x-kubernetes-list-type"] == "map" {
        let keys = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .into_iter()
            .flatten();
        let keys = keys.filter_map(Value::as_str).map(String::from).collect();
        out.push((names.join("."), keys));
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        names.push(name.clone());
        schema_list_maps(property, names, out);
        names.pop();
    }
    // A list's entries are named by the list's path (see `collect`).
    schema_list_maps_of_items(schema, names, out);
}

fn schema_list_maps_of_items(
    schema: &Value,
    names: &mut Vec<String>,
    out: &mut Vec<(String, Vec<String>)>,
) {
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        schema_list_maps(items, names, out);
    }
}

fn list_keys(names: &[String]) -> Option<Vec<String>> {
    let dotted = names.join(".");
    let built_in = BUILT_IN_LIST_MAPS
        .iter()
        .find(|(path, _)| *path == dotted)
        .map(|(_, keys)| keys.iter().map(|k| k.to_string()).collect());
    built_in.or_else(|| {
        crd_list_maps()
            .iter()
            .find(|(path, _)| *path == dotted)
            .map(|(_, keys)| keys.clone())
    })
}

/// The key of a list-map entry: its key fields, canonically ordered.
fn entry_key(item: &Value, keys: &[String]) -> String {
    let values: BTreeMap<&str, &Value> = keys
        .iter()
        .map(|k| (k.as_str(), item.get(k).unwrap_or(&Value::Null)))
        .collect();
    serde_json::to_string(&values).expect("keys serialize")
}

/// Fields that identify the object rather than belong to anybody.
pub fn without_identity(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "deletionTimestamp",
            ] {
                meta.remove(field);
            }
        }
    }
    object
}

/// The fields `value` sets.
pub fn field_set(value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(value, &mut Vec::new(), &mut Vec::new(), &mut out);
    out.remove(&Vec::new());
    out
}

fn collect(value: &Value, path: &mut Path, names: &mut Vec<String>, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(Elem::Field(k.clone()));
                names.push(k.clone());
                collect(v, path, names, out);
                names.pop();
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() && list_keys(names).is_some() => {
            let keys = list_keys(names).expect("checked");
            for item in items {
                path.push(Elem::Key(entry_key(item, &keys)));
                out.insert(path.clone());
                collect(item, path, names, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`, if present.
pub fn get<'a>(value: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut here = value;
    let mut names = Vec::new();
    for elem in path {
        here = match elem {
            Elem::Field(f) => {
                names.push(f.clone());
                here.get(f)?
            }
            Elem::Key(k) => {
                let keys = list_keys(&names)?;
                here.as_array()?
                    .iter()
                    .find(|item| &entry_key(item, &keys) == k)?
            }
        };
    }
    Some(here)
}

/// Removes the field or list entry at `path`, then the objects it leaves empty.
pub fn remove(value: &mut Value, path: &[Elem]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let names: Vec<String> = parent_path
        .iter()
        .filter_map(|e| match e {
            Elem::Field(f) => Some(f.clone()),
            Elem::Key(_) => None,
        })
        .collect();
    let Some(parent) = get_mut(value, parent_path) else {
        return;
    };
    match last {
        Elem::Field(f) => {
            if let Some(map) = parent.as_object_mut() {
                map.remove(f);
            }
        }
        Elem::Key(k) => {
            if let (Some(keys), Some(items)) = (list_keys(&names), parent.as_array_mut()) {
                items.retain(|item| &entry_key(item, &keys) != k);
            }
        }
    }
    let emptied = match parent {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    if emptied {
        remove(value, parent_path);
    }
}

fn get_mut<'a>(value: &'a mut Value, path: &[Elem]) -> Option<&'a mut Value> {
    let mut here = value;
    let mut names = Vec::new();
    for elem in path {
        here = match elem {
            Elem::Field(f) => {
                names.push(f.clone());
                here.get_mut(f)?
            }
            Elem::Key(k) => {
                let keys = list_keys(&names)?;
                here.as_array_mut()?
                    .iter_mut()
                    .find(|item| &entry_key(item, &keys) == k)?
            }
        };
    }
    Some(here)
}

/// Merges an apply configuration into `live`: objects field by field, list-maps entry by entry
/// (new entries appended), everything else replaced.
pub fn merge(live: &mut Value, config: &Value) {
    merge_at(live, config, &mut Vec::new());
}

fn merge_at(live: &mut Value, config: &Value, names: &mut Vec<String>) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                names.push(k.clone());
                match l.get_mut(k) {
                    Some(lv) => merge_at(lv, cv, names),
                    None => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
                names.pop();
            }
        }
        (Value::Array(l), Value::Array(c)) if list_keys(names).is_some() => {
            let keys = list_keys(names).expect("checked");
            for item in c {
                let key = entry_key(item, &keys);
                match l.iter_mut().find(|li| entry_key(li, &keys) == key) {
                    Some(existing) => merge_at(existing, item, names),
                    None => l.push(item.clone()),
                }
            }
        }
        (live, config) => *live = config.clone(),
    }
}

/// Paths of `after` that an update wrote: leaves whose value changed and list-map entries that
/// are new.
pub fn written(before: &Value, after: &Value) -> FieldSet {
    field_set(&without_identity(after))
        .into_iter()
        .filter(|p| match p.last() {
            Some(Elem::Key(_)) => get(before, p).is_none(),
            _ => get(before, p) != get(after, p),
        })
        .collect()
}

/// Keeps only the paths of `set` that start with (or, `inside = false`, do not start with)
/// the field `top`.
pub fn scoped(set: FieldSet, top: &str, inside: bool) -> FieldSet {
    let top = Elem::Field(top.into());
    set.into_iter()
        .filter(|p| (p.first() == Some(&top)) == inside)
        .collect()
}

/// An object holding only `top` of `value` (or everything but it).
pub fn part(value: &Value, top: &str, inside: bool) -> Value {
    let mut out = Map::new();
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            if (k == top) == inside {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// True when `ancestor` is `path` or one of its parents.
pub fn covers(ancestor: &[Elem], path: &[Elem]) -> bool {
    path.starts_with(ancestor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_map_entries_are_fields_of_their_own_and_other_lists_are_atomic() {
        let set = field_set(&json!({"status": {
            "recorders": [{"pod": "a", "startId": "1", "transactions": {"inserted": 3}}],
            "other": [1, 2]
        }}));
        let key = Elem::Key(r#"{"pod":"a","startId":"1"}"#.into());
        let status = Elem::Field("status".into());
        assert!(set.contains(&vec![
            status.clone(),
            Elem::Field("recorders".into()),
            key.clone()
        ]));
        assert!(set.contains(&vec![
            status.clone(),
            Elem::Field("recorders".into()),
            key,
            Elem::Field("transactions".into()),
            Elem::Field("inserted".into())
        ]));
        assert!(set.contains(&vec![status, Elem::Field("other".into())]));
    }

    #[test]
    fn removing_the_last_entry_removes_the_emptied_parents() {
        let mut v = json!({"status": {"recorders": [{"pod": "a", "startId": "1"}]}, "spec": {}});
        let path = field_set(&v)
            .into_iter()
            .find(|p| matches!(p.last(), Some(Elem::Key(_))))
            .unwrap();
        remove(&mut v, &path);
        assert_eq!(v, json!({"spec": {}}));
    }

    #[test]
    fn merge_joins_list_map_entries_and_replaces_atomic_lists() {
        let mut live =
            json!({"status": {"recorders": [{"pod": "a", "startId": "1", "n": 1}], "x": [1]}});
        merge(
            &mut live,
            &json!({"status": {"recorders": [{"pod": "b", "startId": "1", "n": 2}], "x": [2]}}),
        );
        assert_eq!(live["status"]["recorders"].as_array().unwrap().len(), 2);
        assert_eq!(live["status"]["x"], json!([2]));
    }

    /// The BulkRecorder's list-maps are the CRD's: a key added to the type reaches the fake.
    #[test]
    fn the_crds_list_maps_are_read_from_its_schema() {
        let maps = crd_list_maps();
        let recorders = (
            "status.recorders".to_string(),
            vec!["pod".into(), "startId".into()],
        );
        assert!(maps.contains(&recorders), "{maps:?}");
        assert!(maps.contains(&("status.conditions".into(), vec!["type".into()])));
        assert_eq!(
            list_keys(&["status".into(), "recorders".into()]),
            Some(recorders.1)
        );
    }
}
