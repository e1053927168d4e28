//! The recorder's status reports (recorder/src/telemetry/status_report.rs) against the fake API
//! server, with the operator's controller running, in Tokio's virtual time: counts reach the
//! BulkRecorder's status within seconds of a commit, a busy recorder writes at most once in 5 s,
//! an idle one writes nothing for minutes, and rejected messages are counted too.

use std::{sync::Arc, time::Duration};

use bulk_recorder::{
    config::ReportTarget,
    telemetry::{
        counts::{RowCounts, WriteCounts},
        metrics::Metrics,
        status_report::Reporter,
    },
};
use bulk_recorder_crds::BulkRecorder;
use bulk_recorder_operator::{
    context::Context,
    controller,
    fake_api::{Caller, FakeApiServer, ObjectKey},
};
use serde_json::json;

const NS: &str = "ledger";

fn cluster() -> FakeApiServer {
    let fake = FakeApiServer::new();
    for name in ["bulk-recorder-rabbitmq", "bulk-recorder-postgres"] {
        fake.create(&json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NS}, "data": {"url": "dXJs"}}));
    }
    let mut example: serde_json::Value =
        serde_yaml::from_str(include_str!("../../examples/minimal.yaml")).unwrap();
    example["metadata"]["namespace"] = json!(NS);
    fake.create(&example);
    fake.create(
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ledger-0",
        "namespace": NS, "labels": {"app.kubernetes.io/name": "bulk-recorder",
            "app.kubernetes.io/instance": "ledger", "app.kubernetes.io/component": "recorder",
            "app.kubernetes.io/managed-by": "bulk-recorder-operator"}}}),
    );
    fake
}

fn recorder_writes(fake: &FakeApiServer) -> usize {
    let writes = fake
        .requests()
        .iter()
        .filter(|r| matches!(r.caller, Caller::Recorder(_)) && r.method != "GET")
        .count();
    fake.clear_requests();
    writes
}

fn status(fake: &FakeApiServer) -> bulk_recorder_crds::BulkRecorderStatus {
    let key = ObjectKey::of::<BulkRecorder>(NS, "ledger");
    let br: BulkRecorder = serde_json::from_value(fake.get_value(&key).unwrap()).unwrap();
    br.status.unwrap_or_default()
}

fn bulk(transactions: u64) -> WriteCounts {
    WriteCounts {
        transactions: RowCounts::new(transactions, transactions),
        operations: RowCounts::new(5 * transactions, 5 * transactions),
    }
}

#[tokio::test(start_paused = true)]
async fn counts_reach_the_status_within_seconds_and_an_idle_recorder_writes_nothing() {
    let fake = cluster();
    let operator = Arc::new(Context::new(
        fake.client(Caller::Operator),
        "bulk-recorder:test".into(),
        "test".into(),
    ));
    tokio::spawn(controller::run(
        fake.client(Caller::Operator),
        operator,
        None,
        std::future::pending(),
    ));
    let metrics = Arc::new(Metrics::new());
    let target = ReportTarget {
        name: "ledger".into(),
        namespace: NS.into(),
        pod: "ledger-0".into(),
    };
    let client = fake.client(Caller::Recorder("ledger".into()));
    let reporter = Arc::new(Reporter::new(client, target, metrics.clone()));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(reporter.run(stopped));

    // Start-up: the entry, then the backlog once the queue was read.
    metrics.queue_depth(700, 1);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(status(&fake).backlog, Some(700), "BACKLOG within seconds");

    // A bulk of 20: in the status within 10 s.
    metrics.add_committed(bulk(20));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let counts = status(&fake).counts.unwrap();
    assert_eq!(
        (counts.transactions.inserted, counts.operations.inserted),
        (20, 100)
    );

    // Busy for a minute (a bulk every second): at most one write in 5 s.
    recorder_writes(&fake);
    for _ in 0..60 {
        metrics.add_committed(bulk(1));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let busy = recorder_writes(&fake);
    assert!((10..=13).contains(&busy), "{busy} writes in a busy minute");

    // Idle for two minutes: nothing written.
    tokio::time::sleep(Duration::from_secs(10)).await;
    recorder_writes(&fake);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(recorder_writes(&fake), 0, "writes while idle");
    assert_eq!(status(&fake).counts.unwrap().transactions.inserted, 80);

    // A rejected message is a change too, and shows in the counts.
    metrics.reject("malformed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&fake).counts.unwrap().rejected, 1);
    assert_eq!(status(&fake).recorders[0].rejected, 1);
}
