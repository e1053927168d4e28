//! The objects a BulkRecorder should own, as pure functions of the resource: what the
//! reconciler applies, and what the unit tests read.

mod deployment;
mod disruption_budget;
mod env;
mod pod_monitor;

pub use deployment::*;
pub use disruption_budget::*;
pub use env::*;
pub use pod_monitor::*;

use std::collections::BTreeMap;

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::{
    api::{
        core::v1::{Service, ServiceAccount, ServicePort, ServiceSpec},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{Resource, ResourceExt, api::ObjectMeta};

/// The recorder's metrics and probe port.
pub const METRICS_PORT: i32 = 9090;

/// Pod template annotation holding the resourceVersions of the Secrets the recorders read:
/// when a Secret changes, the template changes and the recorders roll onto the new value.
pub const SECRET_VERSIONS_ANNOTATION: &str = "bulkrecorder.io/secret-versions";

/// Labels every owned object carries.
pub fn labels(br: &BulkRecorder) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "bulk-recorder".into()),
        ("app.kubernetes.io/instance".into(), br.name_any()),
        ("app.kubernetes.io/component".into(), "recorder".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "bulk-recorder-operator".into(),
        ),
    ])
}

/// The label selector of the recorder pods of `br`.
pub fn selector(br: &BulkRecorder) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "bulk-recorder".into()),
        ("app.kubernetes.io/instance".into(), br.name_any()),
    ])
}

/// `key=value,...`: for listing the recorder pods, and the scale subresource's selector
/// (`status.selector`), which autoscalers use to find the pods.
pub fn selector_string(br: &BulkRecorder) -> String {
    selector(br)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Name, namespace, labels and the controller owner reference of an owned object.
fn metadata(br: &BulkRecorder, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: br.namespace(),
        labels: Some(labels(br)),
        owner_references: br.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

pub fn service_account_name(br: &BulkRecorder) -> String {
    format!("{}-recorder", br.name_any())
}

/// The recorders' metrics endpoint.
pub fn service(br: &BulkRecorder) -> Service {
    Service {
        metadata: metadata(br, format!("{}-metrics", br.name_any())),
        spec: Some(ServiceSpec {
            selector: Some(selector(br)),
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String("metrics".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service_account(br: &BulkRecorder) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(br, service_account_name(br)),
        automount_service_account_token: Some(true),
        ..Default::default()
    }
}

/// What a recorder pod may do: read its own BulkRecorder and write its own status entry.
pub fn role(br: &BulkRecorder) -> Role {
    let group = BulkRecorder::group(&()).into_owned();
    let plural = BulkRecorder::plural(&()).into_owned();
    Role {
        metadata: metadata(br, service_account_name(br)),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![group.clone()]),
                resources: Some(vec![plural.clone()]),
                resource_names: Some(vec![br.name_any()]),
                verbs: vec!["get".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec![group]),
                resources: Some(vec![format!("{plural}/status")]),
                resource_names: Some(vec![br.name_any()]),
                verbs: vec!["get".into(), "patch".into()],
                ..Default::default()
            },
        ]),
    }
}

pub fn role_binding(br: &BulkRecorder) -> RoleBinding {
    RoleBinding {
        metadata: metadata(br, service_account_name(br)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: service_account_name(br),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: service_account_name(br),
            namespace: br.namespace(),
            ..Default::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::bulk_recorder;

    /// Deleting a BulkRecorder deletes what it owns through the garbage collector: every
    /// owned object names it as its controller, so no finalizer is needed.
    #[test]
    fn every_owned_object_is_garbage_collected_with_its_bulk_recorder() {
        let mut br = bulk_recorder("orders", "ledger");
        br.spec.replicas = 2;
        br.spec.monitoring.pod_monitor = true;
        let metas = [
            deployment(&br, "img", "").metadata,
            pod_disruption_budget(&br).metadata,
            pod_monitor(&br).metadata,
            service(&br).metadata,
            service_account(&br).metadata,
            role(&br).metadata,
            role_binding(&br).metadata,
        ];
        for meta in metas {
            let owner = &meta.owner_references.as_ref().expect("owned")[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str()),
                ("BulkRecorder", "orders")
            );
            assert_eq!(owner.uid, br.metadata.uid.clone().unwrap());
            assert_eq!(owner.controller, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("ledger"));
            assert_eq!(
                meta.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
                "bulk-recorder-operator"
            );
        }
    }
}
