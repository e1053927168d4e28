//! What every reconcile shares.

use std::{collections::HashMap, sync::Mutex};

use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};

use crate::metrics::Metrics;

pub struct Context {
    pub client: Client,
    /// The recorder image for resources that do not name one (`--recorder-image`).
    pub recorder_image: String,
    pub events: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per resource (namespace/name), for the error backoff.
    pub failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, recorder_image: String, instance: String) -> Self {
        let reporter = Reporter {
            controller: "bulk-recorder-operator".into(),
            instance: Some(instance),
        };
        Self {
            events: Recorder::new(client.clone(), reporter),
            client,
            recorder_image,
            metrics: Metrics::default(),
            failures: Mutex::default(),
        }
    }
}
