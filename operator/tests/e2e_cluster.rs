//! The reconciler against a real Kubernetes API server: the one `KUBECONFIG` points at.
//! Without `KUBECONFIG` every test here says so and passes without doing anything.
//!
//! What only a real API server can show: that the operator's calls need no permission beyond
//! `rbac::OPERATOR_CALLS` (server-side apply that creates is also authorized as `create`), and
//! that per-pod status entries applied by different field managers coexist in the list-map and
//! are folded into the totals exactly once. Each test works in a namespace of its own, deleted
//! at the end; the CRD is applied from the type. The runner's user needs to install CRDs, create
//! namespaces and RBAC, and impersonate ServiceAccounts (cluster-admin on kind or k3d).

use std::{sync::Arc, time::Duration};

use bulk_recorder_crds::{BulkRecorder, report_field_manager};
use bulk_recorder_operator::{context::Context, rbac::OPERATOR_CALLS, reconcile::reconcile};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Namespace, Secret, ServiceAccount},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

const IMAGE: &str = "registry.invalid/bulk-recorder:e2e";

/// A client for the cluster, or `None` (with a message) when there is none to test against.
async fn cluster() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        // Straight to the terminal, past the harness's capture, so that the skip shows in logs.
        use std::io::Write;
        let message = "skipped: KUBECONFIG is not set, so there is no cluster to run operator/tests/e2e_cluster.rs against";
        match std::fs::OpenOptions::new().write(true).open("/dev/stderr") {
            // One write per line, so that tests skipping in parallel do not interleave.
            Ok(mut stderr) => {
                let _ = stderr.write_all(format!("{message}\n").as_bytes());
            }
            Err(_) => eprintln!("{message}"),
        }
        return None;
    }
    Some(
        Client::try_default()
            .await
            .expect("KUBECONFIG is set but the cluster is unreachable"),
    )
}

/// Polls `check` until it holds, or fails the test after `timeout`.
async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&bulk_recorder_crds::crd_yaml()).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "bulkrecorders.bulkrecorder.io",
        &PatchParams::apply("bulk-recorder-operator-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD is accepted: its schema is structural");
    wait_until(Duration::from_secs(30), "the CRD to be established", || {
        let api = api.clone();
        async move {
            api.get("bulkrecorders.bulkrecorder.io")
                .await
                .ok()
                .and_then(|c| c.status?.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        }
    })
    .await;
}

/// A fresh namespace holding the two Secrets the resource names.
async fn namespace(client: &Client, prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("{prefix}-{:x}{nanos:08x}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &name);
    for (secret, url) in [
        ("rabbitmq", "amqp://guest:guest@rabbitmq:5672/%2f"),
        (
            "postgres",
            "postgres://postgres:postgres@postgres:5432/ledger",
        ),
    ] {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": secret},
            "stringData": {"url": url}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    name
}

async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Creates `orders` in `ns` and returns it as the API server stored it (defaults applied).
async fn create_bulk_recorder(client: &Client, ns: &str) -> BulkRecorder {
    let api: Api<BulkRecorder> = Api::namespaced(client.clone(), ns);
    let br: BulkRecorder = serde_json::from_value(json!({
        "apiVersion": "bulkrecorder.io/v1alpha1",
        "kind": "BulkRecorder",
        "metadata": {"name": "orders"},
        "spec": {
            "workers": 4,
            "prefetch": 25,
            "replicas": 0,
            "rabbitmq": {"urlSecretRef": {"name": "rabbitmq", "key": "url"}, "queue": "transactions"},
            "postgres": {"urlSecretRef": {"name": "postgres", "key": "url"}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &br).await.unwrap()
}

async fn fetch(client: &Client, ns: &str) -> BulkRecorder {
    Api::<BulkRecorder>::namespaced(client.clone(), ns)
        .get("orders")
        .await
        .unwrap()
}

/// Gives ServiceAccount `operator` in `ns` exactly the rules of `rbac::OPERATOR_CALLS`, and
/// returns a client that acts as it (through impersonation).
async fn operator_client(client: &Client, ns: &str) -> Client {
    let pp = PostParams::default();
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("operator".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&pp, &sa)
        .await
        .unwrap();
    let rules = OPERATOR_CALLS
        .iter()
        .map(|(group, resource, verbs)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect();
    let role = Role {
        metadata: ObjectMeta {
            name: Some("operator".into()),
            ..Default::default()
        },
        rules: Some(rules),
    };
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("operator".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "operator".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "operator".into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &binding)
        .await
        .unwrap();
    let mut config = Config::infer().await.unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:operator"));
    Client::try_from(config).unwrap()
}

fn env_value(deployment: &Deployment, name: &str) -> Option<String> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test]
async fn the_operator_needs_no_permission_beyond_its_rbac_table() {
    let Some(admin) = cluster().await else { return };
    install_crd(&admin).await;
    let ns = namespace(&admin, "bro-e2e-rbac").await;
    let br = create_bulk_recorder(&admin, &ns).await;
    let operator = operator_client(&admin, &ns).await;
    let ctx = Arc::new(Context::new(operator, IMAGE.into(), "e2e".into()));

    // RBAC caches settle within seconds; a permission that is really missing fails every time.
    let mut last = None;
    for _ in 0..20 {
        match reconcile(Arc::new(br.clone()), ctx.clone()).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(error) => last = Some(error.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        last, None,
        "reconciling as a ServiceAccount holding only rbac::OPERATOR_CALLS failed"
    );

    let deployment = Api::<Deployment>::namespaced(admin.clone(), &ns)
        .get("orders")
        .await
        .expect("the Deployment was created");
    assert_eq!(
        env_value(&deployment, "BULK_RECORDER_SIZE").as_deref(),
        Some("100"),
        "workers * prefetch"
    );
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("BulkRecorder", Some(true))
    );
    Api::<Role>::namespaced(admin.clone(), &ns)
        .get("orders-recorder")
        .await
        .expect("the recorders' Role was created (the operator may grant what it holds)");
    let status = fetch(&admin, &ns).await.status.expect("a status");
    assert_eq!(status.effective_size, Some(100));
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "False")
    );

    // The second reconcile finds everything in place, still within the same permissions.
    reconcile(Arc::new(fetch(&admin, &ns).await), ctx)
        .await
        .expect("a reconcile of an up-to-date resource");
    delete_namespace(&admin, &ns).await;
}

/// One recorder's entry, as `recorder/src/telemetry/status_report.rs` applies it.
fn entry(pod: &str, start_id: &str, transactions: i64, last_report: &str) -> Value {
    json!({
        "apiVersion": "bulkrecorder.io/v1alpha1",
        "kind": "BulkRecorder",
        "metadata": {"name": "orders"},
        "status": {"recorders": [{
            "pod": pod,
            "startId": start_id,
            "transactions": {"attempted": transactions, "inserted": transactions, "ignored": 0},
            "operations": {"attempted": 5 * transactions, "inserted": 5 * transactions, "ignored": 0},
            "lastReport": last_report,
        }]}
    })
}

/// Applies one recorder's entry under the field manager `recorder/src/telemetry/status_report.rs` uses.
async fn report(api: &Api<BulkRecorder>, pod: &str, start_id: &str, n: i64, at: &str) {
    report_as(
        api,
        &report_field_manager(pod, start_id),
        pod,
        start_id,
        n,
        at,
    )
    .await;
}

async fn report_as(
    api: &Api<BulkRecorder>,
    manager: &str,
    pod: &str,
    start_id: &str,
    n: i64,
    at: &str,
) {
    api.patch_status(
        "orders",
        &PatchParams::apply(manager).force(),
        &Patch::Apply(entry(pod, start_id, n, at)),
    )
    .await
    .expect("a recorder applies its own entry");
}

#[tokio::test]
async fn entries_of_each_pod_coexist_and_gone_pods_are_folded_exactly_once() {
    let Some(admin) = cluster().await else { return };
    install_crd(&admin).await;
    let ns = namespace(&admin, "bro-e2e-fold").await;
    create_bulk_recorder(&admin, &ns).await;
    let api: Api<BulkRecorder> = Api::namespaced(admin.clone(), &ns);
    let ctx = Arc::new(Context::new(admin.clone(), IMAGE.into(), "e2e".into()));

    // Two pods that no longer exist (long silent), each through its own field manager: the
    // list-map keeps both entries, and neither apply conflicts with the other.
    let long_ago = "2020-01-01T00:00:00Z";
    report(&api, "orders-gone-a", "s1", 10, long_ago).await;
    report(&api, "orders-gone-b", "s1", 20, long_ago).await;
    let status = fetch(&admin, &ns).await.status.unwrap();
    assert_eq!(status.recorders.len(), 2, "{:?}", status.recorders);

    reconcile(Arc::new(fetch(&admin, &ns).await), ctx.clone())
        .await
        .unwrap();
    let status = fetch(&admin, &ns).await.status.unwrap();
    assert!(status.recorders.is_empty(), "{:?}", status.recorders);
    assert_eq!(status.folded.unwrap().transactions.inserted, 30);
    assert_eq!(status.counts.unwrap().operations.inserted, 150);

    // A pod that reported just now is counted but not folded (the pod list may lag behind it).
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report(&api, "orders-new", "s1", 7, &now).await;
    for _ in 0..2 {
        reconcile(Arc::new(fetch(&admin, &ns).await), ctx.clone())
            .await
            .unwrap();
        let status = fetch(&admin, &ns).await.status.unwrap();
        assert_eq!(status.recorders.len(), 1);
        assert_eq!(status.folded.unwrap().transactions.inserted, 30);
        assert_eq!(
            status.counts.unwrap().transactions.inserted,
            37,
            "never counted twice"
        );
    }
    delete_namespace(&admin, &ns).await;
}

/// Issue 11, item 1, on a real API server: a restarted container's first report must not
/// delete its predecessor's entry. With one field manager per pod it does (server-side apply
/// removes the list-map entries a manager applied before and leaves out: the semantics the fake
/// API server of the unit tests reproduces); with one per incarnation both entries stay and the
/// operator folds the older one, so the totals keep both incarnations' rows.
#[tokio::test]
async fn a_restarted_recorder_keeps_its_predecessors_counts() {
    let Some(admin) = cluster().await else { return };
    install_crd(&admin).await;
    let ns = namespace(&admin, "bro-e2e-restart").await;
    create_bulk_recorder(&admin, &ns).await;
    let api: Api<BulkRecorder> = Api::namespaced(admin.clone(), &ns);
    let ctx = Arc::new(Context::new(admin.clone(), IMAGE.into(), "e2e".into()));
    let earlier = (chrono::Utc::now() - chrono::Duration::seconds(40))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    // One manager for both incarnations: the second apply removes the first entry.
    let shared = "bulk-recorder-recorder-rec-shared";
    report_as(&api, shared, "rec-shared", "first", 300, &earlier).await;
    report_as(&api, shared, "rec-shared", "second", 200, &now).await;
    let entries = fetch(&admin, &ns).await.status.unwrap().recorders;
    assert_eq!(
        entries
            .iter()
            .map(|e| e.start_id.as_str())
            .collect::<Vec<_>>(),
        ["second"],
        "the API server removed the entry its manager left out"
    );

    // One manager per incarnation: both stay, and the older one is folded.
    report(&api, "rec-0", "first", 300, &earlier).await;
    report(&api, "rec-0", "second", 200, &now).await;
    let status = fetch(&admin, &ns).await.status.unwrap();
    assert_eq!(status.recorders.len(), 3, "{:?}", status.recorders);
    reconcile(Arc::new(fetch(&admin, &ns).await), ctx)
        .await
        .unwrap();
    let status = fetch(&admin, &ns).await.status.unwrap();
    assert_eq!(status.folded.unwrap().transactions.inserted, 300);
    assert_eq!(
        status.counts.unwrap().transactions.inserted,
        300 + 200 + 200,
        "rec-0's two incarnations and rec-shared's surviving one"
    );
    delete_namespace(&admin, &ns).await;
}
