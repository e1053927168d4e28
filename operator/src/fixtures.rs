//! The world a reconciler test starts from: a fake API server (`crate::fake_api`) holding a
//! BulkRecorder and its Secrets, and a context whose client acts as the operator's
//! ServiceAccount (so every request is checked against `rbac::OPERATOR_CALLS`).

use std::sync::Arc;

use bulk_recorder_crds::{
    BulkRecorder, BulkRecorderSpec, PostgresSpec, RabbitMqSpec, SecretKeyRef,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret};
use kube::{ResourceExt, runtime::controller::Action};
use serde_json::{Value, json};

use crate::{
    context::Context,
    fake_api::{Caller, FakeApiServer, Logged, ObjectKey},
    reconcile::{Error, reconcile},
};

/// A BulkRecorder as the API server would return it (defaults applied, uid and generation set).
pub fn bulk_recorder(name: &str, namespace: &str) -> BulkRecorder {
    let mut br = BulkRecorder::new(
        name,
        BulkRecorderSpec {
            image: None,
            replicas: 1,
            workers: 5,
            prefetch: 10,
            size: None,
            flush_timeout_ms: 100,
            max_rows_per_insert: 1000,
            fallback_enabled: true,
            bulk_enabled: true,
            bulks_in_flight: 2,
            statement_timeout_ms: 10_000,
            lock_timeout_ms: None,
            missing_parent_wait_ms: 30_000,
            shutdown_timeout_seconds: 25,
            message_format: Default::default(),
            rabbitmq: RabbitMqSpec {
                url_secret_ref: SecretKeyRef {
                    name: "rabbitmq".into(),
                    key: "url".into(),
                },
                queue: "transaction_balance_operation".into(),
                dead_letter: None,
            },
            postgres: PostgresSpec {
                url_secret_ref: SecretKeyRef {
                    name: "postgres".into(),
                    key: "url".into(),
                },
                migrate: true,
            },
            resources: None,
            image_pull_secrets: Vec::new(),
            pod_annotations: Default::default(),
            pod_labels: Default::default(),
            node_selector: Default::default(),
            tolerations: Vec::new(),
            affinity: None,
            topology_spread_constraints: Vec::new(),
            priority_class_name: None,
            volumes: Vec::new(),
            pod_disruption_budget: true,
            monitoring: Default::default(),
            redis: None,
            mongodb: None,
            events: None,
            tracing: None,
        },
    );
    br.metadata.namespace = Some(namespace.into());
    br.metadata.uid = Some("3f1c3f6e-0000-4000-8000-000000000001".into());
    br.metadata.generation = Some(1);
    br
}

pub fn secret(name: &str, namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace}, "data": {"url": "dXJs"}})
}

/// A recorder pod of `instance`, as its Deployment would create it (metadata is all that
/// matters here).
pub fn recorder_pod(name: &str, namespace: &str, instance: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
        "labels": {"app.kubernetes.io/name": "bulk-recorder", "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/component": "recorder",
            "app.kubernetes.io/managed-by": "bulk-recorder-operator"}}})
}

/// A test's cluster: the fake API server and the operator's context on it.
pub struct World {
    pub fake: FakeApiServer,
    pub ctx: Arc<Context>,
}

impl World {
    /// `br` and its two Secrets (`rabbitmq`, `postgres`) stored in the fake.
    pub fn new(br: &BulkRecorder) -> Self {
        let fake = FakeApiServer::new();
        fake.create(br);
        let ns = br.namespace().unwrap();
        fake.create(&secret("rabbitmq", &ns));
        fake.create(&secret("postgres", &ns));
        let ctx = Self::context(&fake);
        Self { fake, ctx }
    }

    /// A fresh operator context (an operator restart: nothing remembered).
    pub fn context(fake: &FakeApiServer) -> Arc<Context> {
        Arc::new(Context::new(
            fake.client(Caller::Operator),
            "bulk-recorder:test".into(),
            "test".into(),
        ))
    }

    pub fn br(&self, namespace: &str, name: &str) -> BulkRecorder {
        self.fake
            .get(namespace, name)
            .expect("the BulkRecorder exists")
    }

    /// Reconciles the BulkRecorder as stored now.
    pub async fn reconcile(&self, namespace: &str, name: &str) -> Result<Action, Error> {
        reconcile(Arc::new(self.br(namespace, name)), self.ctx.clone()).await
    }

    /// The requests the operator made since the last call (and forgets them).
    pub fn operator_requests(&self) -> Vec<Logged> {
        let requests = self.fake.requests();
        self.fake.clear_requests();
        requests
            .into_iter()
            .filter(|r| r.caller == Caller::Operator)
            .collect()
    }

    /// The Deployment controller's part: the rollout of `name` is complete and ready.
    pub fn roll_out(&self, namespace: &str, name: &str) {
        self.fake.edit(
            &ObjectKey::of::<Deployment>(namespace, name),
            "kube-controller-manager",
            "status",
            |d| {
                let replicas = d["spec"]["replicas"].clone();
                d["status"] = json!({"observedGeneration": d["metadata"]["generation"],
                    "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas});
            },
        );
    }

    pub fn edit_secret(&self, namespace: &str, name: &str, value: &str) {
        self.fake.edit(
            &ObjectKey::of::<Secret>(namespace, name),
            "kubectl-edit",
            "",
            |s| s["data"]["url"] = json!(value),
        );
    }
}

/// Events the operator created, as (type, reason, note).
pub fn events(requests: &[Logged]) -> Vec<(String, String, String)> {
    requests
        .iter()
        .filter(|r| r.resource == "events" && r.verb == "create")
        .map(|r| {
            (
                r.body["type"].as_str().unwrap_or_default().to_string(),
                r.body["reason"].as_str().unwrap_or_default().to_string(),
                r.body["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The condition of `type_` in a BulkRecorder's status.
pub fn condition(br: &BulkRecorder, type_: &str) -> (String, String, String) {
    let c = br
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned())
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status, c.reason, c.message)
}
