//! The kube-runtime controller: what is watched, what triggers a reconcile, and how many run at
//! once.
//!
//! Recorder pods write their counts into the status; those writes must not each cause a
//! reconcile, so the BulkRecorder watch passes only spec changes (generation) and counts are
//! aggregated on the periodic requeue. Owned objects are watched (into stores the reconciler
//! reads instead of the API) and trigger a reconcile when they change (readiness, hand edits);
//! recorder pods are watched as metadata only, so that a deleted pod's counts are folded at once.

use std::{sync::Arc, time::Duration};

use bulk_recorder_crds::BulkRecorder;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Config as ControllerConfig},
        predicates, reflector,
        reflector::{ObjectRef, Store},
        watcher::{self, Config, Event},
    },
};
use serde::de::DeserializeOwned;

use crate::{
    context::Context,
    reconcile::{error_policy, reconcile},
    stores::{OWNED_SELECTOR, RECORDER_PODS_SELECTOR, Stores},
};

/// Reconciles running at once: bounds the operator's burst of requests after a restart.
pub const CONCURRENCY: u16 = 8;

/// Triggers closer together than this are merged into one reconcile.
pub const DEBOUNCE: Duration = Duration::from_secs(1);

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
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    (reader, stream)
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (reader, writer) = reflector::store();
    let spec_changes = watcher::watcher(
        api::<BulkRecorder>(&client, &namespace),
        Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());

    let (deployments, deployment_writer) = reflector::store();
    let deployment_changes = watcher::watcher(
        api::<Deployment>(&client, &namespace),
        Config::default().labels(OWNED_SELECTOR).any_semantic(),
    )
    .default_backoff()
    .reflect(deployment_writer)
    .touched_objects();
    let (services, service_changes) = owned_metadata::<Service>(&client, &namespace);
    let (service_accounts, service_account_changes) =
        owned_metadata::<ServiceAccount>(&client, &namespace);
    let (roles, role_changes) = owned_metadata::<Role>(&client, &namespace);
    let (role_bindings, role_binding_changes) = owned_metadata::<RoleBinding>(&client, &namespace);

    let (pods, pod_writer) = reflector::store();
    let deletions = ctx.clone();
    let pod_changes = watcher::watcher(
        api::<PartialObjectMeta<Pod>>(&client, &namespace),
        Config::default()
            .labels(RECORDER_PODS_SELECTOR)
            .any_semantic(),
    )
    .default_backoff()
    .reflect(pod_writer)
    .inspect_ok(move |event| {
        if let Event::Delete(pod) = event {
            deletions.deleted_pods.record(
                &pod.namespace().unwrap_or_default(),
                &pod.name_any(),
                chrono::Utc::now(),
            );
        }
    })
    .touched_objects();
    // A pod belongs to the BulkRecorder named by its instance label (pods are owned by
    // ReplicaSets, not by the BulkRecorder).
    let pod_owner = |pod: PartialObjectMeta<Pod>| {
        let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
        Some(ObjectRef::<BulkRecorder>::new(&instance).within(&pod.namespace()?))
    };

    let _ = ctx.stores.set(Stores {
        deployments,
        services,
        service_accounts,
        roles,
        role_bindings,
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
        .watches_stream(pod_changes, pod_owner)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Already logged (with the resource) by error_policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                // The resource was deleted before its reconcile ran.
                Err(controller::Error::ObjectNotFound(object)) => {
                    tracing::debug!(%object, "deleted before its reconcile");
                }
                // A watch failed: a missing CRD, a refused permission, an object that does not
                // decode. Nothing is reconciled until it recovers, so say so.
                Err(error) => {
                    tracing::warn!(%error, "watching the cluster failed; retrying with backoff")
                }
            }
        })
        .await;
}
