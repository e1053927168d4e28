//! The kube-runtime controller: what is watched, what triggers a reconcile, and how many run at
//! once.
//!
//! The BulkRecorder watch passes spec changes (generation) and changes of the recorders' entries
//! in `status.recorders` (so that counts reach `status.counts` within seconds of a report), not
//! the operator's own status writes; a recorder reports only when its counts moved, at most once
//! in 5 s, so an idle resource triggers nothing. Owned objects are watched (into stores the
//! reconciler reads instead of the API) and trigger a reconcile when they change (readiness,
//! hand edits); recorder pods are watched as metadata only, so that a deleted pod's counts are
//! folded at once. PodMonitors are watched once the Prometheus Operator's CRD is served. Every
//! watch retries a failure (a refused permission, a missing CRD) within [`WATCH_RETRY_MAX`].

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use bulk_recorder_crds::BulkRecorder;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Config as ControllerConfig},
        reflector,
        reflector::{ObjectRef, Store},
        utils::Backoff,
        watcher::{self, Config, Event},
    },
};
use serde::de::DeserializeOwned;

use crate::{
    context::Context,
    desired::PodMonitor,
    reconcile::{error_policy, reconcile},
    stores::{OWNED_SELECTOR, RECORDER_PODS_SELECTOR, Stores},
};

/// Reconciles running at once: bounds the operator's burst of requests after a restart.
pub const CONCURRENCY: u16 = 8;

/// No debounce: kube's scheduler pushes a debounced reconcile back on every new trigger, so a
/// resource whose hundred recorders report every 5 s would never be reconciled. Triggers that
/// arrive while a reconcile runs are merged into one, and the status writes are paced instead
/// (`status::decide`).
pub const DEBOUNCE: Duration = Duration::ZERO;

/// The longest pause between two tries of a failing watch: a permission granted, or a CRD
/// installed, is picked up within seconds (kube's default waits up to 30 s).
pub const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);

/// Doubles from half a second up to [`WATCH_RETRY_MAX`]; starts over once a watch succeeds.
#[derive(Debug, Clone)]
pub struct WatchBackoff(Duration);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self(Duration::from_millis(500))
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.0;
        self.0 = (self.0 * 2).min(WATCH_RETRY_MAX);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// What makes a BulkRecorder worth a reconcile: its generation and its recorders' entries.
pub fn spec_or_reports(br: &BulkRecorder) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    br.metadata.generation.hash(&mut hasher);
    if let Some(status) = &br.status {
        serde_json::to_string(&status.recorders)
            .unwrap_or_default()
            .hash(&mut hasher);
    }
    Some(hasher.finish())
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A metadata-only watch of `K` objects labelled as the operator's, into a store.
fn owned_metadata<K>(
    client: &Client,
    namespace: &Option<String>,
) -> (
    Store<PartialObjectMeta<K>>,
    impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(
        api::<PartialObjectMeta<K>>(client, namespace),
        Config::default().labels(OWNED_SELECTOR).any_semantic(),
    )
    .backoff(WatchBackoff::default())
    .reflect(writer)
    .touched_objects();
    (reader, stream)
}

/// The BulkRecorders, passing on changes of the spec and of the recorders' reports.
fn bulk_recorders(
    client: &Client,
    namespace: &Option<String>,
) -> (
    Store<BulkRecorder>,
    impl futures::Stream<Item = Result<BulkRecorder, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(
        api::<BulkRecorder>(client, namespace),
        Config::default().any_semantic(),
    )
    .backoff(WatchBackoff::default())
    .reflect(writer)
    .applied_objects()
    .predicate_filter(spec_or_reports, Default::default());
    (reader, stream)
}

/// The operator's Deployments, whole: their status says how many recorders are ready.
fn deployments(
    client: &Client,
    namespace: &Option<String>,
) -> (
    Store<Deployment>,
    impl futures::Stream<Item = Result<Deployment, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(
        api::<Deployment>(client, namespace),
        Config::default().labels(OWNED_SELECTOR).any_semantic(),
    )
    .backoff(WatchBackoff::default())
    .reflect(writer)
    .touched_objects();
    (reader, stream)
}

/// The operator's PodMonitors, watched from the moment the Prometheus Operator's CRD is served
/// (a watch of a kind the API server does not serve only fails, again and again).
fn pod_monitors(
    client: &Client,
    namespace: &Option<String>,
    ctx: Arc<Context>,
) -> (
    Store<PartialObjectMeta<PodMonitor>>,
    impl futures::Stream<Item = Result<PartialObjectMeta<PodMonitor>, watcher::Error>> + Send + 'static,
) {
    let (reader, watch) = owned_metadata::<PodMonitor>(client, namespace);
    let discovery_client = client.clone();
    let served = futures::stream::once(async move {
        ctx.pod_monitor_crd
            .wait_until_served(&discovery_client)
            .await
    })
    .filter_map(|()| futures::future::ready(None));
    (reader, served.chain(watch))
}

/// Recorder pods (metadata only), noting deletions so that their counts are folded at once.
fn recorder_pods(
    client: &Client,
    namespace: &Option<String>,
    ctx: Arc<Context>,
) -> (
    Store<PartialObjectMeta<Pod>>,
    impl futures::Stream<Item = Result<PartialObjectMeta<Pod>, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(
        api::<PartialObjectMeta<Pod>>(client, namespace),
        Config::default()
            .labels(RECORDER_PODS_SELECTOR)
            .any_semantic(),
    )
    .backoff(WatchBackoff::default())
    .reflect(writer)
    .inspect_ok(move |event| {
        if let Event::Delete(pod) = event {
            ctx.deleted_pods.record(
                &pod.namespace().unwrap_or_default(),
                &pod.name_any(),
                chrono::Utc::now(),
            );
        }
    })
    .touched_objects();
    (reader, stream)
}

/// A pod belongs to the BulkRecorder named by its instance label (pods are owned by
/// ReplicaSets, not by the BulkRecorder).
fn pod_owner(pod: PartialObjectMeta<Pod>) -> Option<ObjectRef<BulkRecorder>> {
    let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
    Some(ObjectRef::<BulkRecorder>::new(&instance).within(&pod.namespace()?))
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = &namespace;
    let (reader, spec_changes) = bulk_recorders(&client, ns);
    let (deployments, deployment_changes) = deployments(&client, ns);
    let (services, service_changes) = owned_metadata::<Service>(&client, ns);
    let (service_accounts, service_account_changes) = owned_metadata::<ServiceAccount>(&client, ns);
    let (roles, role_changes) = owned_metadata::<Role>(&client, ns);
    let (role_bindings, role_binding_changes) = owned_metadata::<RoleBinding>(&client, ns);
    let (disruption_budgets, disruption_budget_changes) =
        owned_metadata::<PodDisruptionBudget>(&client, ns);
    let (pod_monitors, pod_monitor_changes) = pod_monitors(&client, ns, ctx.clone());
    let (pods, pod_changes) = recorder_pods(&client, ns, ctx.clone());
    let _ = ctx.stores.set(Stores {
        deployments,
        services,
        service_accounts,
        roles,
        role_bindings,
        disruption_budgets,
        pod_monitors,
        pods,
    });
    Controller::for_stream(spec_changes, reader)
        .with_config(
            ControllerConfig::default()
                .concurrency(CONCURRENCY)
                .debounce(DEBOUNCE),
        )
        .owns_stream(deployment_changes)
        .owns_stream(service_changes)
        .owns_stream(service_account_changes)
        .owns_stream(role_changes)
        .owns_stream(role_binding_changes)
        .owns_stream(disruption_budget_changes)
        .owns_stream(pod_monitor_changes)
        .watches_stream(pod_changes, pod_owner)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move { log_result(result) })
        .await;
}

type Outcome = Result<
    (ObjectRef<BulkRecorder>, controller::Action),
    controller::Error<crate::error::Error, watcher::Error>,
>;

fn log_result(result: Outcome) {
    match result {
        Ok(_) => {}
        // Already logged (with the resource) by error_policy.
        Err(controller::Error::ReconcilerFailed(..)) => {}
        // The resource was deleted before its reconcile ran.
        Err(controller::Error::ObjectNotFound(object)) => {
            tracing::debug!(%object, "deleted before its reconcile");
        }
        // A watch failed: a missing CRD, a refused permission, an object that does not decode.
        // Nothing is reconciled until it recovers, so say so.
        Err(error) => {
            tracing::warn!(%error, "watching the cluster failed; retrying with backoff")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_watch_is_retried_within_five_seconds() {
        let delays: Vec<Duration> = WatchBackoff::default().take(8).collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert!(delays.iter().all(|d| *d <= WATCH_RETRY_MAX), "{delays:?}");
        assert_eq!(delays[7], WATCH_RETRY_MAX);
    }

    #[test]
    fn recorder_reports_trigger_a_reconcile_and_the_operators_own_writes_do_not() {
        let mut br = crate::fixtures::bulk_recorder("orders", "ledger");
        br.status = Some(Default::default());
        let before = spec_or_reports(&br);
        br.status.as_mut().unwrap().counts = Some(Default::default());
        br.status.as_mut().unwrap().last_reconcile_time = Some("2026-12-07T12:00:00Z".into());
        assert_eq!(spec_or_reports(&br), before, "the operator's own fields");
        br.status
            .as_mut()
            .unwrap()
            .recorders
            .push(Default::default());
        assert_ne!(spec_or_reports(&br), before, "a recorder's report");
        let reported = spec_or_reports(&br);
        br.metadata.generation = Some(2);
        assert_ne!(spec_or_reports(&br), reported, "a spec change");
    }
}
