//! The reconciler: one BulkRecorder in, its owned objects and its status out.
//!
//! Order of business: check what the schema cannot (Secrets, leftover invalid specs), apply
//! the owned objects (only those that differ), fold the recorder entries of processes that are
//! gone, then write the status if anything in it changed. A no-op reconcile only reads.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use bulk_recorder_crds::{BulkRecorder, BulkRecorderStatus, SecretKeyRef};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret, Service, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use serde_json::json;

use crate::{
    apply::apply,
    conditions::{self, Observed},
    context::Context,
    desired,
    fold::fold,
};

/// How often a healthy resource is revisited to refresh its status and fold counts.
pub const REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the BulkRecorder has no namespace")]
    NoNamespace,
}

pub async fn reconcile(br: Arc<BulkRecorder>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&br, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.lock().expect("lock").remove(&key(&br));
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

async fn reconcile_inner(br: &BulkRecorder, ctx: &Context) -> Result<Action, Error> {
    let ns = br.namespace().ok_or(Error::NoNamespace)?;
    let client = &ctx.client;
    let mut observed = Observed {
        problems: br.spec.problems(),
        missing_secrets: missing_secrets(&Api::<Secret>::namespaced(client.clone(), &ns), br)
            .await?,
        desired_replicas: br.spec.replicas,
        ..Default::default()
    };

    let mut applied = Vec::new();
    let mut deployment = None;
    if observed.problems.is_empty() {
        let (_, sa) = apply(
            &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
            &desired::service_account(br),
        )
        .await?;
        let (_, role) = apply(
            &Api::<Role>::namespaced(client.clone(), &ns),
            &desired::role(br),
        )
        .await?;
        let (_, binding) = apply(
            &Api::<RoleBinding>::namespaced(client.clone(), &ns),
            &desired::role_binding(br),
        )
        .await?;
        let (_, service) = apply(
            &Api::<Service>::namespaced(client.clone(), &ns),
            &desired::service(br),
        )
        .await?;
        let (current, deploy) = apply(
            &Api::<Deployment>::namespaced(client.clone(), &ns),
            &desired::deployment(br, &ctx.recorder_image),
        )
        .await?;
        for (changed, what) in [
            (sa, "ServiceAccount"),
            (role, "Role"),
            (binding, "RoleBinding"),
            (service, "Service"),
            (deploy, "Deployment"),
        ] {
            if changed {
                applied.push(what);
            }
        }
        deployment = Some(current);
    }
    observed = observed.with_deployment(deployment.as_ref());

    let status = br.status.clone().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list_metadata(&ListParams::default().labels(&desired::selector_string(br)))
        .await?;
    let live: BTreeSet<String> = pods
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let folding = fold(&status, &live, chrono::Utc::now());
    let status_api = Api::<BulkRecorder>::namespaced(client.clone(), &ns);
    if !folding.remove.is_empty() {
        // Remove the retired entries and add their counts to `folded` in one atomic patch;
        // the `test` operations make it fail (and retry later) if the list moved meanwhile.
        let mut ops = Vec::new();
        for &index in &folding.remove {
            let entry = &status.recorders[index];
            ops.push(json!({"op": "test", "path": format!("/status/recorders/{index}/pod"), "value": entry.pod}));
            ops.push(json!({"op": "test", "path": format!("/status/recorders/{index}/startId"), "value": entry.start_id}));
            ops.push(json!({"op": "remove", "path": format!("/status/recorders/{index}")}));
        }
        ops.push(json!({"op": "add", "path": "/status/folded", "value": folding.folded}));
        let patch: json_patch::Patch =
            serde_json::from_value(json!(ops)).map_err(kube::Error::SerdeError)?;
        status_api
            .patch_status(
                &br.name_any(),
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await?;
        tracing::info!(
            resource = key(br),
            folded = folding.remove.len(),
            "folded the counts of recorders that are gone"
        );
    }

    let conditions = conditions::compute(&observed, br.metadata.generation, &status.conditions);
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
        conditions,
        counts: Some(folding.counts),
        ..Default::default()
    };
    let unchanged = status.observed_generation == next.observed_generation
        && status.effective_size == next.effective_size
        && status.replicas == next.replicas
        && status.ready_replicas == next.ready_replicas
        && status.counts == next.counts
        && conditions::same(&status.conditions, &next.conditions);
    if !unchanged {
        let patch = json!({"status": {
            "observedGeneration": next.observed_generation,
            "effectiveSize": next.effective_size,
            "replicas": next.replicas,
            "readyReplicas": next.ready_replicas,
            "conditions": next.conditions,
            "counts": next.counts,
        }});
        status_api
            .patch_status(
                &br.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }

    publish_events(br, ctx, &applied, &status, &next).await;
    Ok(Action::requeue(REFRESH))
}

/// Secrets (and keys) the spec names that do not exist.
async fn missing_secrets(secrets: &Api<Secret>, br: &BulkRecorder) -> Result<Vec<String>, Error> {
    let refs: [&SecretKeyRef; 2] = [
        &br.spec.rabbitmq.url_secret_ref,
        &br.spec.postgres.url_secret_ref,
    ];
    let mut missing = Vec::new();
    let mut checked: Vec<(String, Option<Secret>)> = Vec::new();
    for r in refs {
        let secret = match checked.iter().find(|(name, _)| name == &r.name) {
            Some((_, s)) => s.clone(),
            None => {
                let s = secrets.get_opt(&r.name).await?;
                checked.push((r.name.clone(), s.clone()));
                s
            }
        };
        let has_key = secret.as_ref().is_some_and(|s| {
            s.data.as_ref().is_some_and(|d| d.contains_key(&r.key))
                || s.string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&r.key))
        });
        if secret.is_none() {
            missing.push(format!("secret {} (key {})", r.name, r.key));
        } else if !has_key {
            missing.push(format!("key {} in secret {}", r.key, r.name));
        }
    }
    Ok(missing)
}

/// Events for what changed: objects applied, and the Degraded condition turning on.
async fn publish_events(
    br: &BulkRecorder,
    ctx: &Context,
    applied: &[&str],
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
