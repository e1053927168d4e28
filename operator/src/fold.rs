//! Turning recorder entries into totals that only grow.
//!
//! Each recorder process reports its cumulative counts in its own `status.recorders` entry.
//! When a process is gone (its pod deleted, or a newer incarnation of the same pod has
//! reported), its entry is removed and its counts are added to `status.folded`, in the same
//! patch, so they are counted exactly once. `counts = folded + live entries`.

use std::collections::{BTreeMap, BTreeSet};

use bulk_recorder_crds::{BulkRecorderStatus, Counts, RecorderReport};
use chrono::{DateTime, Duration, Utc};

/// What to do with the entries of one status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fold {
    /// Indexes in `status.recorders` of the entries to remove, highest first.
    pub remove: Vec<usize>,
    /// `status.folded` after the removal.
    pub folded: Counts,
    /// `status.counts`: folded plus the entries that stay.
    pub counts: Counts,
    /// `status.backlog`: the backlog of the entry that stays and reported last with one (one
    /// queue: the latest measurement, not a sum).
    pub backlog: Option<i64>,
}

/// An entry of a pod that is not (yet) listed is folded only once it has been silent this
/// long: a pod that was just created may report before our pod list shows it. (An idle
/// recorder reports nothing, so silence alone never retires the entry of a listed pod.)
pub const GRACE: Duration = Duration::seconds(90);

fn reported_at(entry: &RecorderReport) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&entry.last_report)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Decides which entries are retired, given the recorder pods that exist now and those the pod
/// watch saw deleted (with when): an entry of a deleted pod that reported before the deletion is
/// final, and goes at once.
pub fn fold(
    status: &BulkRecorderStatus,
    live_pods: &BTreeSet<String>,
    deleted_pods: &BTreeMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Fold {
    // The newest incarnation of each pod is the one that reported last.
    let mut newest: BTreeMap<&str, (DateTime<Utc>, &str)> = BTreeMap::new();
    for entry in &status.recorders {
        let candidate = (reported_at(entry), entry.start_id.as_str());
        newest
            .entry(entry.pod.as_str())
            .and_modify(|best| *best = (*best).max(candidate))
            .or_insert(candidate);
    }
    let mut result = Fold {
        folded: status.folded.unwrap_or_default(),
        ..Default::default()
    };
    let mut live = Counts::default();
    let mut latest: Option<(DateTime<Utc>, i64)> = None;
    for (index, entry) in status.recorders.iter().enumerate() {
        let superseded = newest[entry.pod.as_str()].1 != entry.start_id;
        let unlisted = !live_pods.contains(&entry.pod);
        let pod_gone = unlisted && now - reported_at(entry) > GRACE;
        let pod_deleted = unlisted
            && deleted_pods
                .get(&entry.pod)
                .is_some_and(|at| reported_at(entry) <= *at);
        if superseded || pod_gone || pod_deleted {
            result.remove.push(index);
            result.folded += entry.counts();
        } else {
            live += entry.counts();
            if let Some(backlog) = entry.backlog
                && latest.is_none_or(|(at, _)| reported_at(entry) > at)
            {
                latest = Some((reported_at(entry), backlog));
            }
        }
    }
    result.backlog = latest.map(|(_, backlog)| backlog);
    result.remove.reverse();
    result.counts = result.folded;
    result.counts += live;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulk_recorder_crds::RowCounts;

    fn entry(pod: &str, start: &str, inserted: i64, at: &str) -> RecorderReport {
        let rows = RowCounts {
            attempted: inserted + 1,
            inserted,
            ignored: 1,
            ..Default::default()
        };
        RecorderReport {
            pod: pod.into(),
            start_id: start.into(),
            transactions: rows,
            operations: rows,
            last_report: at.into(),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-24T12:10:00Z".parse().unwrap()
    }

    fn pods(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn live_entries_are_summed_and_nothing_is_removed() {
        let status = BulkRecorderStatus {
            recorders: vec![
                entry("a", "1", 10, "2026-11-24T12:09:58Z"),
                entry("b", "1", 5, "2026-11-24T12:09:59Z"),
            ],
            ..Default::default()
        };
        let f = fold(&status, &pods(&["a", "b"]), &BTreeMap::new(), now());
        assert!(f.remove.is_empty());
        assert_eq!(f.counts.transactions.inserted, 15);
        assert_eq!(f.folded, Counts::default());
    }

    #[test]
    fn a_gone_pod_is_folded_once_and_totals_never_drop() {
        let status = BulkRecorderStatus {
            recorders: vec![
                entry("a", "1", 10, "2026-11-24T12:00:00Z"),
                entry("b", "1", 5, "2026-11-24T12:09:59Z"),
            ],
            ..Default::default()
        };
        let before = fold(&status, &pods(&["a", "b"]), &BTreeMap::new(), now()).counts;
        let f = fold(&status, &pods(&["b"]), &BTreeMap::new(), now());
        assert_eq!(f.remove, vec![0]);
        assert_eq!(f.folded.transactions.inserted, 10);
        assert_eq!(
            f.counts, before,
            "folding moves counts, it does not change the total"
        );

        // The next round sees the patched status: the folded entry is not counted again.
        let after = BulkRecorderStatus {
            recorders: vec![status.recorders[1].clone()],
            folded: Some(f.folded),
            ..Default::default()
        };
        let again = fold(&after, &pods(&["b"]), &BTreeMap::new(), now());
        assert!(again.remove.is_empty());
        assert_eq!(again.counts, before);
    }

    #[test]
    fn a_restarted_container_retires_its_previous_entry() {
        let status = BulkRecorderStatus {
            recorders: vec![
                entry("a", "old", 100, "2026-11-24T12:05:00Z"),
                entry("a", "new", 3, "2026-11-24T12:09:59Z"),
            ],
            folded: Some(Counts::default()),
            ..Default::default()
        };
        let f = fold(&status, &pods(&["a"]), &BTreeMap::new(), now());
        assert_eq!(f.remove, vec![0]);
        assert_eq!(
            f.counts.transactions.inserted, 103,
            "counters restarting at zero lose nothing"
        );
    }

    #[test]
    fn updated_and_conflicting_rows_are_folded_like_the_others() {
        let mut gone = entry("a", "1", 10, "2026-11-24T12:00:00Z");
        gone.transactions.updated = 4;
        gone.transactions.conflicting = 1;
        let mut live = entry("b", "1", 5, "2026-11-24T12:09:59Z");
        live.transactions.updated = 2;
        let status = BulkRecorderStatus {
            recorders: vec![gone, live],
            ..Default::default()
        };
        let f = fold(&status, &pods(&["b"]), &BTreeMap::new(), now());
        assert_eq!(
            (
                f.folded.transactions.updated,
                f.folded.transactions.conflicting
            ),
            (4, 1)
        );
        assert_eq!(
            (
                f.counts.transactions.updated,
                f.counts.transactions.conflicting
            ),
            (6, 1)
        );
    }

    #[test]
    fn rejected_messages_are_summed_and_folded_like_the_rows() {
        let mut gone = entry("a", "1", 10, "2026-11-24T12:00:00Z");
        gone.rejected = 3;
        let mut live = entry("b", "1", 5, "2026-11-24T12:09:59Z");
        live.rejected = 2;
        let status = BulkRecorderStatus {
            recorders: vec![gone, live],
            ..Default::default()
        };
        let f = fold(&status, &pods(&["b"]), &BTreeMap::new(), now());
        assert_eq!((f.folded.rejected, f.counts.rejected), (3, 5));
    }

    #[test]
    fn a_pod_seen_deleted_after_its_last_report_is_folded_at_once() {
        let status = BulkRecorderStatus {
            recorders: vec![entry("a", "1", 7, "2026-11-24T12:09:50Z")],
            ..Default::default()
        };
        let deleted = BTreeMap::from([("a".to_string(), now())]);
        let f = fold(&status, &pods(&[]), &deleted, now());
        assert_eq!(f.remove, vec![0]);
        assert_eq!(f.folded.transactions.inserted, 7);
        // A report after the deletion (clock skew, or the name reused) waits for the grace.
        let earlier = BTreeMap::from([("a".to_string(), "2026-11-24T12:09:00Z".parse().unwrap())]);
        assert!(fold(&status, &pods(&[]), &earlier, now()).remove.is_empty());
    }

    #[test]
    fn an_unlisted_pod_that_reported_recently_is_kept() {
        let status = BulkRecorderStatus {
            recorders: vec![entry("new-pod", "1", 7, "2026-11-24T12:09:50Z")],
            ..Default::default()
        };
        let f = fold(&status, &pods(&[]), &BTreeMap::new(), now());
        assert!(f.remove.is_empty(), "within the grace period");
        assert_eq!(f.counts.transactions.inserted, 7);
    }

    #[test]
    fn the_backlog_is_the_latest_measurement_not_a_sum() {
        let measured = |pod: &str, at: &str, backlog: Option<i64>| RecorderReport {
            backlog,
            ..entry(pod, "1", 1, at)
        };
        let status = BulkRecorderStatus {
            recorders: vec![
                measured("a", "2026-11-24T12:09:30Z", Some(700)),
                measured("b", "2026-11-24T12:09:50Z", Some(650)),
                // Reported last, but before recorders measured the queue.
                measured("c", "2026-11-24T12:09:59Z", None),
            ],
            ..Default::default()
        };
        let live = pods(&["a", "b", "c"]);
        assert_eq!(
            fold(&status, &live, &BTreeMap::new(), now()).backlog,
            Some(650)
        );
        // A gone recorder's measurement goes with its entry; with none left, nobody measures.
        let gone = BTreeMap::from([("a".to_string(), now()), ("b".to_string(), now())]);
        let f = fold(&status, &pods(&["c"]), &gone, now());
        assert_eq!(f.remove.len(), 2);
        assert_eq!(f.backlog, None);
    }
}
