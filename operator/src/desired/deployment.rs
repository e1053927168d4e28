//! The recorders' Deployment: the pod template, the recorder container and its hardening.

use std::collections::BTreeMap;

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, Container, ContainerPort, HTTPGetAction, PodSecurityContext, PodSpec,
            PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::{ResourceExt, api::ObjectMeta};

use super::{
    METRICS_PORT, SECRET_VERSIONS_ANNOTATION, labels, metadata, recorder_env, selector,
    service_account_name,
};

/// Room after SIGTERM beyond the recorder's own shutdown budget: its final status report and
/// its exit.
pub const GRACE_AFTER_SHUTDOWN_SECONDS: i64 = 5;

/// The recorder finishes (or hands back) everything within `spec.shutdownTimeoutSeconds`
/// (BULK_RECORDER_SHUTDOWN_TIMEOUT_MS), so the kubelet waits that long and a little more before
/// it kills the container.
pub fn termination_grace_seconds(br: &BulkRecorder) -> i64 {
    i64::from(br.spec.shutdown_timeout_seconds) + GRACE_AFTER_SHUTDOWN_SECONDS
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// Volumes of `spec.volumes`, and their read-only mounts in the recorder container.
fn volumes(br: &BulkRecorder) -> (Option<Vec<Volume>>, Option<Vec<VolumeMount>>) {
    if br.spec.volumes.is_empty() {
        return (None, None);
    }
    let volumes = br
        .spec
        .volumes
        .iter()
        .map(|v| Volume {
            name: v.name.clone(),
            secret: v.secret.clone(),
            config_map: v.config_map.clone(),
            ..Default::default()
        })
        .collect();
    let mounts = br
        .spec
        .volumes
        .iter()
        .map(|v| VolumeMount {
            name: v.name.clone(),
            mount_path: v.mount_path.clone(),
            read_only: Some(true),
            ..Default::default()
        })
        .collect();
    (Some(volumes), Some(mounts))
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn non_empty_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// The recorders. `secret_versions` (see [`SECRET_VERSIONS_ANNOTATION`]) rolls them when a
/// Secret they read changes.
pub fn deployment(br: &BulkRecorder, default_image: &str, secret_versions: &str) -> Deployment {
    Deployment {
        metadata: metadata(br, br.name_any()),
        spec: Some(DeploymentSpec {
            replicas: Some(br.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(br)),
                ..Default::default()
            },
            // One pod at a time: each holds up to workers x prefetch messages.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: pod_template(br, default_image, secret_versions),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_template(br: &BulkRecorder, default_image: &str, secret_versions: &str) -> PodTemplateSpec {
    let spec = &br.spec;
    // The user's pod labels, then ours: the selector labels can never be overridden.
    let mut pod_labels = spec.pod_labels.clone();
    pod_labels.extend(labels(br));
    let mut annotations = spec.pod_annotations.clone();
    if !secret_versions.is_empty() {
        annotations.insert(SECRET_VERSIONS_ANNOTATION.into(), secret_versions.into());
    }
    let (volumes, volume_mounts) = volumes(br);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: non_empty_map(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(service_account_name(br)),
            image_pull_secrets: non_empty(spec.image_pull_secrets.clone()),
            node_selector: non_empty_map(spec.node_selector.clone()),
            tolerations: non_empty(spec.tolerations.clone()),
            affinity: spec.affinity.clone(),
            topology_spread_constraints: non_empty(spec.topology_spread_constraints.clone()),
            priority_class_name: spec.priority_class_name.clone(),
            volumes,
            // SIGTERM: flush, ack, report; a bulk plus the flush timeout is far less.
            termination_grace_period_seconds: Some(termination_grace_seconds(br)),
            // Non-root without pinning a uid: the image's numeric USER (65532) applies, and
            // OpenShift's restricted SCC may assign one from the namespace's range.
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![Container {
                image: Some(spec.image.clone().unwrap_or_else(|| default_image.into())),
                resources: spec.resources.clone(),
                volume_mounts,
                ..recorder_container(br)
            }],
            ..Default::default()
        }),
    }
}

/// The recorder container: environment, metrics port, probes, hardening.
fn recorder_container(br: &BulkRecorder) -> Container {
    Container {
        name: "recorder".into(),
        env: Some(recorder_env(br)),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::selector_string, fixtures::bulk_recorder};

    #[test]
    fn the_recorder_pod_is_hardened_and_probed() {
        let br = bulk_recorder("orders", "ledger");
        let pod = deployment(&br, "registry/bulk-recorder:1", "")
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("orders-recorder"));
        let security = pod.security_context.unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(
            (
                security.run_as_user,
                security.run_as_group,
                security.fs_group
            ),
            (None, None, None),
            "no pinned ids: OpenShift's restricted SCC refuses ids outside the namespace's range"
        );
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry/bulk-recorder:1"),
            "the operator's default image"
        );
        let sc = container.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        let path = |p: &Option<Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&container.liveness_probe), "/healthz");
        assert_eq!(path(&container.readiness_probe), "/readyz");
        // No connection string is ever a plain value.
        for e in container.env.as_ref().unwrap() {
            if e.name.ends_with("_URL") {
                assert!(
                    e.value.is_none() && e.value_from.as_ref().unwrap().secret_key_ref.is_some(),
                    "{}",
                    e.name
                );
            }
        }
    }

    #[test]
    fn placement_registry_secrets_annotations_and_volumes_reach_the_pods() {
        use bulk_recorder_crds::RecorderVolume;
        use k8s_openapi::api::core::v1::{LocalObjectReference, SecretVolumeSource, Toleration};
        let mut br = bulk_recorder("orders", "ledger");
        br.spec.image_pull_secrets = vec![LocalObjectReference {
            name: "registry".into(),
        }];
        br.spec.node_selector = BTreeMap::from([("pool".into(), "ledger".into())]);
        br.spec.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        br.spec.priority_class_name = Some("high".into());
        br.spec.pod_annotations = BTreeMap::from([("mesh/inject".into(), "false".into())]);
        br.spec.pod_labels = BTreeMap::from([
            ("team".into(), "ledger".into()),
            ("app.kubernetes.io/instance".into(), "hijack".into()),
        ]);
        br.spec.volumes = vec![RecorderVolume {
            name: "ca".into(),
            mount_path: "/etc/ledger-ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("ledger-ca".into()),
                ..Default::default()
            }),
            config_map: None,
        }];
        let template = deployment(&br, "img", "postgres=7,rabbitmq=9")
            .spec
            .unwrap()
            .template;
        let meta = template.metadata.unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels["team"], "ledger");
        assert_eq!(
            labels["app.kubernetes.io/instance"], "orders",
            "the selector's labels cannot be overridden"
        );
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations["mesh/inject"], "false");
        assert_eq!(
            annotations[SECRET_VERSIONS_ANNOTATION],
            "postgres=7,rabbitmq=9"
        );
        let pod = template.spec.unwrap();
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry");
        assert_eq!(pod.node_selector.unwrap()["pool"], "ledger");
        assert_eq!(pod.tolerations.unwrap().len(), 1);
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        let volume = &pod.volumes.unwrap()[0];
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("ledger-ca")
        );
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/ledger-ca", Some(true))
        );
    }

    #[test]
    fn the_pods_get_the_shutdown_budget_and_five_seconds_more() {
        let mut br = bulk_recorder("orders", "ledger");
        assert_eq!(termination_grace_seconds(&br), 30, "25 s by default");
        br.spec.shutdown_timeout_seconds = 120;
        let pod = deployment(&br, "img", "")
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(125));
        let budget = pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "BULK_RECORDER_SHUTDOWN_TIMEOUT_MS")
            .and_then(|e| e.value.clone());
        assert_eq!(budget.as_deref(), Some("120000"));
    }

    #[test]
    fn a_spec_image_overrides_the_default_and_the_selector_matches_the_pods() {
        let mut br = bulk_recorder("orders", "ledger");
        br.spec.image = Some("mine:2".into());
        let d = deployment(&br, "default:1", "");
        let spec = d.spec.unwrap();
        assert_eq!(
            spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("mine:2")
        );
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in spec.selector.match_labels.unwrap() {
            assert_eq!(pod_labels[&k], v);
        }
        assert_eq!(
            selector_string(&br),
            "app.kubernetes.io/instance=orders,app.kubernetes.io/name=bulk-recorder"
        );
    }
}
