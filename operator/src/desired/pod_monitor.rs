//! The recorders' PodMonitor (Prometheus Operator, `monitoring.coreos.com/v1`): Prometheus
//! scrapes every recorder pod, ready or not (a recorder holding a bulk is not ready, and that is
//! when its metrics matter most), which a Service's endpoints would not give it.

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::{metadata, selector};

/// The label the PodMonitor puts on every series it scrapes: the BulkRecorder's name, which the
/// chart's alerts and dashboard group by.
pub const BULKRECORDER_LABEL: &str = "bulkrecorder";

/// The part of the Prometheus Operator's PodMonitor the operator writes (its CRD is theirs; the
/// schema is not this project's to publish).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PodMonitor",
    plural = "podmonitors",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub selector: LabelSelector,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// The name of the container port.
    pub port: String,
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabelings: Vec<Relabeling>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Relabeling {
    pub source_labels: Vec<String>,
    pub target_label: String,
}

/// `<name>`: the recorder pods' `metrics` port (9090), `/metrics`.
pub fn pod_monitor(br: &BulkRecorder) -> PodMonitor {
    let mut metadata = metadata(br, br.name_any());
    let ours = metadata.labels.take().unwrap_or_default();
    let mut labels = br.spec.monitoring.pod_monitor_labels.clone();
    labels.extend(ours);
    metadata.labels = Some(labels);
    PodMonitor {
        metadata,
        spec: PodMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(selector(br)),
                ..Default::default()
            },
            pod_metrics_endpoints: vec![PodMetricsEndpoint {
                port: "metrics".into(),
                path: "/metrics".into(),
                relabelings: vec![Relabeling {
                    source_labels: vec![
                        "__meta_kubernetes_pod_label_app_kubernetes_io_instance".into(),
                    ],
                    target_label: BULKRECORDER_LABEL.into(),
                }],
            }],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::deployment, fixtures::bulk_recorder};

    #[test]
    fn the_pod_monitor_carries_the_labels_its_prometheus_selects_and_ours_win() {
        let mut br = bulk_recorder("orders", "ledger");
        br.spec.monitoring.pod_monitor_labels = [
            ("release", "kube-prometheus-stack"),
            ("app.kubernetes.io/name", "not-ours"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let labels = pod_monitor(&br).metadata.labels.unwrap();
        assert_eq!(labels["release"], "kube-prometheus-stack");
        assert_eq!(labels["app.kubernetes.io/name"], "bulk-recorder");
    }

    #[test]
    fn the_pod_monitor_scrapes_the_recorders_metrics_port() {
        let br = bulk_recorder("orders", "ledger");
        let monitor = serde_json::to_value(pod_monitor(&br)).unwrap();
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(monitor["kind"], "PodMonitor");
        let pod = deployment(&br, "img", "").spec.unwrap().template;
        let labels = pod.metadata.unwrap().labels.unwrap();
        for (key, value) in monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(
                labels[key],
                value.as_str().unwrap(),
                "selects the recorder pods"
            );
        }
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        let container = pod.spec.unwrap().containers.remove(0);
        let port = &container.ports.unwrap()[0];
        assert_eq!(endpoint["port"], port.name.clone().unwrap());
        assert_eq!(port.container_port, 9090);
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "bulkrecorder");
    }

    /// Every field the operator writes exists in the Prometheus Operator's schema with that type:
    /// an API server silently drops (prunes) fields its schema does not know.
    #[test]
    fn every_field_written_is_in_the_prometheus_operators_schema() {
        fn check(value: &serde_json::Value, schema: &serde_json::Value, path: &str) {
            let expected = match value {
                serde_json::Value::Object(_) => "object",
                serde_json::Value::Array(_) => "array",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Bool(_) => "boolean",
                _ => "integer",
            };
            assert_eq!(schema["type"], expected, "{path}");
            match value {
                serde_json::Value::Object(fields) => {
                    for (key, field) in fields {
                        let sub = schema["properties"]
                            .get(key)
                            .or_else(|| schema.get("additionalProperties"))
                            .unwrap_or_else(|| panic!("{path}.{key} is not in the schema"));
                        check(field, sub, &format!("{path}.{key}"));
                    }
                }
                serde_json::Value::Array(items) => {
                    for item in items {
                        check(item, &schema["items"], &format!("{path}[]"));
                    }
                }
                _ => {}
            }
        }
        let crd: serde_json::Value = serde_yaml::from_str(include_str!(
            "../../../tests/fixtures/monitoring.coreos.com_podmonitors.yaml"
        ))
        .unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let monitor =
            serde_json::to_value(pod_monitor(&bulk_recorder("orders", "ledger"))).unwrap();
        check(&monitor["spec"], &root["properties"]["spec"], "spec");
        assert_eq!(crd["spec"]["versions"][0]["name"], "v1");
    }
}
