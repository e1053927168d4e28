//! The reconciler: one BulkRecorder in, its owned objects and its status out.
//!
//! Order of business: check what the schema cannot (the name, leftover invalid specs, the
//! Secrets), apply the owned objects (skipping any this resource does not control, deleting
//! those it no longer wants), the PodMonitor when asked for, fold the recorder entries of
//! processes that are gone, then apply the status if the operator's part of it changed. A
//! reconcile that fails says why in the Degraded condition and a Warning event.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use bulk_recorder_crds::{BulkRecorder, BulkRecorderStatus, name_problem};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
};
use kube::{
    Api, Resource, ResourceExt,
    api::ListParams,
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};

pub use crate::error::Error;
use crate::{
    conditions,
    context::Context,
    desired,
    error::During,
    fold::{Fold, fold},
    monitoring,
    observed::Observed,
    owned,
    owned::Changes,
    status,
};

/// How often a healthy resource is revisited to refresh its status and fold counts (pod
/// deletions and owned-object changes trigger a reconcile sooner).
pub const REFRESH: Duration = Duration::from_secs(60);

pub async fn reconcile(br: Arc<BulkRecorder>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&br, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            ctx.failures.lock().expect("lock").remove(&key(&br));
        }
        Err(error) => report_failure(&br, &ctx, error).await,
    }
    result
}

fn key(br: &BulkRecorder) -> String {
    format!("{}/{}", br.namespace().unwrap_or_default(), br.name_any())
}

/// How long a refused permission waits before the next try: a grant is picked up within
/// seconds, and a failed request costs the API server little.
pub const FORBIDDEN_RETRY: Duration = Duration::from_secs(5);

/// Backs off 5 s, 10 s, 20 s ... up to 5 minutes; never hot-loops. A refused permission is
/// retried every [`FORBIDDEN_RETRY`]: the fix (a grant) happens outside, and nothing else
/// would notice it.
pub fn error_policy(br: Arc<BulkRecorder>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failures.inc();
    let mut failures = ctx.failures.lock().expect("lock");
    let count = failures.entry(key(&br)).or_insert(0);
    *count = count.saturating_add(1);
    let delay = if error.is_forbidden() {
        FORBIDDEN_RETRY
    } else {
        Duration::from_secs(5)
            .saturating_mul(1 << (*count - 1).min(6))
            .min(Duration::from_secs(300))
    };
    tracing::warn!(resource = key(&br), %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Shows a failed reconcile where people look: the Degraded condition and a Warning event.
/// Best effort: when the API refuses these too, the log line of `error_policy` remains.
async fn report_failure(br: &BulkRecorder, ctx: &Context, error: &Error) {
    let message = error.to_string();
    if let Some(ns) = br.namespace() {
        let current = br.status.clone().unwrap_or_default();
        let next = BulkRecorderStatus {
            conditions: conditions::failed(
                &message,
                error.is_forbidden(),
                br.metadata.generation,
                &current.conditions,
            ),
            last_reconcile_time: Some(now_rfc3339()),
            ..current.clone()
        };
        if status::differs(&current, &next) {
            let api = Api::<BulkRecorder>::namespaced(ctx.client.clone(), &ns);
            if let Err(e) = status::apply(&api, &br.name_any(), &next).await {
                tracing::warn!(resource = key(br), error = %e, "could not report the failure in the status");
            }
        }
    }
    let event = Event {
        type_: EventType::Warning,
        reason: "ReconcileError".into(),
        note: Some(message),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.events.publish(&event, &br.object_ref(&())).await {
        tracing::warn!(resource = key(br), error = %e, "could not publish an event");
    }
}

async fn reconcile_inner(br: &BulkRecorder, ctx: &Context) -> Result<Action, Error> {
    let ns = br.namespace().ok_or(Error::NoNamespace)?;
    let secrets = ctx
        .secrets
        .inspect(&Api::<Secret>::namespaced(ctx.client.clone(), &ns), &ns, br)
        .await
        .during(|| "reading the Secrets the spec names".into())?;
    let mut observed = Observed {
        invalid_name: name_problem(&br.name_any()),
        problems: br.spec.problems(),
        missing_secrets: secrets.missing.clone(),
        desired_replicas: br.spec.replicas,
        ..Default::default()
    };
    let mut changes = Changes::default();
    let mut deployment = None;
    if observed.invalid_name.is_none() && observed.problems.is_empty() {
        deployment =
            owned::apply_all(br, ctx, &secrets.versions, &mut observed, &mut changes).await?;
        observed.pod_monitor = monitoring::reconcile(br, ctx, &mut changes).await;
    }
    observed = observed.with_deployment(deployment.as_ref());

    let Some((current, folding)) = fold_gone_recorders(br, ctx, &ns).await? else {
        // Recorders reported between each read and fold, three times: try again shortly.
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let folded = !folding.remove.is_empty();
    let next = next_status(br, &observed, deployment.as_ref(), &current, folding);
    let action = write_status(br, ctx, &ns, &current, &next, folded).await?;
    publish_events(br, ctx, &changes, &current, &next).await;
    Ok(action)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Applies `next` when [`status::decide`] says so; the next visit is sooner while counts wait.
/// Right after a fold the counts are written at once, so that `counts` is `folded` plus the
/// entries again.
async fn write_status(
    br: &BulkRecorder,
    ctx: &Context,
    ns: &str,
    current: &BulkRecorderStatus,
    next: &BulkRecorderStatus,
    folded: bool,
) -> Result<Action, Error> {
    let since = match folded {
        true => None,
        false => ctx
            .status_writes
            .lock()
            .expect("lock")
            .get(&key(br))
            .map(|at| at.elapsed()),
    };
    match status::decide(current, next, since, chrono::Utc::now()) {
        status::Write::No => Ok(Action::requeue(REFRESH)),
        status::Write::Later(wait) => Ok(Action::requeue(wait)),
        status::Write::Now => {
            let api = Api::<BulkRecorder>::namespaced(ctx.client.clone(), ns);
            status::apply(&api, &br.name_any(), next)
                .await
                .during(|| "applying the status".into())?;
            let now = tokio::time::Instant::now();
            ctx.status_writes.lock().expect("lock").insert(key(br), now);
            Ok(Action::requeue(REFRESH))
        }
    }
}

/// Folds the entries of recorders that are gone; returns the status as it then is and the fold.
/// `None` when recorders kept reporting between each read and fold.
async fn fold_gone_recorders(
    br: &BulkRecorder,
    ctx: &Context,
    ns: &str,
) -> Result<Option<(BulkRecorderStatus, Fold)>, Error> {
    let name = br.name_any();
    let live_pods = match ctx.stores.get().and_then(|s| s.recorder_pods(ns, &name)) {
        Some(pods) => pods,
        None => list_recorder_pods(ctx, ns, br).await?,
    };
    let deleted = ctx.deleted_pods.in_namespace(ns);
    let api = Api::<BulkRecorder>::namespaced(ctx.client.clone(), ns);
    let mut current = br.status.clone().unwrap_or_default();
    for _attempt in 0..3 {
        let folding = fold(&current, &live_pods, &deleted, chrono::Utc::now());
        if folding.remove.is_empty() {
            return Ok(Some((current, folding)));
        }
        if status::fold(&api, br, &current, &folding)
            .await
            .during(|| "folding the counts of recorders that are gone".into())?
        {
            tracing::info!(
                resource = key(br),
                folded = folding.remove.len(),
                "folded the counts of recorders that are gone"
            );
            return Ok(Some((current, folding)));
        }
        // A recorder reported in between: read the status again and fold what it now holds.
        current = api
            .get_status(&name)
            .await
            .during(|| "reading the status again after a concurrent change".into())?
            .status
            .unwrap_or_default();
    }
    Ok(None)
}

/// The operator's part of the status.
fn next_status(
    br: &BulkRecorder,
    observed: &Observed,
    deployment: Option<&Deployment>,
    current: &BulkRecorderStatus,
    folding: Fold,
) -> BulkRecorderStatus {
    let replicas = deployment
        .and_then(|d| d.status.as_ref()?.replicas)
        .unwrap_or(0);
    BulkRecorderStatus {
        observed_generation: br.metadata.generation,
        effective_size: Some(br.spec.effective_size()),
        replicas: Some(replicas),
        ready_replicas: Some(observed.ready_replicas),
        selector: Some(desired::selector_string(br)),
        backlog: folding.backlog,
        conditions: conditions::compute(observed, br.metadata.generation, &current.conditions),
        counts: Some(folding.counts),
        last_reconcile_time: Some(now_rfc3339()),
        ..Default::default()
    }
}

/// The recorder pods, from the API (when there is no complete pod store).
async fn list_recorder_pods(
    ctx: &Context,
    ns: &str,
    br: &BulkRecorder,
) -> Result<BTreeSet<String>, Error> {
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list_metadata(&ListParams::default().labels(&desired::selector_string(br)))
        .await
        .during(|| "listing the recorder pods".into())?;
    Ok(pods
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}

/// Events for what changed: objects the server changed or deleted, and a problem condition
/// (Degraded, or PodMonitorReady false) turning on or changing.
async fn publish_events(
    br: &BulkRecorder,
    ctx: &Context,
    changes: &Changes,
    before: &BulkRecorderStatus,
    after: &BulkRecorderStatus,
) {
    let event = |type_: EventType, reason: &str, note: String, action: &str| Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    let mut events = Vec::new();
    if !changes.applied.is_empty() {
        let note = format!("applied {}", changes.applied.join(", "));
        events.push(event(EventType::Normal, "Applied", note, "Apply"));
    }
    if !changes.deleted.is_empty() {
        let note = format!(
            "deleted {}: the spec no longer asks for it",
            changes.deleted.join(", ")
        );
        events.push(event(EventType::Normal, "Deleted", note, "Delete"));
    }
    for (type_, bad) in [
        ("Degraded", "True"),
        (conditions::POD_MONITOR_READY, "False"),
    ] {
        let problem = |s: &BulkRecorderStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == bad)
                .map(|c| (c.reason.clone(), c.message.clone()))
        };
        if let Some((reason, message)) = problem(after)
            && problem(before).as_ref() != Some(&(reason.clone(), message.clone()))
        {
            events.push(event(EventType::Warning, &reason, message, "Reconcile"));
        }
    }
    let reference = br.object_ref(&());
    for event in events {
        if let Err(error) = ctx.events.publish(&event, &reference).await {
            tracing::warn!(%error, "could not publish an event");
        }
    }
}
