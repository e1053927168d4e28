//! Every API call the operator and the recorders make, as data: the Helm chart's RBAC rules
//! are checked against this table (`scripts/check-chart.sh`), so that they grant exactly this.

/// (API group, resource, verbs) the operator uses.
///
/// Owned objects are written with server-side apply (`patch`); an apply that creates the object
/// is also authorized as `create` by the API server, so both verbs are needed. `delete` on them
/// and `update` on `bulkrecorders/finalizers` are never called, but the
/// `OwnerReferencesPermissionEnforcement` admission plugin (on in OpenShift) demands them of
/// whoever sets `ownerReferences` (with `blockOwnerDeletion`) on an object. Events go through
/// `events.k8s.io/v1` (kube's event recorder creates them, then patches their series).
pub const OPERATOR_CALLS: &[(&str, &str, &[&str])] = &[
    (
        "bulkrecorder.io",
        "bulkrecorders",
        &["get", "list", "watch"],
    ),
    ("bulkrecorder.io", "bulkrecorders/status", &["get", "patch"]),
    ("bulkrecorder.io", "bulkrecorders/finalizers", &["update"]),
    (
        "apps",
        "deployments",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "services",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "",
        "serviceaccounts",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "rbac.authorization.k8s.io",
        "roles",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "rbac.authorization.k8s.io",
        "rolebindings",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "secrets", &["get"]),
    ("", "pods", &["list", "watch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// (API group, resource, verbs) the operator uses for leader election, in its own namespace.
pub const LEADER_ELECTION_CALLS: &[(&str, &str, &[&str])] =
    &[("coordination.k8s.io", "leases", &["get", "create", "patch"])];

/// (API group, resource, verbs) a recorder pod uses, on its own BulkRecorder only.
pub const RECORDER_CALLS: &[(&str, &str, &[&str])] = &[
    ("bulkrecorder.io", "bulkrecorders", &["get"]),
    ("bulkrecorder.io", "bulkrecorders/status", &["get", "patch"]),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired;

    /// The Role the operator gives recorder pods grants exactly what they call.
    #[test]
    fn the_recorder_role_grants_exactly_the_recorder_calls() {
        let br = crate::fixtures::bulk_recorder("orders", "ledger");
        let role = desired::role(&br);
        let granted: Vec<(String, String, Vec<String>)> = role
            .rules
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.api_groups.unwrap()[0].clone(),
                    r.resources.unwrap()[0].clone(),
                    r.verbs,
                )
            })
            .collect();
        let called: Vec<(String, String, Vec<String>)> = RECORDER_CALLS
            .iter()
            .map(|(g, r, v)| {
                (
                    g.to_string(),
                    r.to_string(),
                    v.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(granted, called);
    }
}
