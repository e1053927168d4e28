//! What every reconcile shares.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use kube::Client;
use tokio::time::Instant;

use crate::{
    apply::Applied,
    discovery::Discovery,
    events::Events,
    metrics::Metrics,
    secrets::SecretCache,
    stores::{GonePods, Stores},
};

pub struct Context {
    pub client: Client,
    /// The recorder image for resources that do not name one (`--recorder-image`).
    pub recorder_image: String,
    pub events: Events,
    pub metrics: Metrics,
    /// Consecutive failures per resource (namespace/name), for the error backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// When this process last wrote each resource's status (namespace/name), to pace counts.
    pub status_writes: Mutex<HashMap<String, Instant>>,
    /// The controller's caches; unset when a reconcile runs without the controller.
    pub stores: OnceLock<Stores>,
    /// What was last applied, to skip applies that would certainly change nothing.
    pub applied: Applied,
    /// Recent reads of the Secrets the resources name.
    pub secrets: SecretCache,
    /// Recorder pods the pod watch saw deleted.
    pub deleted_pods: GonePods,
    /// Whether the Prometheus Operator's PodMonitor CRD is installed.
    pub pod_monitor_crd: Discovery,
}

impl Context {
    pub fn new(client: Client, recorder_image: String, instance: String) -> Self {
        Self {
            events: Events::new(client.clone(), "bulk-recorder-operator", &instance),
            client,
            recorder_image,
            metrics: Metrics::default(),
            failures: Mutex::default(),
            status_writes: Mutex::default(),
            stores: OnceLock::new(),
            applied: Applied::default(),
            secrets: SecretCache::default(),
            deleted_pods: GonePods::default(),
            pod_monitor_crd: Discovery::pod_monitors(),
        }
    }
}
