//! The chart's alerts and dashboard name only metrics the recorder exports: a rule or a panel on
//! a misspelled or renamed metric never fires and never draws, silently.
//!
//! The metric names are read from the chart's files as they are (names are never templated
//! there), then compared with what a recorder in this process serves on /metrics after it has
//! stored some messages and rejected one (a metric with labels appears once it has a value).

use std::{collections::BTreeSet, time::Duration};

use bulk_recorder_e2e::*;
use bulk_recorder_publish::PublishPlan;

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/bulk-recorder-operator"
);

/// Names starting with `bulk_recorder_` in `text`, histogram series reduced to their metric.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bulk_recorder_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(base_name(&tail[..end]).to_string());
        }
        rest = &tail[end..];
    }
    names
}

fn base_name(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// The metrics of a /metrics page (sample lines only).
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| base_name(name).to_string())
        .collect()
}

#[test]
fn names_are_read_as_prometheus_reads_them() {
    let names = metric_names(
        "histogram_quantile(0.5, rate(bulk_recorder_bulk_size_bucket[5m])) / x_bulk_recorder_y",
    );
    assert_eq!(
        names,
        BTreeSet::from(["bulk_recorder_bulk_size".to_string()])
    );
    let page =
        "# HELP bulk_recorder_bulk_size x\nbulk_recorder_bulk_size_sum 3\nbulk_recorder_ready 1\n";
    assert_eq!(
        exported(page),
        BTreeSet::from([
            "bulk_recorder_bulk_size".into(),
            "bulk_recorder_ready".into()
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_alerts_and_the_dashboard_is_exported_by_the_recorder() {
    let rules = std::fs::read_to_string(format!("{CHART}/templates/prometheusrule.yaml")).unwrap();
    let dashboard =
        std::fs::read_to_string(format!("{CHART}/dashboards/bulk-recorder.json")).unwrap();
    let used: BTreeSet<String> = metric_names(&rules)
        .into_iter()
        .chain(metric_names(&dashboard))
        .collect();
    assert!(used.len() >= 10, "only {used:?}: the files were not read");

    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let plan = PublishPlan {
        count: 20,
        invalid: 1,
        ..Default::default()
    };
    queue.publish(&plan).await;
    let recorder = RunningRecorder::start(config(&db, &queue, &[]));
    wait_until(
        Duration::from_secs(60),
        "20 stored and 1 rejected",
        || async {
            recorder.committed_transactions() == 20 && recorder.metrics.rejected_total() == 1
        },
    )
    .await;
    let page = recorder.metrics.render();
    recorder.stop().await;

    let served = exported(&page);
    let missing: Vec<&String> = used.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "the chart's alerts or dashboard use metrics the recorder does not export: {missing:?}"
    );
}
