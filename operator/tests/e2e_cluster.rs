//! The reconciler against a real Kubernetes API server: the one `KUBECONFIG` points at.
//! Without `KUBECONFIG` every test here says so and passes without doing anything.
//!
//! What only a real API server can show: that the operator's calls need no permission beyond
//! `rbac::OPERATOR_CALLS` (server-side apply that creates is also authorized as `create`), and
//! that per-pod status entries applied by different field managers coexist in the list-map and
//! are folded into the totals exactly once. Each test works in a namespace of its own, deleted
//! at the end; the CRD is applied from the type (and the Prometheus Operator's PodMonitor CRD
//! from tests/fixtures/ when the cluster lacks it). The runner's user needs to install CRDs, create
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
    established(&api, "bulkrecorders.bulkrecorder.io").await;
}

/// Waits until the CRD `name` is served.
async fn established(api: &Api<CustomResourceDefinition>, name: &str) {
    wait_until(Duration::from_secs(30), "the CRD to be established", || {
        let api = api.clone();
        async move {
            api.get(name)
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
    operator_client_without(client, ns, None).await
}

/// The Role `operator`: the rules of `rbac::OPERATOR_CALLS`, less `missing` (group, resource,
/// verb) when given.
fn operator_role(missing: Option<(&str, &str, &str)>) -> Role {
    let rules = OPERATOR_CALLS
        .iter()
        .map(|(group, resource, verbs)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs
                .iter()
                .filter(|v| missing != Some((group, resource, v)))
                .map(|v| v.to_string())
                .collect(),
            ..Default::default()
        })
        .collect();
    Role {
        metadata: ObjectMeta {
            name: Some("operator".into()),
            ..Default::default()
        },
        rules: Some(rules),
    }
}

/// As [`operator_client`], with one permission `missing`.
async fn operator_client_without(
    client: &Client,
    ns: &str,
    missing: Option<(&str, &str, &str)>,
) -> Client {
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
    let role = operator_role(missing);
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

/// Reconciles as the ServiceAccount holding exactly `rbac::OPERATOR_CALLS`, retrying while RBAC
/// caches settle (a permission that is really missing fails every time).
async fn reconcile_as_operator(operator: &Client, admin: &Client, ns: &str) {
    let mut last = None;
    for _ in 0..20 {
        let ctx = Arc::new(Context::new(operator.clone(), IMAGE.into(), "e2e".into()));
        match reconcile(Arc::new(fetch(admin, ns).await), ctx).await {
            Ok(_) => return,
            Err(error) => last = Some(error.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("reconciling as a ServiceAccount holding only rbac::OPERATOR_CALLS failed: {last:?}");
}

fn api_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(e)) => e.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The scale subresource on a real API server, as `kubectl scale` (a merge patch of the Scale),
/// the HPA controller (get, then a replace under the resourceVersion it read) and KEDA use it:
/// the Deployment follows spec.replicas, a PodDisruptionBudget exists with 2 replicas and not
/// with 1, and an autoscaling/v2 HPA targeting the BulkRecorder is accepted and can read its
/// scale (the HPA controller refuses a scale without a selector: `InvalidSelector`).
#[tokio::test]
async fn the_scale_subresource_drives_the_recorders_and_an_hpa_can_target_it() {
    use k8s_openapi::api::{
        autoscaling::v2::HorizontalPodAutoscaler, policy::v1::PodDisruptionBudget,
    };
    let Some(admin) = cluster().await else { return };
    install_crd(&admin).await;
    let ns = namespace(&admin, "bro-e2e-scale").await;
    create_bulk_recorder(&admin, &ns).await;
    let operator = operator_client(&admin, &ns).await;
    reconcile_as_operator(&operator, &admin, &ns).await;
    let api: Api<BulkRecorder> = Api::namespaced(admin.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(admin.clone(), &ns);

    let first = api
        .get_scale("orders")
        .await
        .expect("the scale subresource is served");
    let selector = "app.kubernetes.io/instance=orders,app.kubernetes.io/name=bulk-recorder";
    assert_eq!(
        first.status.as_ref().unwrap().selector.as_deref(),
        Some(selector)
    );
    assert_eq!(first.spec.as_ref().unwrap().replicas.unwrap_or(0), 0);
    let patch = |n: i64| Patch::Merge(json!({"spec": {"replicas": n}}));
    api.patch_scale("orders", &PatchParams::default(), &patch(2))
        .await
        .expect("kubectl scale --replicas=2");
    let br = fetch(&admin, &ns).await;
    assert_eq!((br.spec.replicas, br.metadata.generation), (2, Some(2)));
    let stale = api
        .replace_scale("orders", &PostParams::default(), &first)
        .await;
    assert_eq!(
        api_code(stale),
        409,
        "a write under an old resourceVersion conflicts"
    );
    let too_many = api
        .patch_scale("orders", &PatchParams::default(), &patch(101))
        .await;
    assert_eq!(
        api_code(too_many),
        422,
        "the CRD's maximum holds through /scale"
    );

    reconcile_as_operator(&operator, &admin, &ns).await;
    let deployment = deployments.get("orders").await.unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let budget = budgets
        .get("orders")
        .await
        .expect("2 replicas: a PodDisruptionBudget");
    let budget_spec = budget.spec.unwrap();
    assert_eq!(budget_spec.selector, Some(spec.selector));
    assert_eq!(
        budget_spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    api.patch_scale("orders", &PatchParams::default(), &patch(1))
        .await
        .unwrap();
    reconcile_as_operator(&operator, &admin, &ns).await;
    assert!(
        budgets.get_opt("orders").await.unwrap().is_none(),
        "1 replica: no budget"
    );
    assert_eq!(
        deployments
            .get("orders")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );

    let hpa: HorizontalPodAutoscaler =
        serde_yaml::from_str(include_str!("../../examples/autoscaling/hpa.yaml")).unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(admin.clone(), &ns);
    let mut hpa = hpa;
    hpa.spec.as_mut().unwrap().scale_target_ref.name = "orders".into();
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("an HPA targeting a BulkRecorder is accepted");
    // The HPA controller may need a moment to learn a CRD it has just seen (FailedGetScale
    // meanwhile): wait for it to read the scale, then look at what it made of the selector.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let conditions = loop {
        let conditions = hpas
            .get_status("ledger")
            .await
            .ok()
            .and_then(|h| h.status?.conditions)
            .unwrap_or_default();
        let able = conditions
            .iter()
            .any(|c| c.type_ == "AbleToScale" && c.status == "True");
        if able || tokio::time::Instant::now() > deadline {
            break conditions;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let found = |t: &str| conditions.iter().find(|c| c.type_ == t);
    assert!(
        found("AbleToScale").is_some_and(|c| c.status == "True"),
        "the HPA controller did not read the BulkRecorder's scale within 120 s: {conditions:?}"
    );
    assert!(
        found("ScalingActive").is_none_or(|c| c.reason.as_deref() != Some("InvalidSelector")),
        "the HPA controller found no usable selector in the scale: {conditions:?}"
    );
    delete_namespace(&admin, &ns).await;
}

/// The PodMonitor path on a real API server: without the Prometheus Operator's CRD the
/// PodMonitorReady condition says so and nothing else changes; with it (installed here from
/// tests/fixtures/ when the cluster lacks it, and removed again) the operator creates a
/// PodMonitor the CRD's schema keeps whole.
#[tokio::test]
async fn a_pod_monitor_is_created_where_its_crd_is_served_and_reported_where_not() {
    let Some(admin) = cluster().await else { return };
    install_crd(&admin).await;
    let ns = namespace(&admin, "bro-e2e-monitor").await;
    create_bulk_recorder(&admin, &ns).await;
    let api: Api<BulkRecorder> = Api::namespaced(admin.clone(), &ns);
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"monitoring": {
            "podMonitor": true,
            "podMonitorLabels": {"release": "kube-prometheus-stack"}
        }}})),
    )
    .await
    .unwrap();
    let operator = operator_client(&admin, &ns).await;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    const POD_MONITORS: &str = "podmonitors.monitoring.coreos.com";
    let condition = |br: &BulkRecorder, t: &str| {
        br.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == t).cloned())
    };
    let installed_here = crds.get_opt(POD_MONITORS).await.unwrap().is_none();
    if installed_here {
        reconcile_as_operator(&operator, &admin, &ns).await;
        let br = fetch(&admin, &ns).await;
        let monitor = condition(&br, "PodMonitorReady").expect("a PodMonitorReady condition");
        assert_eq!(
            (monitor.status.as_str(), monitor.reason.as_str()),
            ("False", "CRDNotInstalled")
        );
        assert_eq!(condition(&br, "Degraded").unwrap().status, "False");
        let crd: CustomResourceDefinition = serde_yaml::from_str(include_str!(
            "../../tests/fixtures/monitoring.coreos.com_podmonitors.yaml"
        ))
        .unwrap();
        crds.patch(
            POD_MONITORS,
            &PatchParams::apply("bulk-recorder-operator-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("the Prometheus Operator's PodMonitor CRD");
        established(&crds, POD_MONITORS).await;
    } else {
        eprintln!("the cluster has the PodMonitor CRD already: the without-CRD half is skipped");
    }

    // Each reconcile here has a new context, which asks discovery afresh (a running operator
    // does within a minute); discovery may lag the Established condition by a moment.
    wait_until(
        Duration::from_secs(60),
        "the PodMonitor to be applied",
        || {
            let (operator, admin, ns) = (operator.clone(), admin.clone(), ns.clone());
            async move {
                reconcile_as_operator(&operator, &admin, &ns).await;
                let br = fetch(&admin, &ns).await;
                let ready = br.status.as_ref().and_then(|s| {
                    s.conditions
                        .iter()
                        .find(|c| c.type_ == "PodMonitorReady")
                        .cloned()
                });
                ready.is_some_and(|c| c.status == "True")
            }
        },
    )
    .await;
    let monitors =
        Api::<bulk_recorder_operator::desired::PodMonitor>::namespaced(admin.clone(), &ns);
    let monitor = monitors
        .get("orders")
        .await
        .expect("the PodMonitor was created");
    let endpoint = &monitor.spec.pod_metrics_endpoints[0];
    assert_eq!(
        (endpoint.port.as_str(), endpoint.path.as_str()),
        ("metrics", "/metrics")
    );
    assert_eq!(
        endpoint.relabelings.len(),
        1,
        "kept whole by the CRD's schema"
    );
    assert_eq!(
        monitor.spec.selector.match_labels.unwrap()["app.kubernetes.io/instance"],
        "orders"
    );
    assert_eq!(
        monitor.metadata.labels.unwrap()["release"],
        "kube-prometheus-stack",
        "the label a kube-prometheus-stack Prometheus selects"
    );
    let br = fetch(&admin, &ns).await;
    let applied = condition(&br, "PodMonitorReady").unwrap();
    assert!(
        applied.message.contains("release=kube-prometheus-stack"),
        "{}",
        applied.message
    );
    delete_namespace(&admin, &ns).await;
    if installed_here {
        let _ = crds.delete(POD_MONITORS, &DeleteParams::default()).await;
    }
}

/// Issue 32: an operator whose Role lacks `patch` on Deployments says which permission in the
/// Degraded condition, and creates the Deployment within seconds of the grant (retried every
/// 5 s, not after a backoff of minutes).
#[tokio::test]
async fn a_missing_permission_is_named_and_picked_up_within_seconds_of_the_grant() {
    let Some(admin) = cluster().await else { return };
    install_crd(&admin).await;
    let ns = namespace(&admin, "bro-e2e-grant").await;
    create_bulk_recorder(&admin, &ns).await;
    let operator =
        operator_client_without(&admin, &ns, Some(("apps", "deployments", "patch"))).await;
    let ctx = Arc::new(Context::new(operator.clone(), IMAGE.into(), "e2e".into()));
    let running = tokio::spawn(bulk_recorder_operator::controller::run(
        operator,
        ctx,
        Some(ns.clone()),
        std::future::pending(),
    ));
    wait_until(Duration::from_secs(60), "Degraded: Forbidden", || async {
        let status = fetch(&admin, &ns).await.status.unwrap_or_default();
        status.conditions.iter().any(|c| {
            c.type_ == "Degraded"
                && c.reason == "Forbidden"
                && c.message.contains("cannot patch resource \"deployments\"")
        })
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    assert!(deployments.get_opt("orders").await.unwrap().is_none());

    Api::<Role>::namespaced(admin.clone(), &ns)
        .replace("operator", &PostParams::default(), &operator_role(None))
        .await
        .expect("the grant");
    let granted = std::time::Instant::now();
    wait_until(
        Duration::from_secs(15),
        "the Deployment after the grant",
        || {
            let deployments = deployments.clone();
            async move { deployments.get_opt("orders").await.ok().flatten().is_some() }
        },
    )
    .await;
    println!("applied {:?} after the grant", granted.elapsed());
    running.abort();
    delete_namespace(&admin, &ns).await;
}
