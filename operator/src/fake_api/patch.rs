//! Writes other than server-side apply: the object a replace (PUT) or a patch (JSON patch, merge
//! patch) asks for, with the resourceVersion precondition a client may send. Field ownership of
//! the result is `writes::update`'s business.

use serde_json::Value;

use super::writes::Refusal;

const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// A `metadata.resourceVersion` in the request must be the current one (optimistic concurrency).
fn check_version(current: &Value, request: &Value) -> Result<(), Refusal> {
    let rv = &request["metadata"]["resourceVersion"];
    let empty = rv.is_null() || rv.as_str() == Some("");
    if empty || *rv == current["metadata"]["resourceVersion"] {
        Ok(())
    } else {
        Err(Refusal::Conflict(MODIFIED.into()))
    }
}

/// A replace: the body is the new object.
pub(super) fn replaced(current: &Value, body: Value) -> Result<Value, Refusal> {
    check_version(current, &body)?;
    Ok(body)
}

/// A patch of `current`: a JSON patch (its `test`s fail with 422), or a merge patch (strategic
/// merge patches act alike for what the fake stores).
pub(super) fn patched(
    mut current: Value,
    content_type: &str,
    body: Value,
) -> Result<Value, Refusal> {
    if content_type.starts_with("application/json-patch") {
        let patch: json_patch::Patch = serde_json::from_value(body)
            .map_err(|e| Refusal::Invalid(format!("not a JSON patch: {e}")))?;
        json_patch::patch(&mut current, &patch)
            .map_err(|e| Refusal::Invalid(format!("the JSON patch does not apply: {e}")))?;
    } else {
        check_version(&current, &body)?;
        json_patch::merge(&mut current, &body);
    }
    Ok(current)
}

/// The object a non-apply write asks for.
pub(super) fn candidate(
    current: Value,
    verb: &str,
    content_type: &str,
    body: Value,
) -> Result<Value, Refusal> {
    if verb == "update" {
        replaced(&current, body)
    } else {
        patched(current, content_type, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored() -> Value {
        json!({"metadata": {"name": "orders", "resourceVersion": "7"}, "spec": {"replicas": 1}})
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict_and_none_is_no_precondition() {
        let stale = json!({"metadata": {"resourceVersion": "6"}, "spec": {"replicas": 2}});
        assert!(matches!(
            replaced(&stored(), stale.clone()),
            Err(Refusal::Conflict(_))
        ));
        assert!(matches!(
            patched(stored(), "application/merge-patch+json", stale),
            Err(Refusal::Conflict(_))
        ));
        let merged = patched(
            stored(),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 2}}),
        )
        .unwrap();
        assert_eq!(merged["spec"]["replicas"], 2);
    }

    #[test]
    fn a_failed_json_patch_test_is_invalid() {
        let patch = json!([{"op": "test", "path": "/spec/replicas", "value": 5}]);
        assert!(matches!(
            patched(stored(), "application/json-patch+json", patch),
            Err(Refusal::Invalid(_))
        ));
    }
}
