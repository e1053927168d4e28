//! Issue 32, operations as a newcomer meets them: counts within seconds and nothing written for
//! an idle resource, `kubectl apply` of the example after `kubectl scale`, a refused permission
//! named and retried within seconds, each `Applied` event saying what its apply changed, and the
//! recorders' shutdown budget.

use std::time::Duration;

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::api::{apps::v1::Deployment, policy::v1::PodDisruptionBudget};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{NS, env, now, report, writes};
use crate::{
    fake_api::{Caller, FakeApiServer, Logged},
    fixtures::*,
    reconcile::{FORBIDDEN_RETRY, error_policy},
};

fn counted(world: &World) -> i64 {
    let status = world.br(NS, "orders").status.unwrap_or_default();
    status.counts.map(|c| c.transactions.inserted).unwrap_or(0)
}

fn status_writes(requests: &[Logged]) -> usize {
    requests
        .iter()
        .filter(|r| r.resource == "bulkrecorders/status" && r.method != "GET")
        .count()
}

fn start_controller(world: &World) {
    tokio::spawn(crate::controller::run(
        world.fake.client(Caller::Operator),
        world.ctx.clone(),
        None,
        std::future::pending(),
    ));
}

/// A report reaches `status.counts` within seconds (not on the next minute's visit); many
/// reports cost one status write per 5 s; an idle resource costs the operator no write at all.
#[tokio::test(start_paused = true)]
async fn counts_follow_reports_within_seconds_and_an_idle_resource_costs_no_write() {
    let world = World::new(&bulk_recorder("orders", NS));
    for pod in ["rec-0", "rec-1", "rec-2"] {
        world.fake.create(&recorder_pod(pod, NS, "orders"));
    }
    start_controller(&world);
    tokio::time::sleep(Duration::from_secs(5)).await;
    world.operator_requests();

    report(&world.fake, "rec-0", "s", 42, &now()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counted(&world), 42, "within 2 s of the report");

    // Three busy recorders, each reporting every second for 30 s.
    world.operator_requests();
    for second in 1..=30 {
        for pod in ["rec-0", "rec-1", "rec-2"] {
            report(&world.fake, pod, "s", 42 + second, &now()).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(counted(&world), 3 * 72, "the last reports are counted");
    let busy = status_writes(&world.operator_requests());
    assert!(busy <= 30 / 5 + 2, "{busy} status writes in 35 s");

    // Idle: no report, no change; in ten minutes the operator writes no status and no event,
    // only the resync's applies of its five objects (which the server persists as no change).
    tokio::time::sleep(Duration::from_secs(600)).await;
    let idle = writes(&world.operator_requests());
    let (resync, other): (Vec<_>, Vec<_>) = idle
        .iter()
        .partition(|w| w.contains("fieldManager=bulk-recorder-operator") && !w.contains("/status"));
    assert_eq!(other, Vec::<&String>::new(), "writes for an idle resource");
    assert!(resync.len() <= 5, "{resync:?}");
}

/// `kubectl apply --server-side -f examples/bulkrecorder.yaml` after `kubectl scale`: the
/// example leaves `replicas` out, so the apply keeps the scale and the PodDisruptionBudget.
#[tokio::test]
async fn reapplying_the_example_after_kubectl_scale_keeps_the_scale() {
    let text = include_str!("../../../examples/bulkrecorder.yaml");
    let mut example: Value = serde_yaml::from_str(text).expect("YAML");
    assert!(
        example["spec"].get("replicas").is_none(),
        "the example sets replicas"
    );
    example["metadata"]["namespace"] = json!(NS);
    let fake = FakeApiServer::new();
    for name in ["bulk-recorder-rabbitmq", "bulk-recorder-postgres"] {
        fake.create(&secret(name, NS));
    }
    let kubectl: Api<BulkRecorder> = Api::namespaced(fake.client(Caller::Editor), NS);
    let apply = PatchParams::apply("kubectl");
    kubectl
        .patch("ledger", &apply, &Patch::Apply(&example))
        .await
        .expect("an editor applies the example");
    kubectl
        .patch_scale(
            "ledger",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("kubectl scale");
    kubectl
        .patch("ledger", &apply, &Patch::Apply(&example))
        .await
        .expect("the same apply again, without force");

    let world = World {
        ctx: World::context(&fake),
        fake,
    };
    world.reconcile(NS, "ledger").await.unwrap();
    assert_eq!(world.br(NS, "ledger").spec.replicas, 2);
    let deployment: Deployment = world.fake.get(NS, "ledger").unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(2));
    assert!(
        world
            .fake
            .get::<PodDisruptionBudget>(NS, "ledger")
            .is_some()
    );
}

/// A Role without `patch` on Deployments: the reconcile fails naming the permission (in the
/// Degraded condition), and is retried every 5 s, so a grant is picked up within seconds.
#[tokio::test(start_paused = true)]
async fn a_refused_permission_is_named_and_retried_within_seconds_of_the_grant() {
    let world = World::new(&bulk_recorder("orders", NS));
    world
        .fake
        .revoke(Caller::Operator, "apps", "deployments", "patch");
    let error = world.reconcile(NS, "orders").await.expect_err("refused");
    assert!(error.is_forbidden());
    let br = std::sync::Arc::new(world.br(NS, "orders"));
    for _ in 0..10 {
        let action = error_policy(br.clone(), &error, world.ctx.clone());
        assert_eq!(
            action,
            kube::runtime::controller::Action::requeue(FORBIDDEN_RETRY)
        );
    }
    let (status, reason, message) = condition(&world.br(NS, "orders"), "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Forbidden"));
    assert!(
        message.contains(
            "cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"ledger\""
        ),
        "{message}"
    );

    start_controller(&world);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(world.fake.get::<Deployment>(NS, "orders").is_none());
    world.fake.grant();
    tokio::time::sleep(FORBIDDEN_RETRY + Duration::from_secs(1)).await;
    assert!(
        world.fake.get::<Deployment>(NS, "orders").is_some(),
        "applied within seconds of the grant"
    );
}

/// A watch refused (no `list` on pods): retried within seconds, not kube's 30 s.
#[tokio::test(start_paused = true)]
async fn a_refused_watch_recovers_within_seconds_of_the_grant() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.fake.create(&recorder_pod("rec-0", NS, "orders"));
    world.fake.revoke(Caller::Operator, "", "pods", "list");
    world.fake.revoke(Caller::Operator, "", "pods", "watch");
    start_controller(&world);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let (_, reason, message) = condition(&world.br(NS, "orders"), "Degraded");
    assert_eq!(reason, "Forbidden", "{message}");
    assert!(
        message.contains("cannot list resource \"pods\""),
        "{message}"
    );

    world.fake.grant();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (status, reason, _) = condition(&world.br(NS, "orders"), "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "AsExpected"));
}

fn applied_notes(requests: &[Logged]) -> Vec<String> {
    events(requests)
        .into_iter()
        .filter(|e| e.1 == "Applied")
        .map(|e| e.2)
        .collect()
}

async fn scale_to(world: &World, replicas: i32) {
    let api: Api<BulkRecorder> = Api::namespaced(world.fake.client(Caller::Editor), NS);
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    api.patch_scale("orders", &PatchParams::default(), &patch)
        .await
        .unwrap();
    world.reconcile(NS, "orders").await.unwrap();
}

/// An event series repeats its first note: each apply that changed other objects gets an event
/// of its own, and only the same note again counts in a series.
#[tokio::test]
async fn each_applied_event_says_what_that_apply_changed() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.reconcile(NS, "orders").await.unwrap();
    let first = applied_notes(&world.operator_requests());
    assert_eq!(
        first,
        ["applied ServiceAccount, Role, RoleBinding, Service, Deployment"]
    );
    scale_to(&world, 2).await;
    let requests = world.operator_requests();
    assert_eq!(
        applied_notes(&requests),
        ["applied Deployment, PodDisruptionBudget"]
    );
    scale_to(&world, 3).await;
    assert_eq!(
        applied_notes(&world.operator_requests()),
        ["applied Deployment"]
    );
    scale_to(&world, 4).await;
    let requests = world.operator_requests();
    assert!(
        applied_notes(&requests).is_empty(),
        "a repeat: no new event"
    );
    let series: Vec<&Value> = requests
        .iter()
        .filter(|r| r.resource == "events" && r.verb == "patch")
        .map(|r| &r.body)
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["series"]["count"], 2);
}

/// `spec.shutdownTimeoutSeconds` becomes the recorder's shutdown budget, and the pods' grace
/// period is that and 5 s more.
#[tokio::test]
async fn the_shutdown_budget_reaches_the_recorders_and_their_grace_period() {
    let mut br = bulk_recorder("orders", NS);
    br.spec.shutdown_timeout_seconds = 90;
    let world = World::new(&br);
    world.reconcile(NS, "orders").await.unwrap();
    let deployment: Deployment = world.fake.get(NS, "orders").unwrap();
    assert_eq!(
        env(&deployment, "BULK_RECORDER_SHUTDOWN_TIMEOUT_MS").as_deref(),
        Some("90000")
    );
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(95));
}
