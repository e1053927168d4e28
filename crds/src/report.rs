//! How recorders report into the status: the contract between `recorder/src/telemetry/status_report.rs`
//! and the operator's folding.

use std::time::Duration;

/// How often a recorder compares its counts, rejections and backlog with what it last reported
/// (in memory: this costs the API server nothing).
pub const REPORT_POLL: Duration = Duration::from_secs(1);

/// The shortest time between two reports of one recorder process: a busy recorder applies its
/// entry of `status.recorders` at most once in this time, so its counts reach the status within
/// a few seconds of a bulk while a hundred busy recorders cost the API server 20 writes a second.
/// An idle recorder (nothing changed since its last report) writes nothing.
pub const REPORT_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// The field manager of one recorder process's entry: one per incarnation (pod and start id).
///
/// Server-side apply removes a list-map entry that its manager applied before and leaves out
/// of a later apply. With one manager per pod, a restarted container's first report would
/// delete its predecessor's entry (and its counts) before the operator could fold it; with
/// one per incarnation, each process only ever touches its own entry. The API server limits
/// field managers to 128 characters: a very long pod name is cut, the start id is kept whole.
pub fn report_field_manager(pod: &str, start_id: &str) -> String {
    const PREFIX: &str = "bulk-recorder/";
    let room = 128 - PREFIX.len() - 1 - start_id.len().min(64);
    let pod: String = pod.chars().take(room).collect();
    let start_id: String = start_id.chars().take(64).collect();
    format!("{PREFIX}{pod}/{start_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_incarnation_of_a_pod_has_its_own_field_manager() {
        assert_ne!(
            report_field_manager("orders-7d9f-abcde", "20261124T100000-0000beef"),
            report_field_manager("orders-7d9f-abcde", "20261124T100500-0000cafe")
        );
        assert_eq!(
            report_field_manager("orders-7d9f-abcde", "s1"),
            "bulk-recorder/orders-7d9f-abcde/s1"
        );
    }

    #[test]
    fn a_field_manager_never_exceeds_128_characters() {
        let long = "p".repeat(253);
        let manager = report_field_manager(&long, "20261124T100000-0000beef");
        assert_eq!(manager.len(), 128);
        assert!(manager.ends_with("/20261124T100000-0000beef"));
    }
}
