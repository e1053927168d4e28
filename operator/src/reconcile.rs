//! The reconciler: one BulkRecorder in, its owned objects and its status out.
//!
//! Order of business: check what the schema cannot (the name, leftover invalid specs, the
//! Secrets), apply the owned objects (skipping any this resource does not control), fold the
//! recorder entries of processes that are gone, then apply the status if the operator's part of
//! it changed. A reconcile that fails says why in the Degraded condition and a Warning event.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use bulk_recorder_crds::{BulkRecorder, BulkRecorderStatus, name_problem};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret, Service, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, ObjectMeta},
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    apply::Outcome,
    conditions::{self, Observed},
    context::Context,
    desired,
    fold::fold,
    status,
    stores::cached_meta,
};

/// How often a healthy resource is revisited to refresh its status and fold counts (pod
/// deletions and owned-object changes trigger a reconcile sooner).
pub const REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("the BulkRecorder has no namespace")]
    NoNamespace,
}

/// Names the step an API error happened in, for the log, the condition and the event.
trait During<T> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> During<T> for Result<T, kube::Error> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}

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

/// Backs off 5 s, 10 s, 20 s ... up to 5 minutes; never hot-loops.
pub fn error_policy(br: Arc<BulkRecorder>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failures.inc();
    let mut failures = ctx.failures.lock().expect("lock");
    let count = failures.entry(key(&br)).or_insert(0);
    *count = count.saturating_add(1);
    let delay = Duration::from_secs(5)
        .saturating_mul(1 << (*count - 1).min(6))
        .min(Duration::from_secs(300));
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
            conditions: conditions::failed(&message, br.metadata.generation, &current.conditions),
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

/// Applies one owned object; records a conflict or, when the server changed it, its kind.
async fn own<K>(
    ctx: &Context,
    api: Api<K>,
    desired: &K,
    cached: Option<ObjectMeta>,
    owner_uid: &str,
    observed: &mut Observed,
    applied: &mut Vec<String>,
) -> Result<Option<Outcome<K>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let outcome = ctx
        .applied
        .apply(&api, desired, cached, owner_uid)
        .await
        .during(|| {
            format!(
                "applying {} {}",
                K::kind(&()),
                desired.meta().name.clone().unwrap_or_default()
            )
        })?;
    match &outcome {
        Outcome::Applied { changed: true, .. } => applied.push(K::kind(&()).into_owned()),
        Outcome::Conflict(why) => observed.conflicts.push(why.clone()),
        _ => {}
    }
    Ok(Some(outcome))
}

async fn reconcile_inner(br: &BulkRecorder, ctx: &Context) -> Result<Action, Error> {
    let ns = br.namespace().ok_or(Error::NoNamespace)?;
    let name = br.name_any();
    let uid = br.uid().unwrap_or_default();
    let client = &ctx.client;
    let stores = ctx.stores.get();
    let secrets = ctx
        .secrets
        .inspect(&Api::<Secret>::namespaced(client.clone(), &ns), &ns, br)
        .await
        .during(|| "reading the Secrets the spec names".into())?;
    let mut observed = Observed {
        invalid_name: name_problem(&name),
        problems: br.spec.problems(),
        missing_secrets: secrets.missing.clone(),
        desired_replicas: br.spec.replicas,
        ..Default::default()
    };

    let mut applied = Vec::new();
    let mut deployment = None;
    if observed.invalid_name.is_none() && observed.problems.is_empty() {
        let sa = desired::service_account(br);
        let sa_name = sa.name_any();
        let meta = |f: fn(&crate::stores::Stores, &str, &str) -> Option<ObjectMeta>, n: &str| {
            stores.and_then(|s| f(s, &ns, n))
        };
        own(
            ctx,
            Api::<ServiceAccount>::namespaced(client.clone(), &ns),
            &sa,
            meta(|s, ns, n| cached_meta(&s.service_accounts, ns, n), &sa_name),
            &uid,
            &mut observed,
            &mut applied,
        )
        .await?;
        own(
            ctx,
            Api::<Role>::namespaced(client.clone(), &ns),
            &desired::role(br),
            meta(|s, ns, n| cached_meta(&s.roles, ns, n), &sa_name),
            &uid,
            &mut observed,
            &mut applied,
        )
        .await?;
        own(
            ctx,
            Api::<RoleBinding>::namespaced(client.clone(), &ns),
            &desired::role_binding(br),
            meta(|s, ns, n| cached_meta(&s.role_bindings, ns, n), &sa_name),
            &uid,
            &mut observed,
            &mut applied,
        )
        .await?;
        let service = desired::service(br);
        own(
            ctx,
            Api::<Service>::namespaced(client.clone(), &ns),
            &service,
            meta(
                |s, ns, n| cached_meta(&s.services, ns, n),
                &service.name_any(),
            ),
            &uid,
            &mut observed,
            &mut applied,
        )
        .await?;
        let cached = stores.and_then(|s| {
            s.deployments
                .get(&ObjectRef::new(&name).within(&ns))
                .map(|d| (*d).clone())
        });
        let outcome = own(
            ctx,
            Api::<Deployment>::namespaced(client.clone(), &ns),
            &desired::deployment(br, &ctx.recorder_image, &secrets.versions),
            cached.as_ref().map(|d| d.metadata.clone()),
            &uid,
            &mut observed,
            &mut applied,
        )
        .await?;
        deployment = match outcome {
            Some(Outcome::Applied { object, .. }) => Some(object),
            Some(Outcome::Current) => cached,
            _ => None,
        };
    }
    observed = observed.with_deployment(deployment.as_ref());

    let live_pods = match stores.and_then(|s| s.recorder_pods(&ns, &name)) {
        Some(pods) => pods,
        None => list_recorder_pods(ctx, &ns, br).await?,
    };
    let deleted = ctx.deleted_pods.in_namespace(&ns);
    let status_api = Api::<BulkRecorder>::namespaced(client.clone(), &ns);
    let mut current = br.status.clone().unwrap_or_default();
    let mut folding = fold(&current, &live_pods, &deleted, chrono::Utc::now());
    let mut attempts = 0;
    while !folding.remove.is_empty() {
        if status::fold(&status_api, br, &current, &folding)
            .await
            .during(|| "folding the counts of recorders that are gone".into())?
        {
            tracing::info!(
                resource = key(br),
                folded = folding.remove.len(),
                "folded the counts of recorders that are gone"
            );
            break;
        }
        // A recorder reported in between: read the status again and fold what it now holds.
        attempts += 1;
        if attempts == 3 {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        current = status_api
            .get_status(&name)
            .await
            .during(|| "reading the status again after a concurrent change".into())?
            .status
            .unwrap_or_default();
        folding = fold(&current, &live_pods, &deleted, chrono::Utc::now());
    }

    let next = BulkRecorderStatus {
        observed_generation: br.metadata.generation,
        effective_size: Some(br.spec.effective_size()),
        replicas: Some(
            deployment
                .as_ref()
                .and_then(|d| d.status.as_ref()?.replicas)
                .unwrap_or(0),
        ),
        ready_replicas: Some(observed.ready_replicas),
        conditions: conditions::compute(&observed, br.metadata.generation, &current.conditions),
        counts: Some(folding.counts),
        ..Default::default()
    };
    if status::differs(&current, &next) {
        status::apply(&status_api, &name, &next)
            .await
            .during(|| "applying the status".into())?;
    }

    publish_events(br, ctx, &applied, &current, &next).await;
    Ok(Action::requeue(REFRESH))
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

/// Events for what changed: objects the server changed, and the Degraded condition turning on.
async fn publish_events(
    br: &BulkRecorder,
    ctx: &Context,
    applied: &[String],
    before: &BulkRecorderStatus,
    after: &BulkRecorderStatus,
) {
    let reference = br.object_ref(&());
    let mut events = Vec::new();
    if !applied.is_empty() {
        events.push(Event {
            type_: EventType::Normal,
            reason: "Applied".into(),
            note: Some(format!("applied {}", applied.join(", "))),
            action: "Apply".into(),
            secondary: None,
        });
    }
    let degraded = |s: &BulkRecorderStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True")
            .cloned()
    };
    if let Some(now) = degraded(after)
        && degraded(before).map(|b| (b.reason, b.message))
            != Some((now.reason.clone(), now.message.clone()))
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: now.reason.clone(),
            note: Some(now.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    for event in events {
        if let Err(error) = ctx.events.publish(&event, &reference).await {
            tracing::warn!(%error, "could not publish an event");
        }
    }
}
