//! Events as Kubernetes' own controllers make them (client-go's recorder): an event repeats as a
//! series (`series.count`, `kubectl describe` shows `(x6)`) only when it is the same event, its
//! note included. kube's `Recorder` leaves the note out of that identity, so a series kept its
//! first note forever ("Applied (x6) applied ServiceAccount, Role, RoleBinding, Service,
//! Deployment" after applies that changed only the Deployment): here each distinct note is an
//! event of its own, and a repeat of the same note within [`SERIES_TTL`] counts in its series.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType},
};
use serde_json::json;

/// How long a repeat joins the series of its first occurrence (client-go's and kube's 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(360);

/// What makes two events the same (client-go's key, the note included).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    type_: &'static str,
    reason: String,
    action: String,
    note: Option<String>,
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
}

/// The event last published under a key.
#[derive(Clone, Debug)]
struct Published {
    name: String,
    namespace: String,
    count: i32,
    last: Timestamp,
}

/// Publishes `events.k8s.io/v1` Events for one controller instance.
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<Key, Published>>,
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.into(),
            instance: instance.into(),
            published: Mutex::default(),
        }
    }

    /// Creates the event, or counts a repeat of the same one (same note too) in its series.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = Key {
            type_: type_name(event.type_),
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone(),
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
        };
        let repeat = {
            let mut published = self.published.lock().expect("lock");
            let ttl = k8s_openapi::jiff::SignedDuration::try_from(SERIES_TTL).expect("small");
            published.retain(|_, p| p.last + ttl > now);
            published.get(&key).cloned()
        };
        let published = match repeat {
            Some(first) => self.count_repeat(first, now).await?,
            None => self.create(event, regarding, now).await?,
        };
        self.published.lock().expect("lock").insert(key, published);
        Ok(())
    }

    async fn count_repeat(
        &self,
        mut first: Published,
        now: Timestamp,
    ) -> Result<Published, kube::Error> {
        first.count += 1;
        first.last = now;
        let patch = json!({"series": {"count": first.count, "lastObservedTime": MicroTime(now)}});
        Api::<K8sEvent>::namespaced(self.client.clone(), &first.namespace)
            .patch(&first.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(first)
    }

    async fn create(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Published, kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or("default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let object = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(type_name(event.type_).into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &object)
            .await?;
        Ok(Published {
            name,
            namespace,
            count: 1,
            last: now,
        })
    }
}
