//! What the controller's watches keep in memory, so that a reconcile reads the objects a
//! resource owns and its recorder pods without asking the API server.
//!
//! The stores exist only while the controller runs; a reconcile called on its own (tests, or the
//! first moments after start-up) falls back to reading from the API.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Resource,
    api::{ObjectMeta, PartialObjectMeta},
    runtime::reflector::{ObjectRef, Store},
};

use crate::desired::PodMonitor;

/// Label selecting the objects the operator owns (on every owned object and recorder pod).
pub const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=bulk-recorder-operator";

/// Label selecting recorder pods (their pod template's labels).
pub const RECORDER_PODS_SELECTOR: &str =
    "app.kubernetes.io/name=bulk-recorder,app.kubernetes.io/managed-by=bulk-recorder-operator";

/// Reflector stores of the owned objects (metadata only where that is all a reconcile needs) and
/// of the recorder pods.
#[derive(Clone)]
pub struct Stores {
    pub deployments: Store<Deployment>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    pub roles: Store<PartialObjectMeta<Role>>,
    pub role_bindings: Store<PartialObjectMeta<RoleBinding>>,
    pub disruption_budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
    /// Filled only once the PodMonitor CRD is served (its watch starts then).
    pub pod_monitors: Store<PartialObjectMeta<PodMonitor>>,
    pub pods: Store<PartialObjectMeta<Pod>>,
}

/// The metadata of `name` in `namespace` from a store.
pub fn cached_meta<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .map(|o| o.meta().clone())
}

/// What a complete store knows of `name` in `namespace`: `Some(None)` when it is absent, `None`
/// while the store is still filling (the caller then asks the API).
pub fn known_meta<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Option<ObjectMeta>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    use futures::FutureExt;
    let ready = store.wait_until_ready().now_or_never();
    matches!(ready, Some(Ok(()))).then(|| cached_meta(store, namespace, name))
}

impl Stores {
    /// Names of the recorder pods of `instance` in `namespace`, once the pod store is complete.
    pub fn recorder_pods(&self, namespace: &str, instance: &str) -> Option<BTreeSet<String>> {
        use futures::FutureExt;
        let ready = self.pods.wait_until_ready().now_or_never();
        if !matches!(ready, Some(Ok(()))) {
            return None;
        }
        Some(
            self.pods
                .state()
                .iter()
                .filter(|p| {
                    p.metadata.namespace.as_deref() == Some(namespace)
                        && p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("app.kubernetes.io/instance"))
                            .map(String::as_str)
                            == Some(instance)
                })
                .filter_map(|p| p.metadata.name.clone())
                .collect(),
        )
    }
}

/// Recorder pods the pod watch saw deleted, and when: a pod is deleted from the API only once
/// its containers stopped, so an entry whose last report precedes the deletion is final and can
/// be folded at once. Forgotten after an hour.
#[derive(Default)]
pub struct GonePods(Mutex<BTreeMap<(String, String), DateTime<Utc>>>);

impl GonePods {
    pub fn record(&self, namespace: &str, pod: &str, at: DateTime<Utc>) {
        let mut gone = self.0.lock().expect("lock");
        gone.retain(|_, seen| at - *seen < Duration::hours(1));
        gone.insert((namespace.into(), pod.into()), at);
    }

    /// The pods of `namespace` seen deleted, with the time.
    pub fn in_namespace(&self, namespace: &str) -> BTreeMap<String, DateTime<Utc>> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, pod), at)| (pod.clone(), *at))
            .collect()
    }
}
