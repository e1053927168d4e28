//! The reconciler against a scripted API server: each test reads as the conversation a
//! reconcile must have.

use std::sync::Arc;

use bulk_recorder_crds::{BulkRecorderStatus, RecorderReport, RowCounts};
use serde_json::{Value, json};

use crate::{
    conditions::{self, Observed},
    desired,
    fixtures::*,
    reconcile::reconcile,
};

const NS: &str = "/api/v1/namespaces/ledger";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/ledger";
const APPS: &str = "/apis/apps/v1/namespaces/ledger";
const STATUS: &str = "/apis/bulkrecorder.io/v1alpha1/namespaces/ledger/bulkrecorders/orders/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ledger/events";

fn secrets_exist() -> Vec<Exchange> {
    vec![
        expect(
            "GET",
            format!("{NS}/secrets/rabbitmq"),
            200,
            secret("rabbitmq"),
        ),
        expect(
            "GET",
            format!("{NS}/secrets/postgres"),
            200,
            secret("postgres"),
        ),
    ]
}

fn env(deployment: &Value, name: &str) -> Value {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The owned objects as the API server returns them once they exist (with a ready rollout).
fn existing(br: &bulk_recorder_crds::BulkRecorder) -> Vec<Exchange> {
    let mut deployment =
        serde_json::to_value(desired::deployment(br, "bulk-recorder:test")).unwrap();
    deployment["metadata"]["generation"] = json!(1);
    deployment["status"] =
        json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1});
    vec![
        expect(
            "GET",
            format!("{NS}/serviceaccounts/orders-recorder"),
            200,
            serde_json::to_value(desired::service_account(br)).unwrap(),
        ),
        expect(
            "GET",
            format!("{RBAC}/roles/orders-recorder"),
            200,
            serde_json::to_value(desired::role(br)).unwrap(),
        ),
        expect(
            "GET",
            format!("{RBAC}/rolebindings/orders-recorder"),
            200,
            serde_json::to_value(desired::role_binding(br)).unwrap(),
        ),
        expect(
            "GET",
            format!("{NS}/services/orders-metrics"),
            200,
            serde_json::to_value(desired::service(br)).unwrap(),
        ),
        expect("GET", format!("{APPS}/deployments/orders"), 200, deployment),
    ]
}

/// The status a previous reconcile of `br` would have written when all is well.
fn settled_status(br: &bulk_recorder_crds::BulkRecorder) -> BulkRecorderStatus {
    let observed = Observed {
        desired_replicas: 1,
        ready_replicas: 1,
        updated_replicas: 1,
        rollout_observed: true,
        ..Default::default()
    };
    BulkRecorderStatus {
        observed_generation: Some(1),
        effective_size: Some(50),
        replicas: Some(1),
        ready_replicas: Some(1),
        conditions: conditions::compute(&observed, br.metadata.generation, &[]),
        counts: Some(Default::default()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_resource_gets_its_objects_applied_and_a_status() {
    let br = bulk_recorder("orders", "ledger");
    let mut script = secrets_exist();
    for path in [
        format!("{NS}/serviceaccounts/orders-recorder"),
        format!("{RBAC}/roles/orders-recorder"),
        format!("{RBAC}/rolebindings/orders-recorder"),
        format!("{NS}/services/orders-metrics"),
        format!("{APPS}/deployments/orders"),
    ] {
        script.push(expect("GET", path.clone(), 404, not_found()));
        script.push(expect_apply(path));
    }
    script.push(expect("GET", format!("{NS}/pods"), 200, pod_list(&[])));
    script.push(expect(
        "PATCH",
        STATUS,
        200,
        serde_json::to_value(&br).unwrap(),
    ));
    script.push(expect("POST", EVENTS, 201, json!({})));
    let (ctx, server, sent) = serve(script);

    reconcile(Arc::new(br), ctx).await.expect("reconciled");
    server.await.expect("the conversation went as scripted");

    let sent = sent.lock().unwrap();
    let apply = sent
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/deployments/orders"))
        .unwrap();
    assert!(
        apply.1.contains("fieldManager=bulk-recorder-operator") && apply.1.contains("force=true"),
        "{}",
        apply.1
    );
    let deployment = &apply.2;
    assert_eq!(
        env(deployment, "BULK_RECORDER_SIZE")["value"],
        "50",
        "the derived size"
    );
    assert_eq!(
        env(deployment, "RABBITMQ_URL")["valueFrom"]["secretKeyRef"],
        json!({"name": "rabbitmq", "key": "url", "optional": false})
    );
    assert_eq!(
        env(deployment, "DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"],
        "postgres"
    );
    assert_eq!(
        env(deployment, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["kind"],
        "BulkRecorder"
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    let status = &sent
        .iter()
        .find(|(_, p, _)| p.starts_with(STATUS))
        .unwrap()
        .2["status"];
    assert_eq!(status["effectiveSize"], 50);
    assert_eq!(status["observedGeneration"], 1);
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False", "no recorder is ready yet");
    let event = &sent.last().unwrap().2;
    assert_eq!(event["reason"], "Applied");
}

#[tokio::test]
async fn a_reconcile_with_nothing_to_change_only_reads() {
    let mut br = bulk_recorder("orders", "ledger");
    br.status = Some(settled_status(&br));
    let mut script = secrets_exist();
    script.extend(existing(&br));
    script.push(expect(
        "GET",
        format!("{NS}/pods"),
        200,
        pod_list(&["orders-abc"]),
    ));
    let (ctx, server, sent) = serve(script);

    reconcile(Arc::new(br), ctx).await.expect("reconciled");
    server.await.expect("no write was made");
    assert!(
        sent.lock()
            .unwrap()
            .iter()
            .all(|(method, _, _)| method == "GET")
    );
}

#[tokio::test]
async fn a_spec_change_rolls_the_deployment_and_nothing_else() {
    let old = bulk_recorder("orders", "ledger");
    let mut br = old.clone();
    br.spec.prefetch = 100;
    br.spec.size = Some(200);
    br.metadata.generation = Some(2);
    br.status = Some(settled_status(&old));
    let mut script = secrets_exist();
    script.extend(existing(&old));
    script.push(expect_apply(format!("{APPS}/deployments/orders")));
    script.push(expect(
        "GET",
        format!("{NS}/pods"),
        200,
        pod_list(&["orders-abc"]),
    ));
    script.push(expect(
        "PATCH",
        STATUS,
        200,
        serde_json::to_value(&br).unwrap(),
    ));
    script.push(expect("POST", EVENTS, 201, json!({})));
    let (ctx, server, sent) = serve(script);

    reconcile(Arc::new(br), ctx).await.expect("reconciled");
    server.await.expect("only the Deployment was applied");
    let sent = sent.lock().unwrap();
    let deployment = &sent
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/deployments/"))
        .unwrap()
        .2;
    assert_eq!(
        env(deployment, "RABBITMQ_NUMBERS_OF_PREFETCH")["value"],
        "100"
    );
    assert_eq!(env(deployment, "BULK_RECORDER_SIZE")["value"], "200");
    let status = &sent
        .iter()
        .find(|(_, p, _)| p.starts_with(STATUS))
        .unwrap()
        .2["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["effectiveSize"], 200);
}

#[tokio::test]
async fn a_missing_secret_is_reported_as_degraded_with_an_event() {
    let br = bulk_recorder("orders", "ledger");
    let mut script = vec![
        expect("GET", format!("{NS}/secrets/rabbitmq"), 404, not_found()),
        expect(
            "GET",
            format!("{NS}/secrets/postgres"),
            200,
            secret("postgres"),
        ),
    ];
    script.extend(existing(&br));
    script.push(expect("GET", format!("{NS}/pods"), 200, pod_list(&[])));
    script.push(expect(
        "PATCH",
        STATUS,
        200,
        serde_json::to_value(&br).unwrap(),
    ));
    script.push(expect("POST", EVENTS, 201, json!({})));
    let (ctx, server, sent) = serve(script);

    reconcile(Arc::new(br), ctx).await.expect("reconciled");
    server.await.expect("scripted");
    let sent = sent.lock().unwrap();
    let status = &sent
        .iter()
        .find(|(_, p, _)| p.starts_with(STATUS))
        .unwrap()
        .2["status"];
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("SecretMissing"))
    );
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("secret rabbitmq (key url)")
    );
    let event = &sent.last().unwrap().2;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("SecretMissing"))
    );
}

#[tokio::test]
async fn entries_of_gone_pods_are_folded_into_the_totals_in_one_atomic_patch() {
    let mut br = bulk_recorder("orders", "ledger");
    let rows = |n: i64| RowCounts {
        attempted: n + 2,
        inserted: n,
        ignored: 2,
        ..Default::default()
    };
    let mut status = settled_status(&br);
    status.recorders = vec![
        RecorderReport {
            pod: "orders-gone".into(),
            start_id: "a".into(),
            transactions: rows(100),
            operations: rows(500),
            last_report: "2020-01-01T00:00:00Z".into(),
        },
        RecorderReport {
            pod: "orders-live".into(),
            start_id: "b".into(),
            transactions: rows(10),
            operations: rows(50),
            last_report: chrono::Utc::now().to_rfc3339(),
        },
    ];
    br.status = Some(status);
    let patches = fold_round(br, &["orders-live"]).await;
    // First: remove the gone pod's entry (guarded by tests) and add its counts to `folded`.
    assert_eq!(
        patches[0],
        json!([
            {"op": "test", "path": "/status/recorders/0/pod", "value": "orders-gone"},
            {"op": "test", "path": "/status/recorders/0/startId", "value": "a"},
            {"op": "remove", "path": "/status/recorders/0"},
            {"op": "add", "path": "/status/folded", "value": {
                "transactions": {"attempted": 102, "inserted": 100, "ignored": 2, "updated": 0, "conflicting": 0},
                "operations": {"attempted": 502, "inserted": 500, "ignored": 2, "updated": 0, "conflicting": 0}}}
        ])
    );
    // Then the totals: folded plus the live entry.
    assert_eq!(
        patches[1]["status"]["counts"]["transactions"],
        json!({"attempted": 114, "inserted": 110, "ignored": 4, "updated": 0, "conflicting": 0})
    );
}

#[tokio::test]
async fn a_hand_edited_deployment_is_restored() {
    let mut br = bulk_recorder("orders", "ledger");
    br.status = Some(settled_status(&br));
    let mut script = secrets_exist();
    let mut owned = existing(&br);
    // Somebody scaled the Deployment by hand and changed an environment variable.
    let deployment = owned.last_mut().unwrap();
    // The apply answers with the restored object, its status included.
    let restored_answer = deployment.answer.clone().unwrap();
    let answer = deployment.answer.as_mut().unwrap();
    answer["spec"]["replicas"] = json!(3);
    answer["spec"]["template"]["spec"]["containers"][0]["env"][3]["value"] = json!("999");
    script.extend(owned);
    script.push(expect(
        "PATCH",
        format!("{APPS}/deployments/orders"),
        200,
        restored_answer,
    ));
    script.push(expect(
        "GET",
        format!("{NS}/pods"),
        200,
        pod_list(&["orders-abc"]),
    ));
    script.push(expect("POST", EVENTS, 201, json!({})));
    let (ctx, server, sent) = serve(script);

    reconcile(Arc::new(br), ctx).await.expect("reconciled");
    server.await.expect("the Deployment was applied again");
    let sent = sent.lock().unwrap();
    let restored = &sent
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p.contains("/deployments/"))
        .unwrap()
        .2;
    assert_eq!(restored["spec"]["replicas"], 1);
    assert_eq!(env(restored, "RABBITMQ_NUMBERS_OF_PREFETCH")["value"], "10");
}

#[tokio::test]
async fn an_invalid_spec_that_slipped_past_the_schema_is_degraded_and_applies_nothing() {
    // An API server without CEL (or an object stored before the rule) can hold this.
    let mut br = bulk_recorder("orders", "ledger");
    br.spec.size = Some(10_000);
    let mut script = secrets_exist();
    script.push(expect("GET", format!("{NS}/pods"), 200, pod_list(&[])));
    script.push(expect(
        "PATCH",
        STATUS,
        200,
        serde_json::to_value(&br).unwrap(),
    ));
    script.push(expect("POST", EVENTS, 201, json!({})));
    let (ctx, server, sent) = serve(script);

    reconcile(Arc::new(br), ctx)
        .await
        .expect("reported, not failed");
    server.await.expect("no owned object was touched");
    let sent = sent.lock().unwrap();
    let status = &sent
        .iter()
        .find(|(_, p, _)| p.starts_with(STATUS))
        .unwrap()
        .2["status"];
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("spec.size 10000 is outside 1..=50"),
        "{degraded}"
    );
    let event = &sent.last().unwrap().2;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("InvalidSpec"))
    );
}

#[tokio::test]
async fn a_restarted_container_folds_its_previous_incarnation_while_the_pod_lives() {
    let mut br = bulk_recorder("orders", "ledger");
    let rows = |n: i64| RowCounts {
        attempted: n,
        inserted: n,
        ignored: 0,
        ..Default::default()
    };
    let mut status = settled_status(&br);
    let now = chrono::Utc::now();
    status.folded = Some(bulk_recorder_crds::Counts {
        transactions: rows(1000),
        operations: rows(5000),
    });
    status.recorders = vec![
        RecorderReport {
            pod: "orders-abc".into(),
            start_id: "first".into(),
            transactions: rows(40),
            operations: rows(200),
            last_report: (now - chrono::Duration::seconds(30)).to_rfc3339(),
        },
        RecorderReport {
            pod: "orders-abc".into(),
            start_id: "second".into(),
            transactions: rows(2),
            operations: rows(10),
            last_report: now.to_rfc3339(),
        },
    ];
    br.status = Some(status);
    let patches = fold_round(br, &["orders-abc"]).await;
    let ops = patches[0].as_array().unwrap();
    assert_eq!(
        ops[2],
        json!({"op": "remove", "path": "/status/recorders/0"}),
        "the older incarnation goes"
    );
    assert_eq!(
        ops[3]["value"]["transactions"]["inserted"], 1040,
        "added to what was already folded"
    );
    assert_eq!(
        patches[1]["status"]["counts"]["transactions"]["inserted"], 1042,
        "folded plus the live incarnation"
    );
}

#[tokio::test]
async fn failures_back_off_from_5_seconds_up_to_5_minutes() {
    use crate::reconcile::{Error, error_policy};
    use kube::runtime::controller::Action;
    use std::time::Duration;

    let br = Arc::new(bulk_recorder("orders", "ledger"));
    let (ctx, server, _) = serve(vec![]);
    let delays: Vec<Action> = (0..10)
        .map(|_| error_policy(br.clone(), &Error::NoNamespace, ctx.clone()))
        .collect();
    assert_eq!(delays[0], Action::requeue(Duration::from_secs(5)));
    assert_eq!(delays[1], Action::requeue(Duration::from_secs(10)));
    assert_eq!(delays[9], Action::requeue(Duration::from_secs(300)));
    assert_eq!(ctx.metrics.failures.get(), 10);
    server.await.expect("no request");
}

/// A reconcile of `br` (objects and Secrets in place) with `live_pods` listed, expected to fold
/// entries: returns its two status patches, the JSON patch that folds and the merge patch.
async fn fold_round(br: bulk_recorder_crds::BulkRecorder, live_pods: &[&str]) -> Vec<Value> {
    let mut script = secrets_exist();
    script.extend(existing(&br));
    script.push(expect(
        "GET",
        format!("{NS}/pods"),
        200,
        pod_list(live_pods),
    ));
    for _ in 0..2 {
        script.push(expect(
            "PATCH",
            STATUS,
            200,
            serde_json::to_value(&br).unwrap(),
        ));
    }
    let (ctx, server, sent) = serve(script);
    reconcile(Arc::new(br), ctx).await.expect("reconciled");
    server.await.expect("scripted");
    let sent = sent.lock().unwrap();
    sent.iter()
        .filter(|(_, p, _)| p.starts_with(STATUS))
        .map(|(_, _, b)| b.clone())
        .collect()
}
