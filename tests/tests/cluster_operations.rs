//! Issue 32 on a real API server (the one `KUBECONFIG` points at; without it every test here
//! says so and passes without doing anything): counts in the status within 10 s of the rows, an
//! idle recorder writing its BulkRecorder at most once in 2 minutes, `kubectl apply` of the
//! example after `kubectl scale` keeping the scale, and `helm install` with a `watchNamespace`
//! that does not exist refused before anything runs.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use bulk_recorder::{config::ReportTarget, telemetry::status_report::Reporter};
use bulk_recorder_crds::BulkRecorder;
use bulk_recorder_e2e::{kube_cluster::*, *};
use k8s_openapi::api::{apps::v1::Deployment, policy::v1::PodDisruptionBudget};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

fn inserted(br: &BulkRecorder) -> i64 {
    br.status
        .as_ref()
        .and_then(|s| s.counts)
        .map_or(0, |c| c.transactions.inserted)
}

/// The recorder runs here with its real reporting loop, as a pod of `orders` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_arrive_within_10_s_and_an_idle_recorder_writes_at_most_once_in_2_minutes() {
    let Some(client) = cluster().await else {
        return;
    };
    let (ns, operator, recorders) = orders_with_operator(&client).await;
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    let target = ReportTarget {
        name: "orders".into(),
        namespace: ns.clone(),
        pod: "orders-local".into(),
    };
    let reporter = std::sync::Arc::new(Reporter::new(
        client.clone(),
        target,
        recorder.metrics.clone(),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(reporter.run(stopped));

    queue
        .publish(&bulk_recorder_publish::PublishPlan {
            count: 20,
            ..Default::default()
        })
        .await;
    wait_until(Duration::from_secs(60), "20 committed", || async {
        recorder.committed_transactions() == 20
    })
    .await;
    let committed = Instant::now();
    wait_until(Duration::from_secs(10), "the counts in the status", || {
        let recorders = recorders.clone();
        async move {
            recorders
                .get("orders")
                .await
                .is_ok_and(|br| inserted(&br) == 20)
        }
    })
    .await;
    println!(
        "counts in the status {:?} after the commit",
        committed.elapsed()
    );

    // Idle: the recorder's entry is written at most once more in two minutes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut reports = std::collections::BTreeSet::new();
    let idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(120) {
        let br = recorders.get("orders").await.unwrap();
        let entry = br.status.unwrap().recorders;
        reports.extend(entry.into_iter().map(|e| e.last_report));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        reports.len() <= 2,
        "the idle recorder reported at {reports:?}"
    );
    let _ = stop.send(true);
    recorder.stop().await;
    operator.abort();
    delete_namespace(&client, &ns).await;
}

/// What `kubectl apply -f examples/bulkrecorder.yaml` sends (as server-side apply under
/// kubectl's manager; with a kubectl binary on PATH, kubectl itself), after `kubectl scale`.
#[tokio::test]
async fn applying_the_example_again_after_kubectl_scale_keeps_the_scale_and_the_budget() {
    let Some(client) = cluster().await else {
        return;
    };
    install_crd(&client).await;
    let ns = namespace(&client).await;
    let operator = start_operator(&client, &ns);
    let kubectl = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output();
    let apply = || async {
        if kubectl.as_ref().is_ok_and(|o| o.status.success()) {
            let status = Command::new("kubectl")
                .args(["-n", &ns, "apply", "-f"])
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../examples/bulkrecorder.yaml"
                ))
                .status()
                .unwrap();
            assert!(status.success(), "kubectl apply");
        } else {
            let mut body: serde_json::Value =
                serde_yaml::from_str(include_str!("../../examples/bulkrecorder.yaml")).unwrap();
            body["metadata"]["namespace"] = json!(ns);
            Api::<BulkRecorder>::namespaced(client.clone(), &ns)
                .patch(
                    "ledger",
                    &PatchParams::apply("kubectl"),
                    &Patch::Apply(&body),
                )
                .await
                .expect("applied");
        }
    };
    apply().await;
    let recorders: Api<BulkRecorder> = Api::namespaced(client.clone(), &ns);
    recorders
        .patch_scale(
            "ledger",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("kubectl scale");
    apply().await;
    assert_eq!(recorders.get("ledger").await.unwrap().spec.replicas, 2);
    let (deployments, budgets) = (
        Api::<Deployment>::namespaced(client.clone(), &ns),
        Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
    );
    wait_until(Duration::from_secs(60), "2 recorders and a budget", || {
        let (deployments, budgets) = (deployments.clone(), budgets.clone());
        async move {
            let scaled = deployments.get_opt("ledger").await.ok().flatten();
            scaled.and_then(|d| d.spec?.replicas) == Some(2)
                && budgets.get_opt("ledger").await.ok().flatten().is_some()
        }
    })
    .await;
    operator.abort();
    delete_namespace(&client, &ns).await;
}

/// helm: `HELM`, else the one `scripts/check-chart.sh` fetched, else the one on PATH.
fn helm() -> Option<std::path::PathBuf> {
    let cached = std::env::var_os("HOME")
        .map(|home| std::path::Path::new(&home).join(".cache/bulk-recorder/helm-2.2.2/helm"));
    std::env::var_os("HELM")
        .map(Into::into)
        .or(cached.filter(|p| p.exists()))
        .or_else(|| {
            let found = Command::new("helm").arg("version").output();
            found
                .is_ok_and(|o| o.status.success())
                .then(|| "helm".into())
        })
}

#[tokio::test]
async fn an_install_watching_a_namespace_that_does_not_exist_is_refused_before_anything_runs() {
    let Some(client) = cluster().await else {
        return;
    };
    let Some(helm) = helm() else {
        eprintln!("skipped: no helm (set HELM, or run scripts/check-chart.sh once to fetch it)");
        return;
    };
    let ns = namespace(&client).await;
    let release = format!("{ns}-operator");
    let missing = format!("{ns}-missing");
    let out = Command::new(&helm)
        .args(["install", &release])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/bulk-recorder-operator"
        ))
        .args([
            "--namespace",
            &ns,
            "--set",
            &format!("watchNamespace={missing}"),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "installed: {said}");
    assert!(
        said.contains(&format!("watchNamespace \"{missing}\" does not exist")),
        "{said}"
    );
    let status = Command::new(&helm)
        .args(["status", &release, "--namespace", &ns])
        .output()
        .unwrap();
    assert!(!status.status.success(), "a release was recorded");
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(deployments.items.is_empty(), "an operator was created");
    delete_namespace(&client, &ns).await;
}
