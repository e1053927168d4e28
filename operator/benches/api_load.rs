//! The operator's load on the API server: the controller reconciles 200 BulkRecorders (one
//! recorder pod each, reporting its counts) against the in-process fake API server, in Tokio's
//! paused virtual time, and this prints the requests per minute per resource and verb.
//!
//! `cargo bench -p bulk-recorder-operator --bench api_load` (a few seconds of wall time;
//! `-- --resources N --minutes M` to change the load or the measured span, `--busy P` for the
//! percentage of recorders that are busy: a busy one's counts move all the time, so it reports
//! every `REPORT_MIN_INTERVAL`; an idle one reported once when it started and then nothing).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bulk_recorder_crds::{BulkRecorder, REPORT_MIN_INTERVAL, report_field_manager};
use bulk_recorder_operator::{
    context::Context,
    controller,
    fake_api::{Caller, FakeApiServer},
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

const WARM_UP: Duration = Duration::from_secs(120);

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed(fake: &FakeApiServer, index: u64) -> (String, String, String) {
    let ns = format!("team-{}", index % 20);
    let name = format!("ledger-{index}");
    for secret in ["rabbitmq", "postgres"] {
        fake.create(&json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-{secret}"), "namespace": ns},
            "data": {"url": "dXJs"}}));
    }
    fake.create(&json!({"apiVersion": "bulkrecorder.io/v1alpha1", "kind": "BulkRecorder",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "workers": 5, "prefetch": 10, "flushTimeoutMs": 100,
            "maxRowsPerInsert": 1000, "fallbackEnabled": true, "bulkEnabled": true,
            "rabbitmq": {"urlSecretRef": {"name": format!("{name}-rabbitmq"), "key": "url"}, "queue": "q"},
            "postgres": {"urlSecretRef": {"name": format!("{name}-postgres"), "key": "url"}, "migrate": true}}}));
    let pod = format!("{name}-5d8f7c9b4-x{index:04}");
    fake.create(&json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": ns, "labels": {
            "app.kubernetes.io/name": "bulk-recorder", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": "recorder",
            "app.kubernetes.io/managed-by": "bulk-recorder-operator"}}}));
    (ns, name, pod)
}

/// A recorder pod, as recorder/src/telemetry/status_report.rs reports: its own status entry,
/// once at start, then (when `busy`) with growing counts every `REPORT_MIN_INTERVAL`.
async fn recorder(
    fake: FakeApiServer,
    (ns, name, pod): (String, String, String),
    offset: Duration,
    busy: bool,
) {
    let api: Api<BulkRecorder> = Api::namespaced(fake.client(Caller::Recorder(name.clone())), &ns);
    let manager = report_field_manager(&pod, "s1");
    tokio::time::sleep(offset).await;
    for round in 1i64.. {
        let rows = json!({"attempted": 50 * round, "inserted": 50 * round, "ignored": 0});
        let entry = json!({"apiVersion": "bulkrecorder.io/v1alpha1", "kind": "BulkRecorder",
            "metadata": {"name": name},
            "status": {"recorders": [{"pod": pod, "startId": "s1", "transactions": rows,
                "operations": rows, "lastReport": chrono::Utc::now().to_rfc3339()}]}});
        let _ = api
            .patch_status(
                &name,
                &PatchParams::apply(&manager).force(),
                &Patch::Apply(&entry),
            )
            .await;
        if !busy {
            return;
        }
        tokio::time::sleep(REPORT_MIN_INTERVAL).await;
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let resources = arg("--resources", 200);
    let minutes = arg("--minutes", 10);
    let busy = arg("--busy", 100);
    let fake = FakeApiServer::new();
    // The load of a cluster without OwnerReferencesPermissionEnforcement (the tests cover it).
    fake.without_owner_reference_enforcement();
    for i in 0..resources {
        let offset = REPORT_MIN_INTERVAL.mul_f64(i as f64 / resources as f64);
        let busy = i * 100 < busy * resources;
        tokio::spawn(recorder(fake.clone(), seed(&fake, i), offset, busy));
    }
    let client = fake.client(Caller::Operator);
    let ctx = Arc::new(Context::new(
        client.clone(),
        "bulk-recorder:bench".into(),
        "bench".into(),
    ));
    let started = std::time::Instant::now();
    tokio::spawn(controller::run(client, ctx, None, std::future::pending()));

    tokio::time::sleep(WARM_UP).await;
    fake.clear_requests();
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
    let requests = fake.requests();

    let mut table: BTreeMap<(String, &'static str, bool), u64> = BTreeMap::new();
    for r in &requests {
        let by_recorders = matches!(r.caller, Caller::Recorder(_));
        *table
            .entry((r.resource.clone(), r.verb, by_recorders))
            .or_default() += 1;
    }
    let per_minute = |n: u64| n as f64 / minutes as f64;
    println!(
        "{resources} BulkRecorders, 1 recorder pod each, {busy}% busy, measured over {minutes} virtual minutes after {}s of warm-up ({:.1}s of wall time)",
        WARM_UP.as_secs(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<8} {:<24} {:<10} {:>12} {:>16}",
        "caller", "resource", "verb", "per minute", "per minute per BR"
    );
    let (mut operator_total, mut recorder_total) = (0, 0);
    for ((resource, verb, by_recorders), n) in &table {
        let caller = if *by_recorders {
            "recorder"
        } else {
            "operator"
        };
        if *by_recorders {
            recorder_total += n;
        } else {
            operator_total += n;
        }
        println!(
            "{caller:<8} {resource:<24} {verb:<10} {:>12.1} {:>16.2}",
            per_minute(*n),
            per_minute(*n) / resources as f64
        );
    }
    let failed = requests.iter().filter(|r| r.status >= 400).count();
    println!(
        "total: operator {:.0}/min ({:.2} per BR), recorders {:.0}/min ({:.2} per BR), all {:.0}/min; {failed} answered with an error",
        per_minute(operator_total),
        per_minute(operator_total) / resources as f64,
        per_minute(recorder_total),
        per_minute(recorder_total) / resources as f64,
        per_minute(operator_total + recorder_total)
    );
}
