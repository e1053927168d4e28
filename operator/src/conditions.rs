//! The Ready, Progressing and Degraded conditions (and PodMonitorReady), computed from what the
//! reconciler saw.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::observed::{Observed, PodMonitorState};

/// The condition of the PodMonitor, present while the spec asks for one.
pub const POD_MONITOR_READY: &str = "PodMonitorReady";

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// Ready, Progressing, Degraded and, while the spec asks for a PodMonitor, PodMonitorReady;
/// `previous` keeps transition times of conditions that did not change.
pub fn compute(
    observed: &Observed,
    generation: Option<i64>,
    previous: &[Condition],
) -> Vec<Condition> {
    let degraded = degraded(observed, generation);
    let is_degraded = degraded.status == "True";
    let mut next = vec![
        ready(observed, is_degraded, generation),
        progressing(observed, is_degraded, generation),
        degraded,
    ];
    next.extend(
        observed
            .pod_monitor
            .as_ref()
            .map(|state| pod_monitor(state, generation)),
    );
    keep_transition_times(next, previous)
}

/// The first problem that keeps the operator from running the recorders as asked.
fn degraded(observed: &Observed, generation: Option<i64>) -> Condition {
    let (reason, message) = if let Some(why) = &observed.invalid_name {
        ("InvalidName", why.clone())
    } else if !observed.problems.is_empty() {
        ("InvalidSpec", observed.problems.join("; "))
    } else if !observed.conflicts.is_empty() {
        (
            "NameConflict",
            format!(
                "{}: the operator leaves it alone; delete or rename it, or rename this BulkRecorder",
                observed.conflicts.join("; ")
            ),
        )
    } else if !observed.missing_secrets.is_empty() {
        (
            "SecretMissing",
            format!(
                "missing {}: create it in this namespace (the recorders cannot start without it)",
                observed.missing_secrets.join(", ")
            ),
        )
    } else {
        let fine = "the spec is valid and its Secrets exist".to_string();
        return condition("Degraded", false, "AsExpected", fine, generation);
    };
    condition("Degraded", true, reason, message, generation)
}

fn progressing(observed: &Observed, is_degraded: bool, generation: Option<i64>) -> Condition {
    let (desired, ready) = (observed.desired_replicas, observed.ready_replicas);
    let rolling = !is_degraded
        && (!observed.rollout_observed || observed.updated_replicas < desired || ready < desired);
    if rolling {
        let message = format!("{ready} of {desired} recorders ready on the latest spec");
        condition("Progressing", true, "RollingOut", message, generation)
    } else {
        let message = "no rollout in progress".to_string();
        condition("Progressing", false, "Complete", message, generation)
    }
}

fn ready(observed: &Observed, is_degraded: bool, generation: Option<i64>) -> Condition {
    let (desired, ready) = (observed.desired_replicas, observed.ready_replicas);
    let (status, reason, message) = if is_degraded {
        (false, "Degraded", "see the Degraded condition".to_string())
    } else if desired == 0 {
        let why = "spec.replicas is 0: nothing is recording".to_string();
        (false, "ScaledToZero", why)
    } else if ready >= desired && observed.rollout_observed {
        let all = format!("{ready} of {desired} recorders ready");
        (true, "AllReady", all)
    } else {
        let some = format!(
            "{ready} of {desired} recorders ready (a recorder is ready when it reaches both RabbitMQ and PostgreSQL)"
        );
        (false, "RecordersNotReady", some)
    };
    condition("Ready", status, reason, message, generation)
}

/// PodMonitorReady: whether Prometheus is told to scrape the recorders, and if not, why.
fn pod_monitor(state: &PodMonitorState, generation: Option<i64>) -> Condition {
    let (status, reason, message) = match state {
        PodMonitorState::Applied(labels) if labels.is_empty() => (
            true,
            "Applied",
            "the PodMonitor (every recorder pod's metrics port 9090, /metrics) is applied with \
             the operator's labels only: a Prometheus that selects PodMonitors by label \
             (kube-prometheus-stack: release=<its release name>) does not pick it up; set \
             spec.monitoring.podMonitorLabels to what it selects"
                .into(),
        ),
        PodMonitorState::Applied(labels) => (
            true,
            "Applied",
            format!(
                "the PodMonitor (every recorder pod's metrics port 9090, /metrics) is applied with \
                 {}: a Prometheus whose podMonitorSelector matches them, and whose \
                 podMonitorNamespaceSelector takes this namespace, scrapes the recorders",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        PodMonitorState::CrdMissing => (
            false,
            "CRDNotInstalled",
            "spec.monitoring.podMonitor is true, but the API server does not serve monitoring.coreos.com/v1 PodMonitors: install the Prometheus Operator (or its CRDs), or set spec.monitoring.podMonitor to false; recording is not affected".into(),
        ),
        PodMonitorState::Conflict(why) => (
            false,
            "NameConflict",
            format!("{why}: the operator leaves it alone; delete or rename it, or rename this BulkRecorder"),
        ),
        PodMonitorState::Failed(error) => (
            false,
            "ApplyFailed",
            format!("{error} (retried within a minute; recording is not affected)"),
        ),
    };
    condition(POD_MONITOR_READY, status, reason, message, generation)
}

/// The conditions after a reconcile failed: Degraded with the error (so that `kubectl describe`
/// shows it), not Ready; Progressing and PodMonitorReady stay as they were. A refused permission
/// (`forbidden`) has a reason of its own and says what to grant.
pub fn failed(
    error: &str,
    forbidden: bool,
    generation: Option<i64>,
    previous: &[Condition],
) -> Vec<Condition> {
    let (reason, message) = if forbidden {
        (
            "Forbidden",
            format!(
                "{error}: the operator's ServiceAccount lacks this permission; grant it (the chart's RBAC, or the rules of operator/src/rbac.rs): retried every 5 s"
            ),
        )
    } else {
        ("ReconcileError", format!("{error} (retrying with backoff)"))
    };
    let progressing = previous
        .iter()
        .find(|c| c.type_ == "Progressing")
        .cloned()
        .unwrap_or_else(|| {
            condition(
                "Progressing",
                false,
                "ReconcileError",
                "see the Degraded condition".into(),
                generation,
            )
        });
    let mut next = vec![
        condition(
            "Ready",
            false,
            "Degraded",
            "see the Degraded condition".into(),
            generation,
        ),
        progressing,
        condition("Degraded", true, reason, message, generation),
    ];
    next.extend(
        previous
            .iter()
            .find(|c| c.type_ == POD_MONITOR_READY)
            .cloned(),
    );
    keep_transition_times(next, previous)
}

/// A condition whose status did not change keeps the time of its last transition.
fn keep_transition_times(next: Vec<Condition>, previous: &[Condition]) -> Vec<Condition> {
    next.into_iter()
        .map(|mut c| {
            if let Some(old) = previous.iter().find(|p| p.type_ == c.type_)
                && old.status == c.status
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
            c
        })
        .collect()
}

/// Conditions equal but for their transition times.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| key(x) == key(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(conditions: &'a [Condition], t: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn healthy() -> Observed {
        Observed {
            desired_replicas: 2,
            ready_replicas: 2,
            updated_replicas: 2,
            rollout_observed: true,
            ..Default::default()
        }
    }

    #[test]
    fn all_replicas_ready_is_ready_and_not_progressing() {
        let c = compute(&healthy(), Some(3), &[]);
        assert_eq!(find(&c, "Ready").status, "True");
        assert_eq!(find(&c, "Progressing").status, "False");
        assert_eq!(find(&c, "Degraded").status, "False");
        assert_eq!(find(&c, "Ready").observed_generation, Some(3));
    }

    #[test]
    fn a_missing_secret_is_degraded_with_a_message_that_says_what_to_create() {
        let observed = Observed {
            missing_secrets: vec!["secret rabbitmq (key url)".into()],
            ..healthy()
        };
        let c = compute(&observed, Some(1), &[]);
        let degraded = find(&c, "Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "SecretMissing")
        );
        assert!(degraded.message.contains("secret rabbitmq (key url)"));
        assert!(degraded.message.contains("create it"));
        assert_eq!(find(&c, "Ready").status, "False");
    }

    #[test]
    fn a_rollout_in_progress_is_progressing_and_not_ready() {
        let observed = Observed {
            ready_replicas: 1,
            updated_replicas: 1,
            ..healthy()
        };
        let c = compute(&observed, Some(1), &[]);
        assert_eq!(find(&c, "Progressing").status, "True");
        assert_eq!(find(&c, "Ready").reason, "RecordersNotReady");
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = compute(&healthy(), Some(1), &[]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = compute(&healthy(), Some(1), &first);
        assert_eq!(first, second);
        assert!(same(&first, &second));
    }

    #[test]
    fn a_missing_pod_monitor_crd_is_its_own_condition_and_degrades_nothing() {
        let observed = Observed {
            pod_monitor: Some(PodMonitorState::CrdMissing),
            ..healthy()
        };
        let c = compute(&observed, Some(1), &[]);
        assert_eq!(find(&c, "Ready").status, "True");
        assert_eq!(find(&c, "Degraded").status, "False");
        let monitor = find(&c, POD_MONITOR_READY);
        assert_eq!(
            (monitor.status.as_str(), monitor.reason.as_str()),
            ("False", "CRDNotInstalled")
        );
        assert!(monitor.message.contains("install the Prometheus Operator"));
        assert!(
            compute(&healthy(), Some(1), &[])
                .iter()
                .all(|c| c.type_ != POD_MONITOR_READY),
            "no condition while the spec asks for no PodMonitor"
        );
    }

    #[test]
    fn a_failed_reconcile_keeps_the_pod_monitor_condition() {
        let observed = Observed {
            pod_monitor: Some(PodMonitorState::Applied(Default::default())),
            ..healthy()
        };
        let before = compute(&observed, Some(1), &[]);
        let after = failed("applying Deployment orders: boom", false, Some(1), &before);
        assert_eq!(
            find(&after, POD_MONITOR_READY),
            find(&before, POD_MONITOR_READY)
        );
        assert_eq!(find(&after, "Degraded").reason, "ReconcileError");
    }

    #[test]
    fn a_refused_permission_says_what_to_grant_and_when_it_is_retried() {
        let error = "applying Deployment orders: Operator cannot patch resource \"deployments\"";
        let after = failed(error, true, Some(1), &[]);
        let degraded = find(&after, "Degraded");
        assert_eq!(degraded.reason, "Forbidden");
        assert!(degraded.message.starts_with(error), "{}", degraded.message);
        assert!(
            degraded.message.contains("grant it"),
            "{}",
            degraded.message
        );
        assert!(
            degraded.message.contains("every 5 s"),
            "{}",
            degraded.message
        );
    }
}
