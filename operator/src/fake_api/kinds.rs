//! The kinds the server knows, and discovery (`/apis/<group>/<version>`), which answers only for
//! the groups that are served: a CRD can be "not installed".

use serde_json::{Value, json};

use super::request::status;

/// Kinds the server knows: (kind, group, version, resource, namespaced).
pub(super) const KINDS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "BulkRecorder",
        "bulkrecorder.io",
        "v1alpha1",
        "bulkrecorders",
        true,
    ),
    ("Deployment", "apps", "v1", "deployments", true),
    ("Service", "", "v1", "services", true),
    ("ServiceAccount", "", "v1", "serviceaccounts", true),
    ("Secret", "", "v1", "secrets", true),
    ("Pod", "", "v1", "pods", true),
    ("Namespace", "", "v1", "namespaces", false),
    ("Role", "rbac.authorization.k8s.io", "v1", "roles", true),
    (
        "RoleBinding",
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        true,
    ),
    (
        "PodDisruptionBudget",
        "policy",
        "v1",
        "poddisruptionbudgets",
        true,
    ),
    (
        "PodMonitor",
        "monitoring.coreos.com",
        "v1",
        "podmonitors",
        true,
    ),
    ("Event", "events.k8s.io", "v1", "events", true),
    ("Lease", "coordination.k8s.io", "v1", "leases", true),
];

/// The kinds with a scale subresource (the BulkRecorder CRD's).
pub(super) const SCALABLE: &[(&str, &str)] = &[("bulkrecorder.io", "bulkrecorders")];

/// The kind and apiVersion of `resource` in `group`.
pub(super) fn kind_of(group: &str, resource: &str) -> Option<(&'static str, String)> {
    KINDS
        .iter()
        .find(|(_, g, _, r, _)| *g == group && *r == resource)
        .map(|(k, g, v, _, _)| {
            let api_version = if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            };
            (*k, api_version)
        })
}

/// The group and resource of an object, from its kind.
pub(super) fn resource_of(object: &Value) -> (String, String) {
    let kind = object["kind"].as_str().expect("a kind");
    let (_, group, _, resource, _) = KINDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .unwrap_or_else(|| panic!("the fake API server does not know kind {kind}"));
    (group.to_string(), resource.to_string())
}

/// The resources of one group version, as an `APIResourceList`, with their subresources.
pub(super) fn discovery(path: &str, served: impl Fn(&str) -> bool) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["apis", group, version] = parts.as_slice() else {
        return status(404, "NotFound", "not a path this fake serves");
    };
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|(_, g, v, _, _)| g == group && v == version && served(g))
        .flat_map(|(kind, g, _, resource, namespaced)| {
            let mut entries = vec![
                json!({"name": resource, "kind": kind, "namespaced": namespaced,
                    "singularName": kind.to_lowercase(),
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}),
                json!({"name": format!("{resource}/status"), "kind": kind,
                    "namespaced": namespaced, "singularName": "", "verbs": ["get", "patch", "update"]}),
            ];
            if SCALABLE.contains(&(g, resource)) {
                entries.push(json!({"name": format!("{resource}/scale"), "group": "autoscaling",
                    "version": "v1", "kind": "Scale", "namespaced": namespaced,
                    "singularName": "", "verbs": ["get", "patch", "update"]}));
            }
            entries
        })
        .collect();
    if resources.is_empty() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    (
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": format!("{group}/{version}"), "resources": resources}),
    )
}
