//! The recorders' PodDisruptionBudget: node drains and other voluntary evictions take one
//! recorder at a time, so the others keep consuming while it hands its bulk back.

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::ResourceExt;

use super::{metadata, selector};

/// Whether `br` should have a PodDisruptionBudget: with one replica (or none), a budget of
/// `maxUnavailable: 1` guards nothing and `minAvailable: 1` would block every node drain.
pub fn wants_disruption_budget(br: &BulkRecorder) -> bool {
    br.spec.pod_disruption_budget && br.spec.replicas > 1
}

/// `<name>`, selecting exactly the Deployment's pods.
pub fn pod_disruption_budget(br: &BulkRecorder) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(br, br.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(br)),
                ..Default::default()
            }),
            // A recorder that is not ready (its database down, a bulk held) may still be
            // evicted: otherwise an outage would block node drains until it ends. Evicted, it
            // hands its unacknowledged messages back to the queue.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::deployment, fixtures::bulk_recorder};

    #[test]
    fn a_budget_exists_only_with_more_than_one_replica_unless_turned_off() {
        let mut br = bulk_recorder("orders", "ledger");
        for (replicas, wanted) in [(0, false), (1, false), (2, true), (5, true)] {
            br.spec.replicas = replicas;
            assert_eq!(wants_disruption_budget(&br), wanted, "{replicas} replicas");
        }
        br.spec.pod_disruption_budget = false;
        assert!(!wants_disruption_budget(&br));
    }

    #[test]
    fn the_budget_lets_one_recorder_go_at_a_time_and_selects_the_deployments_pods() {
        let br = bulk_recorder("orders", "ledger");
        let spec = pod_disruption_budget(&br).spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        let pods = deployment(&br, "img", "").spec.unwrap().selector;
        assert_eq!(spec.selector.unwrap(), pods);
    }
}
