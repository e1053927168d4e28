//! What a reconcile observed, which the conditions are computed from: the Deployment's
//! progress, what stood in the way, and the PodMonitor's state. Read by the conditions, written
//! by the reconcile, the owned objects and the monitoring (none of them reads the others).

use k8s_openapi::api::apps::v1::Deployment;

/// What the conditions are computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// A name the operator cannot use for its objects (stored before the schema's rule).
    pub invalid_name: Option<String>,
    /// Spec problems the schema did not catch.
    pub problems: Vec<String>,
    /// Objects of the names the operator would use that this resource does not control.
    pub conflicts: Vec<String>,
    /// Missing Secrets or keys, as "secret/key" descriptions.
    pub missing_secrets: Vec<String>,
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    pub updated_replicas: i32,
    /// Whether the Deployment controller has seen the latest Deployment spec.
    pub rollout_observed: bool,
    /// The PodMonitor, when the spec asks for one.
    pub pod_monitor: Option<PodMonitorState>,
}

impl Observed {
    pub fn with_deployment(mut self, deployment: Option<&Deployment>) -> Self {
        if let Some(d) = deployment {
            let status = d.status.clone().unwrap_or_default();
            self.ready_replicas = status.ready_replicas.unwrap_or(0);
            self.updated_replicas = status.updated_replicas.unwrap_or(0);
            self.rollout_observed = status.observed_generation.is_some()
                && status.observed_generation >= d.metadata.generation;
        }
        self
    }
}

/// What the PodMonitorReady condition reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PodMonitorState {
    /// Applied, with the labels of `spec.monitoring.podMonitorLabels` (empty: none).
    Applied(std::collections::BTreeMap<String, String>),
    /// The API server does not serve monitoring.coreos.com/v1 PodMonitors.
    CrdMissing,
    /// A PodMonitor of that name exists and is not ours (why).
    Conflict(String),
    /// Discovery or the apply failed (the error); retried on the next reconcile.
    Failed(String),
}
