//! The PodMonitor: applied where the Prometheus Operator's CRD is served, a condition (and
//! nothing else) where it is not, removed when turned off, and watched once the CRD appears.

use std::time::Duration;

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::{NS, writes};
use crate::{
    conditions::POD_MONITOR_READY,
    desired::PodMonitor,
    fake_api::{Caller, ObjectKey, POD_MONITOR_GROUP},
    fixtures::*,
};

fn monitored() -> BulkRecorder {
    let mut br = bulk_recorder("orders", NS);
    br.spec.monitoring.pod_monitor = true;
    br
}

fn has_condition(world: &World, type_: &str) -> bool {
    let br = world.br(NS, "orders");
    br.status
        .unwrap_or_default()
        .conditions
        .iter()
        .any(|c| c.type_ == type_)
}

#[tokio::test]
async fn without_the_crd_a_condition_says_so_and_nothing_else_degrades() {
    let world = World::new(&monitored());
    world.reconcile(NS, "orders").await.unwrap();
    world.roll_out(NS, "orders");
    world.reconcile(NS, "orders").await.expect("not a failure");
    let br = world.br(NS, "orders");
    let (status, reason, message) = condition(&br, POD_MONITOR_READY);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "CRDNotInstalled")
    );
    assert!(message.contains("spec.monitoring.podMonitor"), "{message}");
    assert_eq!(
        condition(&br, "Ready").0,
        "True",
        "recording is not affected"
    );
    assert_eq!(condition(&br, "Degraded").0, "False");
    assert!(world.fake.get::<Deployment>(NS, "orders").is_some());
    let requests = world.operator_requests();
    assert!(
        requests.iter().all(|r| r.resource != "podmonitors"),
        "nothing asked of a kind that is not served"
    );
    let warnings: Vec<_> = events(&requests)
        .into_iter()
        .filter(|e| e.1 == "CRDNotInstalled")
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one Warning event, on the first reconcile that saw it"
    );
}

#[tokio::test]
async fn with_the_crd_the_pod_monitor_is_applied_and_deleted_when_turned_off() {
    let world = World::new(&monitored());
    world.fake.serve_group(POD_MONITOR_GROUP, true);
    world.reconcile(NS, "orders").await.unwrap();
    let monitor: PodMonitor = world.fake.get(NS, "orders").expect("a PodMonitor");
    assert_eq!(monitor.spec.pod_metrics_endpoints[0].port, "metrics");
    let owner = &monitor.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("BulkRecorder", Some(true))
    );
    let (status, reason, message) = condition(&world.br(NS, "orders"), POD_MONITOR_READY);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Applied"));
    assert!(
        message.contains("does not pick it up") && message.contains("podMonitorLabels"),
        "says what is known: no Prometheus label yet: {message}"
    );
    let refused: Vec<_> = world
        .operator_requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");

    let key = ObjectKey::of::<BulkRecorder>(NS, "orders");
    world.fake.edit(&key, "kubectl-edit", "", |b| {
        b["spec"]["monitoring"]["podMonitor"] = json!(false)
    });
    world.reconcile(NS, "orders").await.unwrap();
    assert!(world.fake.get::<PodMonitor>(NS, "orders").is_none());
    assert!(
        !has_condition(&world, POD_MONITOR_READY),
        "no PodMonitor asked for, no condition"
    );
}

/// A PodMonitor of that name that is not ours: left alone, reported in PodMonitorReady only.
#[tokio::test]
async fn a_foreign_pod_monitor_is_left_alone_and_only_its_condition_says_so() {
    let world = World::new(&monitored());
    world.fake.serve_group(POD_MONITOR_GROUP, true);
    world.fake.create(&json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "orders"}}, "podMetricsEndpoints": [{"port": "http"}]}}));
    world.reconcile(NS, "orders").await.unwrap();
    let br = world.br(NS, "orders");
    assert_eq!(condition(&br, POD_MONITOR_READY).1, "NameConflict");
    assert_eq!(condition(&br, "Degraded").0, "False");
    let theirs: PodMonitor = world.fake.get(NS, "orders").unwrap();
    assert_eq!(theirs.spec.pod_metrics_endpoints[0].port, "http");
}

/// The running controller watches PodMonitors only once the CRD is served, and then applies the
/// PodMonitor within about a minute and a half, without a restart.
#[tokio::test(start_paused = true)]
async fn the_controller_notices_a_crd_installed_after_it_started() {
    let world = World::new(&monitored());
    tokio::spawn(crate::controller::run(
        world.fake.client(Caller::Operator),
        world.ctx.clone(),
        None,
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        condition(&world.br(NS, "orders"), POD_MONITOR_READY).1,
        "CRDNotInstalled"
    );
    let requests = world.operator_requests();
    assert!(requests.iter().all(|r| r.resource != "podmonitors"));
    let discoveries = requests.iter().filter(|r| r.verb == "discovery").count();
    assert!(
        discoveries <= 3,
        "{discoveries} discovery requests in 2 minutes"
    );

    world.fake.serve_group(POD_MONITOR_GROUP, true);
    tokio::time::sleep(Duration::from_secs(130)).await;
    assert!(world.fake.get::<PodMonitor>(NS, "orders").is_some());
    assert_eq!(
        condition(&world.br(NS, "orders"), POD_MONITOR_READY).0,
        "True"
    );
    let requests = world.operator_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.resource == "podmonitors" && r.verb == "watch"),
        "{:?}",
        writes(&requests)
    );
}

/// A default kube-prometheus-stack Prometheus selects PodMonitors by `release=<its release>`:
/// `spec.monitoring.podMonitorLabels` puts the labels on, and the condition names them.
#[tokio::test]
async fn the_pod_monitor_carries_the_labels_its_prometheus_selects() {
    let world = World::new(&monitored());
    world.fake.serve_group(POD_MONITOR_GROUP, true);
    let key = ObjectKey::of::<BulkRecorder>(NS, "orders");
    world.fake.edit(&key, "kubectl-edit", "", |b| {
        b["spec"]["monitoring"]["podMonitorLabels"] = json!({"release": "kps"})
    });
    world.reconcile(NS, "orders").await.unwrap();
    let monitor: PodMonitor = world.fake.get(NS, "orders").expect("a PodMonitor");
    let labels = monitor.metadata.labels.unwrap();
    assert_eq!(labels["release"], "kps");
    assert_eq!(labels["app.kubernetes.io/instance"], "orders");
    let (status, _, message) = condition(&world.br(NS, "orders"), POD_MONITOR_READY);
    assert_eq!(status, "True");
    assert!(message.contains("release=kps"), "{message}");
}
