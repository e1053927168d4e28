//! The kube-runtime controller: which changes trigger a reconcile.
//!
//! Recorder pods write their counts into the status every few seconds; those writes must not
//! each cause a reconcile, so the BulkRecorder watch passes only spec changes (generation).
//! Counts are aggregated on the periodic requeue instead. Owned Deployments and Services
//! trigger a reconcile when they change (readiness, hand edits).

use std::sync::Arc;

use bulk_recorder_crds::BulkRecorder;
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{
    Api, Client,
    runtime::{
        Controller, WatchStreamExt, predicates, reflector,
        watcher::{self, Config},
    },
};

use crate::{
    context::Context,
    reconcile::{error_policy, reconcile},
};

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (recorders, deployments, services): (Api<BulkRecorder>, Api<Deployment>, Api<Service>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    let (reader, writer) = reflector::store();
    let spec_changes = watcher::watcher(recorders, Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let owned = Config::default().labels("app.kubernetes.io/managed-by=bulk-recorder-operator");
    Controller::for_stream(spec_changes, reader)
        .owns(deployments, owned.clone())
        .owns(services, owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile loop");
            }
        })
        .await;
}
