//! Who may do what: RBAC as the tables of `crate::rbac` grant it, and the
//! `OwnerReferencesPermissionEnforcement` admission plugin (on by default in OpenShift).

use serde_json::Value;

use crate::rbac::{
    AGGREGATE_TO_EDIT, AGGREGATE_TO_VIEW, BUILT_IN_AUTOSCALER_CALLS, LEADER_ELECTION_CALLS,
    OPERATOR_CALLS, RECORDER_CALLS,
};

/// The identity a fake client acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A cluster administrator: everything is allowed.
    Admin,
    /// The operator's ServiceAccount: `rbac::OPERATOR_CALLS` and `rbac::LEADER_ELECTION_CALLS`.
    Operator,
    /// A recorder pod of the named BulkRecorder: `rbac::RECORDER_CALLS` on that one resource.
    Recorder(String),
    /// A namespace editor (Kubernetes' `edit` role): what the chart aggregates into it,
    /// `rbac::AGGREGATE_TO_EDIT` and `rbac::AGGREGATE_TO_VIEW`.
    Editor,
    /// The HPA controller (or KEDA): `rbac::BUILT_IN_AUTOSCALER_CALLS`.
    Autoscaler,
}

/// Whether a rule's group or resource covers the requested one (`*`, and `*/scale` for every
/// scale subresource, as RBAC reads them).
fn covers(rule: &str, requested: &str) -> bool {
    rule == "*"
        || rule == requested
        || rule
            .strip_prefix("*/")
            .is_some_and(|sub| requested.ends_with(&format!("/{sub}")))
}

/// What one request asks the authorizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub name: Option<String>,
    pub verb: &'static str,
}

impl Caller {
    /// The user name the API server sees (in its 403 messages).
    pub fn user(&self) -> String {
        match self {
            Self::Admin => "kubernetes-admin".into(),
            Self::Operator => "system:serviceaccount:bulk-recorder:bulk-recorder-operator".into(),
            Self::Recorder(name) => format!("system:serviceaccount:ledger:{name}-recorder"),
            Self::Editor => "editor".into(),
            Self::Autoscaler => {
                "system:serviceaccount:kube-system:horizontal-pod-autoscaler".into()
            }
        }
    }

    pub fn allows(&self, a: &Attributes) -> bool {
        let table = |calls: &[(&str, &str, &[&str])]| {
            calls.iter().any(|(g, r, verbs)| {
                covers(g, &a.group) && covers(r, &a.resource) && verbs.contains(&a.verb)
            })
        };
        match self {
            Self::Admin => true,
            Self::Operator => table(OPERATOR_CALLS) || table(LEADER_ELECTION_CALLS),
            Self::Recorder(name) => a.name.as_deref() == Some(name) && table(RECORDER_CALLS),
            Self::Editor => table(AGGREGATE_TO_EDIT) || table(AGGREGATE_TO_VIEW),
            Self::Autoscaler => table(BUILT_IN_AUTOSCALER_CALLS),
        }
    }
}

/// The verb the API server authorizes a request as (an apply that creates is also a `create`,
/// checked separately by the server once it knows the object is missing).
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn owner_references(object: Option<&Value>) -> Vec<Value> {
    object
        .and_then(|o| o["metadata"]["ownerReferences"].as_array())
        .cloned()
        .unwrap_or_default()
}

/// The checks of `OwnerReferencesPermissionEnforcement` for a write that turns `before` into
/// `after`: changing `ownerReferences` needs `delete` on the object, and a reference with
/// `blockOwnerDeletion: true` needs `update` on the owner's `finalizers` subresource.
pub fn owner_reference_checks(
    group: &str,
    resource: &str,
    name: &str,
    before: Option<&Value>,
    after: &Value,
) -> Vec<Attributes> {
    let (old, new) = (owner_references(before), owner_references(Some(after)));
    if old == new {
        return Vec::new();
    }
    let mut checks = vec![Attributes {
        group: group.into(),
        resource: resource.into(),
        name: Some(name.into()),
        verb: "delete",
    }];
    for reference in new.iter().filter(|r| !old.contains(r)) {
        if reference["blockOwnerDeletion"] == Value::Bool(true) {
            let api_version = reference["apiVersion"].as_str().unwrap_or_default();
            let owner_group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let kind = reference["kind"].as_str().unwrap_or_default();
            checks.push(Attributes {
                group: owner_group.into(),
                resource: format!("{}s/finalizers", kind.to_lowercase()),
                name: reference["name"].as_str().map(String::from),
                verb: "update",
            });
        }
    }
    checks
}
