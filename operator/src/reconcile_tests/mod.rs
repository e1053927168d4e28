//! The reconciler against the fake API server (server-side apply with field managers, the status
//! and scale subresources, RBAC from `rbac.rs`, OwnerReferencesPermissionEnforcement): each test
//! states a cluster, reconciles, and checks what the cluster holds and what the operator sent.
//! Autoscaling and disruption budgets are in [`scaling`], PodMonitors in [`monitoring`].

mod monitoring;
mod operations;
mod scaling;

use std::{collections::BTreeMap, sync::Arc};

use bulk_recorder_crds::{BulkRecorder, report_field_manager};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, ResourceRequirements},
        rbac::v1::Role,
    },
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{
    desired::SECRET_VERSIONS_ANNOTATION,
    fake_api::{Caller, FakeApiServer, ObjectKey},
    fixtures::*,
    reconcile::REFRESH,
};

pub(super) const NS: &str = "ledger";

pub(super) fn env(deployment: &Deployment, name: &str) -> Option<String> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

pub(super) fn writes(requests: &[crate::fake_api::Logged]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_new_resource_gets_its_objects_applied_and_a_status() {
    let world = World::new(&bulk_recorder("orders", NS));
    let action = world.reconcile(NS, "orders").await.expect("reconciled");
    assert_eq!(action, kube::runtime::controller::Action::requeue(REFRESH));

    let deployment: Deployment = world.fake.get(NS, "orders").expect("a Deployment");
    assert_eq!(
        env(&deployment, "BULK_RECORDER_SIZE").as_deref(),
        Some("50")
    );
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("BulkRecorder", Some(true))
    );
    assert!(
        world
            .fake
            .managers(&ObjectKey::of::<Deployment>(NS, "orders"))
            .contains(&"bulk-recorder-operator/Apply/".to_string())
    );
    for (resource, name) in [
        ("serviceaccounts", "orders-recorder"),
        ("roles", "orders-recorder"),
        ("rolebindings", "orders-recorder"),
        ("services", "orders-metrics"),
    ] {
        let key = ObjectKey {
            group: if resource.starts_with("role") {
                "rbac.authorization.k8s.io".into()
            } else {
                String::new()
            },
            resource: resource.into(),
            namespace: NS.into(),
            name: name.into(),
        };
        assert!(world.fake.get_value(&key).is_some(), "{resource} {name}");
    }
    let br = world.br(NS, "orders");
    let status = br.status.clone().unwrap();
    assert_eq!(status.effective_size, Some(50));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        condition(&br, "Ready").0,
        "False",
        "no recorder is ready yet"
    );
    let requests = world.operator_requests();
    let applied = events(&requests);
    assert_eq!(applied[0].1, "Applied");
    assert!(applied[0].2.contains("Deployment"), "{applied:?}");
}

/// Item 4 of issue 11: with OwnerReferencesPermissionEnforcement (OpenShift), setting owner
/// references needs `delete` on the object and `update` on bulkrecorders/finalizers. The fake
/// enforces it; a table without those verbs makes every create fail with 403.
#[tokio::test]
async fn owner_references_are_allowed_under_owner_reference_enforcement() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.reconcile(NS, "orders").await.expect("reconciled");
    let refused: Vec<_> = world
        .operator_requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

/// Without the controller's stores (a reconcile on its own) the operator applies every time:
/// the server persists nothing, and the operator writes no status and no event.
#[tokio::test]
async fn a_reconcile_with_nothing_to_change_changes_nothing() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.reconcile(NS, "orders").await.unwrap();
    world.roll_out(NS, "orders");
    world.reconcile(NS, "orders").await.unwrap();
    let version = |w: &World| {
        w.fake
            .get::<Deployment>(NS, "orders")
            .unwrap()
            .metadata
            .resource_version
    };
    let before = version(&world);
    world.operator_requests();

    world.reconcile(NS, "orders").await.unwrap();
    let requests = world.operator_requests();
    assert_eq!(version(&world), before, "no-op applies are not persisted");
    let other_writes: Vec<String> = writes(&requests)
        .into_iter()
        .filter(|w| w.contains("/status") || w.contains("/events"))
        .collect();
    assert_eq!(other_writes, Vec::<String>::new());
}

/// Item 6: a field the operator stops setting leaves the Deployment (a comparison of desired
/// and live objects never noticed it).
#[tokio::test]
async fn removing_resources_from_the_spec_removes_them_from_the_deployment() {
    let mut br = bulk_recorder("orders", NS);
    br.spec.resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".into(),
            Quantity("256Mi".into()),
        )])),
        ..Default::default()
    });
    let world = World::new(&br);
    world.reconcile(NS, "orders").await.unwrap();
    let container = |w: &World| {
        let d: Deployment = w.fake.get(NS, "orders").unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0].clone()
    };
    assert!(container(&world).resources.is_some());

    world.fake.edit(
        &ObjectKey::of::<BulkRecorder>(NS, "orders"),
        "kubectl-edit",
        "",
        |b| {
            b["spec"].as_object_mut().unwrap().remove("resources");
        },
    );
    world.reconcile(NS, "orders").await.unwrap();
    assert_eq!(container(&world).resources, None);
}

/// Item 6: the server stores `cpu: "0.5"` as `500m`; the operator applies again (after a restart
/// here), the server persists nothing, and no Applied event is emitted.
#[tokio::test]
async fn a_quantity_the_server_canonicalises_is_no_change_and_no_event() {
    let mut br = bulk_recorder("orders", NS);
    br.spec.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".into(), Quantity("0.5".into()))])),
        ..Default::default()
    });
    let world = World::new(&br);
    world.reconcile(NS, "orders").await.unwrap();
    let stored: Deployment = world.fake.get(NS, "orders").unwrap();
    let cpu = stored.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap()["cpu"]
        .clone();
    assert_eq!(cpu.0, "500m", "the fake canonicalises like the API server");
    world.operator_requests();

    let restarted = World {
        fake: world.fake.clone(),
        ctx: World::context(&world.fake),
    };
    restarted.reconcile(NS, "orders").await.unwrap();
    let requests = restarted.operator_requests();
    assert!(
        writes(&requests)
            .iter()
            .any(|w| w.starts_with("PATCH") && w.contains("/deployments/orders")),
        "applied again: {:?}",
        writes(&requests)
    );
    assert!(
        !events(&requests).iter().any(|e| e.1 == "Applied"),
        "{:?}",
        events(&requests)
    );
}

#[tokio::test]
async fn a_hand_edited_deployment_is_restored() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.reconcile(NS, "orders").await.unwrap();
    world.fake.edit(
        &ObjectKey::of::<Deployment>(NS, "orders"),
        "kubectl-edit",
        "",
        |d| {
            d["spec"]["replicas"] = json!(3);
            let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap();
            for e in env {
                if e["name"] == "RABBITMQ_NUMBERS_OF_PREFETCH" {
                    e["value"] = json!("999");
                }
            }
        },
    );
    world.reconcile(NS, "orders").await.unwrap();
    let restored: Deployment = world.fake.get(NS, "orders").unwrap();
    assert_eq!(restored.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        env(&restored, "RABBITMQ_NUMBERS_OF_PREFETCH").as_deref(),
        Some("10")
    );
}

/// Item 7: a same-named object somebody else created is neither replaced nor adopted.
#[tokio::test]
async fn objects_this_resource_does_not_control_are_left_alone_and_reported() {
    let world = World::new(&bulk_recorder("orders", NS));
    let theirs = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "orders-recorder", "namespace": NS},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
    world.fake.create(&theirs);
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "orders", "namespace": NS, "labels": {"team": "payments"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "orders"}},
            "template": {"metadata": {"labels": {"app": "orders"}},
                "spec": {"containers": [{"name": "orders", "image": "payments/orders:1"}]}}}});
    world.fake.create(&deployment);

    world
        .reconcile(NS, "orders")
        .await
        .expect("reported, not failed");
    let role: Role = world.fake.get(NS, "orders-recorder").unwrap();
    assert_eq!(
        role.rules.unwrap()[0].resources,
        Some(vec!["configmaps".into()])
    );
    assert!(role.metadata.owner_references.is_none(), "not adopted");
    let d: Deployment = world.fake.get(NS, "orders").unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    let br = world.br(NS, "orders");
    let (status, reason, message) = condition(&br, "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "NameConflict"));
    assert!(message.contains("Role orders-recorder exists"), "{message}");
    assert!(message.contains("Deployment orders exists"), "{message}");
    let requests = world.operator_requests();
    assert!(
        events(&requests)
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "NameConflict")
    );
}

#[tokio::test]
async fn a_missing_secret_is_reported_as_degraded_with_an_event() {
    let world = World::new(&bulk_recorder("orders", NS));
    world
        .fake
        .delete(&ObjectKey::of::<k8s_openapi::api::core::v1::Secret>(
            NS, "rabbitmq",
        ));
    world.reconcile(NS, "orders").await.expect("reconciled");
    let br = world.br(NS, "orders");
    let (status, reason, message) = condition(&br, "Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "SecretMissing")
    );
    assert!(message.contains("secret rabbitmq (key url)"), "{message}");
    let requests = world.operator_requests();
    assert!(
        events(&requests)
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "SecretMissing")
    );
}

/// Redis's Secret is checked and versioned like the others: missing, it is reported; created,
/// its version joins the pod template's, so rotating it rolls the recorders.
#[tokio::test]
async fn the_redis_secret_is_checked_and_rolls_the_recorders_like_the_others() {
    let mut br = bulk_recorder("orders", NS);
    br.spec.redis = Some(bulk_recorder_crds::RedisSpec {
        url_secret_ref: bulk_recorder_crds::SecretKeyRef {
            name: "redis".into(),
            key: "url".into(),
        },
    });
    let world = World::new(&br);
    world.reconcile(NS, "orders").await.unwrap();
    let (_, reason, message) = condition(&world.br(NS, "orders"), "Degraded");
    assert_eq!(reason, "SecretMissing");
    assert!(message.contains("secret redis (key url)"), "{message}");

    world.fake.create(&secret("redis", NS));
    let later = World {
        fake: world.fake.clone(),
        ctx: World::context(&world.fake),
    };
    later.reconcile(NS, "orders").await.unwrap();
    assert_eq!(condition(&later.br(NS, "orders"), "Degraded").0, "False");
    let d: Deployment = later.fake.get(NS, "orders").unwrap();
    let template = d.spec.unwrap().template.metadata.unwrap();
    let versions = &template.annotations.unwrap()[SECRET_VERSIONS_ANNOTATION];
    assert!(versions.contains("redis="), "{versions}");
}

/// spec.mongodb, spec.events and spec.tracing, applied with `kubectl apply` (as JSON through
/// the API server's schema defaulting), reach the recorders' environment; the document store's
/// URL is a Secret, checked and versioned like the others.
#[tokio::test]
async fn the_document_store_events_and_tracing_reach_the_recorders() {
    let br = bulk_recorder("orders", NS);
    let world = World::new(&br);
    let key = ObjectKey::of::<BulkRecorder>(NS, "orders");
    world.fake.edit(&key, "kubectl-client-side-apply", "", |b| {
        b["spec"]["mongodb"] = json!({"urlSecretRef": {"name": "mongo", "key": "url"}});
        b["spec"]["events"] = json!({
            "transactions": "transaction.transaction_events.exchange",
            "version": "v4.0.0"
        });
        b["spec"]["tracing"] = json!({
            "endpoint": "http://otel-collector.observability:4317",
            "sampler": "parentbased_traceidratio",
            "samplerArg": "0.25"
        });
    });
    world.fake.create(&secret("mongo", NS));
    world.reconcile(NS, "orders").await.unwrap();
    assert_eq!(condition(&world.br(NS, "orders"), "Degraded").0, "False");
    let d: Deployment = world.fake.get(NS, "orders").unwrap();
    let template = d.spec.unwrap().template;
    let versions = &template.metadata.unwrap().annotations.unwrap()[SECRET_VERSIONS_ANNOTATION];
    assert!(versions.contains("mongo="), "{versions}");
    let env = template.spec.unwrap().containers.remove(0).env.unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        value("MONGODB_DATABASE").as_deref(),
        Some("transaction"),
        "the schema's default"
    );
    let url = env
        .iter()
        .find(|e| e.name == "MONGODB_URL")
        .expect("MONGODB_URL");
    assert_eq!(url.value, None, "from its Secret, never a plain value");
    assert_eq!(
        value("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE").as_deref(),
        Some("transaction.transaction_events.exchange")
    );
    assert_eq!(value("RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE"), None);
    assert_eq!(value("VERSION").as_deref(), Some("v4.0.0"));
    assert_eq!(
        value("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://otel-collector.observability:4317")
    );
    assert_eq!(
        value("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        value("OTEL_TRACES_SAMPLER").as_deref(),
        Some("parentbased_traceidratio")
    );
    assert_eq!(value("OTEL_TRACES_SAMPLER_ARG").as_deref(), Some("0.25"));
}

#[tokio::test]
async fn an_invalid_spec_that_slipped_past_the_schema_is_degraded_and_applies_nothing() {
    // An API server without CEL (or an object stored before the rule) can hold this.
    let mut br = bulk_recorder("orders", NS);
    br.spec.size = Some(10_000);
    let world = World::new(&br);
    world
        .reconcile(NS, "orders")
        .await
        .expect("reported, not failed");
    assert!(world.fake.get::<Deployment>(NS, "orders").is_none());
    let (_, reason, message) = condition(&world.br(NS, "orders"), "Degraded");
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.size 10000 is outside 1..=50"),
        "{message}"
    );
}

/// Item 3: a name stored before the schema refused it cannot name a Service; the operator says
/// so instead of failing on every reconcile.
#[tokio::test]
async fn a_name_that_cannot_name_a_service_is_degraded_and_applies_nothing() {
    for name in ["orders.v2", "2024-ledger"] {
        let world = World::new(&bulk_recorder(name, NS));
        world
            .reconcile(NS, name)
            .await
            .expect("reported, not failed");
        assert!(world.fake.get::<Deployment>(NS, name).is_none());
        let (status, reason, message) = condition(&world.br(NS, name), "Degraded");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidName"));
        assert!(message.contains("-metrics"), "{message}");
    }
}

/// One recorder process's report, as `recorder/src/telemetry/status_report.rs` applies it.
pub(super) async fn report(
    fake: &FakeApiServer,
    pod: &str,
    start_id: &str,
    inserted: i64,
    at: &str,
) {
    report_backlog(fake, pod, start_id, inserted, at, None).await;
}

/// A report with the queue's backlog as the recorder measured it (`None`: a recorder that does
/// not measure it).
pub(super) async fn report_backlog(
    fake: &FakeApiServer,
    pod: &str,
    start_id: &str,
    inserted: i64,
    at: &str,
    backlog: Option<i64>,
) {
    let api: Api<BulkRecorder> =
        Api::namespaced(fake.client(Caller::Recorder("orders".into())), NS);
    let rows = json!({"attempted": inserted, "inserted": inserted, "ignored": 0, "updated": 0, "conflicting": 0});
    let mut entry = json!({"pod": pod, "startId": start_id, "transactions": rows,
        "operations": rows, "lastReport": at});
    if let Some(backlog) = backlog {
        entry["backlog"] = json!(backlog);
    }
    let body = json!({"apiVersion": "bulkrecorder.io/v1alpha1", "kind": "BulkRecorder",
        "metadata": {"name": "orders"}, "status": {"recorders": [entry]}});
    api.patch_status(
        "orders",
        &PatchParams::apply(&report_field_manager(pod, start_id)).force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("a recorder may apply its own entry");
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn inserted(br: &BulkRecorder) -> i64 {
    br.status
        .as_ref()
        .and_then(|s| s.counts)
        .map(|c| c.transactions.inserted)
        .unwrap_or_default()
}

/// Item 1 of issue 11, as it went on a real API server: one incarnation of pod rec-0 inserted
/// 300, the next 200; the total must be 500, not 200.
#[tokio::test]
async fn a_restarted_recorder_keeps_its_predecessors_counts() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.fake.create(&recorder_pod("rec-0", NS, "orders"));
    world.reconcile(NS, "orders").await.unwrap();

    let earlier = (chrono::Utc::now() - chrono::Duration::seconds(40))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report(&world.fake, "rec-0", "first", 300, &earlier).await;
    report(&world.fake, "rec-0", "second", 200, &now()).await;
    let entries = world.br(NS, "orders").status.unwrap().recorders;
    assert_eq!(
        entries.len(),
        2,
        "each incarnation's entry survives the other's apply"
    );

    world.reconcile(NS, "orders").await.unwrap();
    let br = world.br(NS, "orders");
    let status = br.status.clone().unwrap();
    assert_eq!(inserted(&br), 500);
    assert_eq!(status.folded.unwrap().transactions.inserted, 300);
    assert_eq!(status.recorders.len(), 1);
    assert_eq!(status.recorders[0].start_id, "second");
}

/// Why the field manager is per incarnation: with one manager per pod, the second incarnation's
/// apply removes the first one's entry (server-side apply's list-map semantics).
#[tokio::test]
async fn one_field_manager_for_both_incarnations_would_lose_the_first() {
    let fake = FakeApiServer::new();
    fake.create(&bulk_recorder("orders", NS));
    let api: Api<BulkRecorder> =
        Api::namespaced(fake.client(Caller::Recorder("orders".into())), NS);
    for (start_id, n) in [("first", 300), ("second", 200)] {
        let body = json!({"apiVersion": "bulkrecorder.io/v1alpha1", "kind": "BulkRecorder",
            "metadata": {"name": "orders"}, "status": {"recorders": [{"pod": "rec-0",
                "startId": start_id, "transactions": {"attempted": n, "inserted": n, "ignored": 0},
                "operations": {"attempted": n, "inserted": n, "ignored": 0}, "lastReport": now()}]}});
        api.patch_status(
            "orders",
            &PatchParams::apply("bulk-recorder-recorder-rec-0").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    }
    let br: BulkRecorder = fake.get(NS, "orders").unwrap();
    let entries = br.status.unwrap().recorders;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].start_id, "second");
}

#[tokio::test]
async fn entries_of_gone_pods_are_folded_into_the_totals_exactly_once() {
    let world = World::new(&bulk_recorder("orders", NS));
    world
        .fake
        .create(&recorder_pod("orders-live", NS, "orders"));
    report(&world.fake, "orders-gone", "a", 100, "2020-01-01T00:00:00Z").await;
    report(&world.fake, "orders-live", "b", 10, &now()).await;

    world.reconcile(NS, "orders").await.unwrap();
    let status = world.br(NS, "orders").status.unwrap();
    assert_eq!(status.recorders.len(), 1);
    assert_eq!(status.folded.unwrap().transactions.inserted, 100);
    assert_eq!(status.counts.unwrap().transactions.inserted, 110);
    let fold = world
        .operator_requests()
        .into_iter()
        .find(|r| r.body.is_array())
        .expect("a JSON patch");
    assert_eq!(
        fold.body[0],
        json!({"op": "test", "path": "/status/recorders/0/pod", "value": "orders-gone"})
    );

    world.reconcile(NS, "orders").await.unwrap();
    let status = world.br(NS, "orders").status.unwrap();
    assert_eq!(
        status.counts.unwrap().transactions.inserted,
        110,
        "never counted twice"
    );
}

/// Item 10: a recorder reporting between the operator's read and its fold makes the guarded
/// JSON patch fail (422); the operator reads again and folds, instead of failing and backing
/// off.
#[tokio::test]
async fn a_lost_fold_race_reads_the_status_again_and_folds() {
    let world = World::new(&bulk_recorder("orders", NS));
    world
        .fake
        .create(&recorder_pod("orders-live", NS, "orders"));
    report(&world.fake, "orders-gone", "a", 100, "2020-01-01T00:00:00Z").await;
    let stale = world.br(NS, "orders");
    // A new pod reports first: its entry takes index 0 in the list the operator has not seen.
    let api: Api<BulkRecorder> = Api::namespaced(world.fake.client(Caller::Admin), NS);
    let rows = json!({"attempted": 5, "inserted": 5, "ignored": 0});
    api.patch_status(
        "orders",
        &PatchParams::default(),
        &Patch::<()>::Json(
            serde_json::from_value(json!([{"op": "add", "path": "/status/recorders/0", "value":
                {"pod": "orders-live", "startId": "b", "transactions": rows, "operations": rows,
                 "lastReport": now()}}]))
            .unwrap(),
        ),
    )
    .await
    .unwrap();

    let action = crate::reconcile::reconcile(Arc::new(stale), world.ctx.clone())
        .await
        .expect("not a failure");
    assert_eq!(action, kube::runtime::controller::Action::requeue(REFRESH));
    let status = world.br(NS, "orders").status.unwrap();
    assert_eq!(status.recorders.len(), 1);
    assert_eq!(status.recorders[0].pod, "orders-live");
    assert_eq!(status.folded.unwrap().transactions.inserted, 100);
    assert_eq!(status.counts.unwrap().transactions.inserted, 105);
    let requests = world.operator_requests();
    assert!(
        requests.iter().any(|r| r.status == 422),
        "the race happened"
    );
    assert_eq!(world.ctx.metrics.failures.get(), 0);
}

/// Item 10: the operator's status fields are applied under its own field manager, beside the
/// recorders' entries.
#[tokio::test]
async fn the_status_is_applied_under_the_operators_field_manager() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.fake.create(&recorder_pod("rec-0", NS, "orders"));
    report(&world.fake, "rec-0", "s1", 7, &now()).await;
    world.reconcile(NS, "orders").await.unwrap();
    let managers = world
        .fake
        .managers(&ObjectKey::of::<BulkRecorder>(NS, "orders"));
    assert!(
        managers.contains(&"bulk-recorder-operator/Apply/status".to_string()),
        "{managers:?}"
    );
    assert!(managers.contains(&format!(
        "{}/Apply/status",
        report_field_manager("rec-0", "s1")
    )));
    let status = world.br(NS, "orders").status.unwrap();
    assert_eq!(status.recorders.len(), 1);
    assert_eq!(status.counts.unwrap().transactions.inserted, 7);
}

/// Item 10: a rotated Secret rolls the recorders (its version is in the pod template).
#[tokio::test]
async fn a_rotated_secret_rolls_the_recorders() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.reconcile(NS, "orders").await.unwrap();
    let versions = |w: &World| {
        let d: Deployment = w.fake.get(NS, "orders").unwrap();
        d.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[SECRET_VERSIONS_ANNOTATION]
            .clone()
    };
    let before = versions(&world);
    assert!(
        before.contains("postgres=") && before.contains("rabbitmq="),
        "{before}"
    );

    world.edit_secret(NS, "postgres", "cG9zdGdyZXM6Ly9uZXc=");
    let later = World {
        fake: world.fake.clone(),
        ctx: World::context(&world.fake),
    };
    later.reconcile(NS, "orders").await.unwrap();
    assert_ne!(versions(&later), before);
    let requests = later.operator_requests();
    assert!(events(&requests).iter().any(|e| e.1 == "Applied"));
}

/// Item 8: an API error shows in the Degraded condition and a Warning event, not only in a log.
#[tokio::test]
async fn a_failed_reconcile_reports_the_api_error_in_a_condition_and_an_event() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.fake.fail("PATCH", "/deployments/orders", 500, 1);
    let error = world.reconcile(NS, "orders").await.expect_err("failed");
    assert!(
        error.to_string().contains("applying Deployment orders"),
        "{error}"
    );
    let (status, reason, message) = condition(&world.br(NS, "orders"), "Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ReconcileError")
    );
    assert!(message.contains("applying Deployment orders"), "{message}");
    let requests = world.operator_requests();
    assert!(
        events(&requests)
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "ReconcileError")
    );

    // The next reconcile succeeds and clears it.
    world.reconcile(NS, "orders").await.unwrap();
    assert_eq!(condition(&world.br(NS, "orders"), "Degraded").0, "False");
}

/// Item 8: without the CRD the operator stops at start-up with a message that says what to do.
#[tokio::test]
async fn the_operator_checks_at_start_up_that_the_crd_is_installed() {
    use crate::startup::{StartupError, check_crd};
    let fake = FakeApiServer::new();
    check_crd(&fake.client(Caller::Operator))
        .await
        .expect("installed");
    fake.without_crd();
    let error = check_crd(&fake.client(Caller::Operator))
        .await
        .expect_err("missing");
    assert!(matches!(error, StartupError::CrdMissing));
    assert!(
        error
            .to_string()
            .contains("kubectl apply --server-side -f crds/bulkrecorder.yaml")
    );
}

#[tokio::test]
async fn failures_back_off_from_5_seconds_up_to_5_minutes() {
    use crate::reconcile::{Error, error_policy};
    use kube::runtime::controller::Action;
    use std::time::Duration;

    let br = Arc::new(bulk_recorder("orders", NS));
    let world = World::new(&br);
    let delays: Vec<Action> = (0..10)
        .map(|_| error_policy(br.clone(), &Error::NoNamespace, world.ctx.clone()))
        .collect();
    assert_eq!(delays[0], Action::requeue(Duration::from_secs(5)));
    assert_eq!(delays[1], Action::requeue(Duration::from_secs(10)));
    assert_eq!(delays[9], Action::requeue(Duration::from_secs(300)));
    assert_eq!(world.ctx.metrics.failures.get(), 10);
}

/// Item 9: the running controller reads owned objects and pods from its watches (no GETs or
/// LISTs for them), and folds a deleted pod's counts as soon as the pod is gone.
#[tokio::test(start_paused = true)]
async fn the_controller_reads_from_its_watches_and_folds_deleted_pods_promptly() {
    let world = World::new(&bulk_recorder("orders", NS));
    world.fake.create(&recorder_pod("rec-0", NS, "orders"));
    tokio::spawn(crate::controller::run(
        world.fake.client(Caller::Operator),
        world.ctx.clone(),
        None,
        std::future::pending(),
    ));
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(world.fake.get::<Deployment>(NS, "orders").is_some());
    report(&world.fake, "rec-0", "s1", 42, &now()).await;
    world.operator_requests();

    tokio::time::sleep(std::time::Duration::from_secs(300)).await;
    let requests = world.operator_requests();
    let reads: Vec<String> = requests
        .iter()
        .filter(|r| r.verb == "get" || r.verb == "list")
        .filter(|r| r.resource != "secrets")
        .map(|r| format!("{} {}", r.verb, r.path))
        .collect();
    assert_eq!(
        reads,
        Vec::<String>::new(),
        "owned objects and pods come from the stores"
    );
    let owned_writes: Vec<String> = writes(&requests)
        .into_iter()
        .filter(|w| !w.contains("/bulkrecorders/") && !w.contains("/events"))
        .collect();
    assert_eq!(
        owned_writes,
        Vec::<String>::new(),
        "nothing changed, nothing applied"
    );
    let secret_reads = requests.iter().filter(|r| r.resource == "secrets").count();
    assert!(
        secret_reads <= 2 * 6,
        "{secret_reads} Secret reads in 5 minutes"
    );
    assert_eq!(inserted(&world.br(NS, "orders")), 42);

    world.fake.delete(&ObjectKey::of::<Pod>(NS, "rec-0"));
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let status = world.br(NS, "orders").status.unwrap();
    assert!(
        status.recorders.is_empty(),
        "folded within seconds, not after the grace"
    );
    assert_eq!(status.folded.unwrap().transactions.inserted, 42);
    assert_eq!(status.counts.unwrap().transactions.inserted, 42);
}
