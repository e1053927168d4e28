//! Server-side apply that writes only when the cluster differs from what we want.
//!
//! Every owned object is read first; when every field we set already has our value, nothing
//! is sent, so a no-op reconcile is read-only. A field edited by hand differs, and the next
//! reconcile applies (with force) and restores it.

use std::fmt::Debug;

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "bulk-recorder-operator";

/// True when every field of `desired` is present in `existing` with the same value (lists
/// element by element). Fields the server added (defaults, status, managed fields) are ignored.
pub fn is_subset(desired: &Value, existing: &Value) -> bool {
    match (desired, existing) {
        (Value::Object(d), Value::Object(e)) => d
            .iter()
            .all(|(k, v)| e.get(k).is_some_and(|ev| is_subset(v, ev))),
        (Value::Array(d), Value::Array(e)) => {
            d.len() == e.len() && d.iter().zip(e).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(d), Value::Number(e)) => d.as_f64() == e.as_f64(),
        _ => desired == existing,
    }
}

/// Applies `desired` unless the cluster already matches it; returns the object as it is now
/// and whether a write was made.
pub async fn apply<K>(api: &Api<K>, desired: &K) -> Result<(K, bool), kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    if let Some(existing) = api.get_opt(&name).await? {
        let wanted = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
        let current = serde_json::to_value(&existing).map_err(kube::Error::SerdeError)?;
        if is_subset(&wanted, &current) {
            return Ok((existing, false));
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api.patch(&name, &params, &Patch::Apply(desired)).await?;
    Ok((applied, true))
}

#[cfg(test)]
mod tests {
    use super::is_subset;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_a_difference() {
        let desired =
            json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "recorder"}]}}});
        let existing = json!({"spec": {"replicas": 2, "revisionHistoryLimit": 10,
            "template": {"containers": [{"name": "recorder", "imagePullPolicy": "IfNotPresent"}]}}, "status": {}});
        assert!(is_subset(&desired, &existing));
    }

    #[test]
    fn a_hand_edited_field_is_a_difference() {
        let desired = json!({"spec": {"replicas": 2, "env": [{"name": "A", "value": "1"}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 3, "env": [{"name": "A", "value": "1"}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 2, "env": []}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 2, "env": [{"name": "A", "value": "2"}]}})
        ));
    }
}
