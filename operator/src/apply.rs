//! Server-side apply of the objects a BulkRecorder owns.
//!
//! The operator never compares its desired objects with the live ones (a comparison misses a
//! field the operator stopped setting, and sees a difference in every quantity the server
//! canonicalises): it applies, and the API server merges, removes what the operator no longer
//! sets and persists nothing when nothing changed. To stay quiet at scale it skips an apply only
//! when it would certainly be a no-op: the same desired object was applied before and the live
//! object still has the resourceVersion that apply returned (the reflector stores see every
//! change, hand edits included); and it applies anyway every [`RESYNC`].
//!
//! An object of the same name that this BulkRecorder does not control (no controller owner
//! reference with its uid) is never taken over: it is reported as a name conflict. Objects the
//! resource no longer wants (a PodDisruptionBudget once replicas drop to 1) are deleted, but only
//! when this resource controls them.

use std::{
    collections::HashMap,
    fmt::Debug,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
    time::Duration,
};

use kube::{
    Api, Resource,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, Preconditions},
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::time::Instant;

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "bulk-recorder-operator";

/// The longest an unchanged object goes without being applied again (a missed watch event is
/// repaired within this time).
pub const RESYNC: Duration = Duration::from_secs(600);

/// What happened to one owned object.
#[derive(Debug)]
pub enum Outcome<K> {
    /// Applied; `changed` when the server persisted a change (its resourceVersion moved).
    Applied { object: K, changed: bool },
    /// Skipped: the last apply of the same object is still what the cluster holds.
    Current,
    /// Not ours: an object of this name exists without this resource as its controller.
    Conflict(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Record {
    fingerprint: u64,
    resource_version: Option<String>,
    at: Instant,
}

/// What the operator last applied, per object (kind/namespace/name).
#[derive(Default)]
pub struct Applied(Mutex<HashMap<String, Record>>);

/// The record of one object: kind/namespace/name.
fn key<K: Resource<DynamicType = ()>>(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default()
    )
}

fn fingerprint(value: &serde_json::Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Why `meta` is not controlled by the owner with `uid`, if it is not.
pub fn foreign_controller(meta: &ObjectMeta, uid: &str) -> Option<String> {
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(o) if o.uid == uid => None,
        Some(o) => Some(format!("controlled by {} {}", o.kind, o.name)),
        None => Some("not created by this operator".into()),
    }
}

impl Applied {
    /// Applies `desired` (owned by the resource with `owner_uid`) unless it is certainly
    /// current. `live` is the object's metadata from the reflector store; `None` when the store
    /// does not hold it (not created yet, not cached yet, or not labelled as ours), in which case
    /// it is read from the API before anything is written.
    pub async fn apply<K>(
        &self,
        api: &Api<K>,
        desired: &K,
        live: Option<ObjectMeta>,
        owner_uid: &str,
    ) -> Result<Outcome<K>, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
    {
        let name = desired.meta().name.clone().unwrap_or_default();
        let key = key::<K>(desired.meta());
        let wanted = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
        let print = fingerprint(&wanted);
        let last = self.0.lock().expect("lock").get(&key).cloned();
        let live = match live {
            Some(meta) => Some(meta),
            // Not in the store and never applied by this process: it may still exist.
            None if last.is_none() => api.get_metadata_opt(&name).await?.map(|m| m.metadata),
            None => None,
        };
        if let Some(meta) = &live
            && let Some(why) = foreign_controller(meta, owner_uid)
        {
            return Ok(Outcome::Conflict(format!(
                "{} {name} exists, {why}",
                K::kind(&())
            )));
        }
        let live_version = live.as_ref().and_then(|m| m.resource_version.clone());
        if let Some(last) = &last
            && last.fingerprint == print
            && live_version.is_some()
            && last.resource_version == live_version
            && last.at.elapsed() < RESYNC
        {
            return Ok(Outcome::Current);
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let object = api.patch(&name, &params, &Patch::Apply(desired)).await?;
        let applied_version = object.meta().resource_version.clone();
        // Compared with what the store shows, or (while it lags) with what this process applied.
        let before = live_version.or_else(|| last.and_then(|l| l.resource_version));
        let changed = before.is_none() || before != applied_version;
        self.0.lock().expect("lock").insert(
            key,
            Record {
                fingerprint: print,
                resource_version: applied_version,
                at: Instant::now(),
            },
        );
        Ok(Outcome::Applied { object, changed })
    }

    /// Deletes `name` when it exists and the resource with `owner_uid` controls it; true when it
    /// was deleted. `known` is what a complete store knows of it (`Some(None)`: absent); `None`:
    /// unknown, read from the API. The delete is conditional on the uid that was checked, so an
    /// object somebody else created meanwhile under that name survives.
    pub async fn retire<K>(
        &self,
        api: &Api<K>,
        namespace: &str,
        name: &str,
        known: Option<Option<ObjectMeta>>,
        owner_uid: &str,
    ) -> Result<bool, kube::Error>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        let meta = match known {
            Some(meta) => meta,
            None => api.get_metadata_opt(name).await?.map(|m| m.metadata),
        };
        let Some(meta) = meta.filter(|m| foreign_controller(m, owner_uid).is_none()) else {
            return Ok(false);
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let deleted = match api.delete(name, &params).await {
            Ok(_) => true,
            // Gone already, or replaced by an object that is not ours.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => false,
            Err(e) => return Err(e),
        };
        let record = ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        };
        self.0.lock().expect("lock").remove(&key::<K>(&record));
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned_by(uid: &str, controller: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "bulkrecorder.io/v1alpha1".into(),
                kind: "BulkRecorder".into(),
                name: "orders".into(),
                uid: uid.into(),
                controller: Some(controller),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn only_objects_this_resource_controls_are_ours() {
        assert_eq!(foreign_controller(&owned_by("u1", true), "u1"), None);
        assert!(
            foreign_controller(&owned_by("u2", true), "u1")
                .unwrap()
                .contains("controlled by BulkRecorder orders")
        );
        assert!(foreign_controller(&owned_by("u1", false), "u1").is_some());
        assert!(foreign_controller(&ObjectMeta::default(), "u1").is_some());
    }
}
