//! Every API call the operator and the recorders make, as data: the Helm chart's RBAC rules
//! are checked against this table (`scripts/check-chart.sh`), so that they grant exactly this.

/// (API group, resource, verbs) the operator uses.
///
/// Owned objects are written with server-side apply (`patch`); an apply that creates the object
/// is also authorized as `create` by the API server, so both verbs are needed. `delete` is
/// called on PodDisruptionBudgets and PodMonitors the spec no longer wants; on the other owned
/// kinds it, and `update` on `bulkrecorders/finalizers`, are never called, but the
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
    (
        "policy",
        "poddisruptionbudgets",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // Used only once discovery shows the Prometheus Operator's CRD.
    (
        "monitoring.coreos.com",
        "podmonitors",
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

/// What the chart's ClusterRole aggregated into Kubernetes' `edit` role (and so `admin`) adds:
/// namespace editors may manage BulkRecorders and `kubectl scale` them, as they may
/// Deployments. No escalation: what a BulkRecorder makes the operator create (pods running an
/// image of the editor's choice, a Role reading that one BulkRecorder) an editor may create
/// directly.
pub const AGGREGATE_TO_EDIT: &[(&str, &str, &[&str])] = &[
    (
        "bulkrecorder.io",
        "bulkrecorders",
        &["create", "delete", "deletecollection", "patch", "update"],
    ),
    // `kubectl scale` patches the scale (with --current-replicas: gets it, then updates it).
    (
        "bulkrecorder.io",
        "bulkrecorders/scale",
        &["patch", "update"],
    ),
];

/// What the chart's ClusterRole aggregated into Kubernetes' `view` role adds (`view` is itself
/// aggregated into `edit`, so editors read them too).
pub const AGGREGATE_TO_VIEW: &[(&str, &str, &[&str])] = &[
    (
        "bulkrecorder.io",
        "bulkrecorders",
        &["get", "list", "watch"],
    ),
    (
        "bulkrecorder.io",
        "bulkrecorders/status",
        &["get", "list", "watch"],
    ),
    (
        "bulkrecorder.io",
        "bulkrecorders/scale",
        &["get", "list", "watch"],
    ),
];

/// What Kubernetes' own `system:controller:horizontal-pod-autoscaler` ClusterRole grants the
/// HPA controller on every scale subresource; KEDA's operator holds `*` on `*/scale`. So neither
/// needs a rule from this project to drive `bulkrecorders/scale` (not granted by the chart;
/// the fake API server's autoscaler acts with it).
pub const BUILT_IN_AUTOSCALER_CALLS: &[(&str, &str, &[&str])] =
    &[("*", "*/scale", &["get", "update"])];

/// The tables the chart must grant, by who holds them (`operator`: its own calls and the
/// leader election's; `recorder`: each recorder pod's Role; `edit` and `view`: the ClusterRoles
/// aggregated into Kubernetes' roles), as `{"operator": [[group, resource, [verbs]], ...], ...}`.
/// `BUILT_IN_AUTOSCALER_CALLS` is left out: Kubernetes ships that role.
pub fn tables_json() -> serde_json::Value {
    let rows = |tables: &[&[(&str, &str, &[&str])]]| -> Vec<serde_json::Value> {
        tables
            .iter()
            .flat_map(|table| table.iter())
            .map(|(group, resource, verbs)| serde_json::json!([group, resource, verbs]))
            .collect()
    };
    serde_json::json!({
        "operator": rows(&[OPERATOR_CALLS, LEADER_ELECTION_CALLS]),
        "recorder": rows(&[RECORDER_CALLS]),
        "edit": rows(&[AGGREGATE_TO_EDIT]),
        "view": rows(&[AGGREGATE_TO_VIEW]),
    })
}

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
