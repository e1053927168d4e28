//! The scale subresource as `kubectl scale`, the HPA controller and KEDA use it, and the
//! PodDisruptionBudget that follows the replicas.

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::api::{
    apps::v1::Deployment, autoscaling::v1::Scale, policy::v1::PodDisruptionBudget,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::{NS, now, report_backlog};
use crate::{
    desired::selector_string,
    fake_api::{Caller, ObjectKey},
    fixtures::*,
};

fn scales(world: &World, caller: Caller) -> Api<BulkRecorder> {
    Api::namespaced(world.fake.client(caller), NS)
}

fn replicas(world: &World) -> (i32, Option<i32>) {
    let br = world.br(NS, "orders");
    let d: Deployment = world.fake.get(NS, "orders").unwrap();
    (br.spec.replicas, d.spec.unwrap().replicas)
}

fn api_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(e)) => e.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// What the HPA controller does every 15 s: read the scale (it refuses a target without a
/// selector), then replace it with the replicas it computed, under the resourceVersion it read.
#[tokio::test]
async fn an_autoscaler_reads_the_scale_and_its_update_reaches_the_deployment() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.reconcile(NS, "orders").await.unwrap();
    world.roll_out(NS, "orders");
    world.reconcile(NS, "orders").await.unwrap();
    let hpa = scales(&world, Caller::Autoscaler);
    let scale = hpa.get_scale("orders").await.expect("the HPA may read it");
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(1));
    let status = scale.status.clone().unwrap();
    assert_eq!(status.replicas, 1, "the Deployment's pods");
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=orders,app.kubernetes.io/name=bulk-recorder")
    );
    let d: Deployment = world.fake.get(NS, "orders").unwrap();
    let pods = d.spec.unwrap().selector.match_labels.unwrap();
    let selects: Vec<String> = pods.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        status.selector.unwrap(),
        selects.join(","),
        "exactly the Deployment's selector"
    );

    let mut wanted = scale.clone();
    wanted.spec.as_mut().unwrap().replicas = Some(3);
    let written = hpa
        .replace_scale("orders", &PostParams::default(), &wanted)
        .await
        .unwrap();
    assert_eq!(written.spec.unwrap().replicas, Some(3));
    let br = world.br(NS, "orders");
    assert_eq!((br.spec.replicas, br.metadata.generation), (3, Some(2)));
    assert!(
        world
            .fake
            .managers(&ObjectKey::of::<BulkRecorder>(NS, "orders"))
            .iter()
            .any(|m| m.ends_with("/Update/scale")),
        "the write is owned under the scale subresource"
    );
    // Its next write, still with the resourceVersion it read first, conflicts.
    let stale = hpa
        .replace_scale("orders", &PostParams::default(), &wanted)
        .await;
    assert_eq!(api_code(stale), 409);

    world.reconcile(NS, "orders").await.unwrap();
    assert_eq!(replicas(&world), (3, Some(3)));
    let budget: PodDisruptionBudget = world.fake.get(NS, "orders").expect("3 replicas: a PDB");
    assert_eq!(
        budget.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
}

/// `kubectl scale br orders --replicas=0` by a namespace editor (the chart aggregates the rule
/// into `edit`) is a merge patch of the scale; nobody else may scale.
#[tokio::test]
async fn kubectl_scale_by_an_editor_scales_to_zero_and_the_budget_goes() {
    let mut br = bulk_recorder("orders", NS);
    br.spec.replicas = 2;
    let world = World::new(&br);
    world.reconcile(NS, "orders").await.unwrap();
    assert!(
        world
            .fake
            .get::<PodDisruptionBudget>(NS, "orders")
            .is_some()
    );
    world.operator_requests();

    let kubectl = scales(&world, Caller::Editor);
    let patch = Patch::Merge(json!({"spec": {"replicas": 0}}));
    kubectl
        .patch_scale("orders", &PatchParams::default(), &patch)
        .await
        .expect("an editor may scale");
    for caller in [Caller::Operator, Caller::Recorder("orders".into())] {
        let refused = scales(&world, caller.clone())
            .patch_scale("orders", &PatchParams::default(), &patch)
            .await;
        assert_eq!(api_code(refused), 403, "{caller:?}");
    }

    world.reconcile(NS, "orders").await.unwrap();
    assert_eq!(replicas(&world), (0, Some(0)));
    assert!(
        world
            .fake
            .get::<PodDisruptionBudget>(NS, "orders")
            .is_none()
    );
    let (status, reason, _) = condition(&world.br(NS, "orders"), "Ready");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ScaledToZero")
    );
    let requests = world.operator_requests();
    let deleted = events(&requests);
    assert!(
        deleted
            .iter()
            .any(|e| e.1 == "Deleted" && e.2.contains("PodDisruptionBudget orders")),
        "{deleted:?}"
    );
}

/// The scale is checked as the API server checks it: the Scale's own rule (not negative), the
/// CRD's schema (at most 100), JSON types, JSON patch tests; a scale to the same value changes
/// nothing at all.
#[tokio::test]
async fn the_scale_refuses_what_the_schema_refuses_and_a_no_op_changes_nothing() {
    let world = World::new(&bulk_recorder("orders", NS));
    let kubectl = scales(&world, Caller::Editor);
    let patch = |replicas: serde_json::Value| Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = PatchParams::default();
    for (value, code) in [(json!(101), 422), (json!(-1), 422), (json!("two"), 400)] {
        let refused = kubectl
            .patch_scale("orders", &params, &patch(value.clone()))
            .await;
        assert_eq!(api_code(refused), code, "{value}");
    }
    let test = Patch::<()>::Json(
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 5},
            {"op": "replace", "path": "/spec/replicas", "value": 2}]))
        .unwrap(),
    );
    assert_eq!(
        api_code(kubectl.patch_scale("orders", &params, &test).await),
        422
    );
    let before = world.br(NS, "orders").metadata;
    kubectl
        .patch_scale("orders", &params, &patch(json!(1)))
        .await
        .unwrap();
    let after = world.br(NS, "orders").metadata;
    assert_eq!(
        (before.resource_version, before.generation),
        (after.resource_version, after.generation)
    );
    let missing = kubectl.get_scale("nothing").await;
    assert_eq!(api_code(missing), 404);
}

/// Server-side apply of a Scale takes `spec.replicas` under its own manager, and, without force,
/// conflicts with another manager's value.
#[tokio::test]
async fn an_applied_scale_owns_the_replicas_and_conflicts_without_force() {
    let world = World::new(&bulk_recorder("orders", NS));
    let kubectl = scales(&world, Caller::Editor);
    let scale = |n: i32| -> Scale {
        serde_json::from_value(json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "orders"}, "spec": {"replicas": n}}))
        .unwrap()
    };
    kubectl
        .patch_scale(
            "orders",
            &PatchParams::apply("keda").force(),
            &Patch::Apply(scale(4)),
        )
        .await
        .unwrap();
    assert_eq!(world.br(NS, "orders").spec.replicas, 4);
    let refused = kubectl
        .patch_scale(
            "orders",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(scale(2)),
        )
        .await;
    assert_eq!(api_code(refused), 409);
    assert_eq!(world.br(NS, "orders").spec.replicas, 4);
}

#[tokio::test]
async fn the_budget_follows_replicas_and_its_switch_and_a_foreign_one_is_left_alone() {
    let mut br = bulk_recorder("orders", NS);
    br.spec.replicas = 3;
    br.spec.pod_disruption_budget = false;
    let world = World::new(&br);
    world.reconcile(NS, "orders").await.unwrap();
    assert!(
        world
            .fake
            .get::<PodDisruptionBudget>(NS, "orders")
            .is_none(),
        "switched off"
    );

    // Somebody else's budget of that name: reported, never adopted, never deleted.
    let theirs = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "orders"}}}});
    world.fake.create(&theirs);
    let key = ObjectKey::of::<BulkRecorder>(NS, "orders");
    world.fake.edit(&key, "kubectl-edit", "", |b| {
        b["spec"]["podDisruptionBudget"] = json!(true)
    });
    world.reconcile(NS, "orders").await.unwrap();
    let (_, reason, message) = condition(&world.br(NS, "orders"), "Degraded");
    assert_eq!(reason, "NameConflict");
    assert!(
        message.contains("PodDisruptionBudget orders exists"),
        "{message}"
    );
    world.fake.edit(&key, "kubectl-edit", "", |b| {
        b["spec"]["replicas"] = json!(1)
    });
    world.reconcile(NS, "orders").await.unwrap();
    let kept: PodDisruptionBudget = world.fake.get(NS, "orders").expect("not ours: kept");
    assert!(kept.metadata.owner_references.is_none());
    assert_eq!(condition(&world.br(NS, "orders"), "Degraded").0, "False");
}

/// `status.backlog` is the latest measurement of the queue (one queue, so not a sum).
#[tokio::test]
async fn the_status_carries_the_latest_backlog_and_the_pod_selector() {
    let world = World::new(&bulk_recorder("orders", NS));
    for pod in ["rec-0", "rec-1"] {
        world.fake.create(&recorder_pod(pod, NS, "orders"));
    }
    let earlier = (chrono::Utc::now() - chrono::Duration::seconds(20))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report_backlog(&world.fake, "rec-0", "s1", 10, &earlier, Some(900)).await;
    report_backlog(&world.fake, "rec-1", "s1", 10, &now(), Some(850)).await;
    world.reconcile(NS, "orders").await.unwrap();
    let status = world.br(NS, "orders").status.unwrap();
    assert_eq!(status.backlog, Some(850));
    assert_eq!(
        status.selector,
        Some(selector_string(&world.br(NS, "orders")))
    );
}
