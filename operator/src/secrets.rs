//! The Secrets a BulkRecorder names: whether they (and their keys) exist, and their versions,
//! which the recorders' pod template carries so that a rotated Secret rolls the recorders.
//!
//! The operator may only `get` Secrets (no list or watch: it never holds every Secret of the
//! cluster). Each Secret is read at most once per [`TTL`], however many resources name it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use bulk_recorder_crds::{BulkRecorder, SecretKeyRef};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::time::Instant;

/// How long a Secret read is reused (a little less than the reconcile interval, so that each
/// periodic reconcile reads it afresh).
pub const TTL: Duration = Duration::from_secs(50);

/// What the reconciler needs to know about one Secret.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    resource_version: String,
    keys: Vec<String>,
}

/// A read: when, and the Secret if it existed.
type Read = (Instant, Option<Seen>);

/// Secret reads, per namespace and name.
#[derive(Default)]
pub struct SecretCache(Mutex<HashMap<(String, String), Read>>);

/// The Secrets of one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretFacts {
    /// "secret X (key K)" or "key K in secret X", for each one missing.
    pub missing: Vec<String>,
    /// `name=resourceVersion,...` of the Secrets that exist, by name.
    pub versions: String,
}

impl SecretCache {
    async fn seen(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Seen>, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        if let Some((at, seen)) = self.0.lock().expect("lock").get(&key)
            && at.elapsed() < TTL
        {
            return Ok(seen.clone());
        }
        let seen = api.get_opt(name).await?.map(|s| Seen {
            resource_version: s.metadata.resource_version.unwrap_or_default(),
            keys: s
                .data
                .unwrap_or_default()
                .into_keys()
                .chain(s.string_data.unwrap_or_default().into_keys())
                .collect(),
        });
        self.0
            .lock()
            .expect("lock")
            .insert(key, (Instant::now(), seen.clone()));
        Ok(seen)
    }

    /// Reads (or recalls) the Secrets `br` names (RabbitMQ's, PostgreSQL's and, when set,
    /// Redis's).
    pub async fn inspect(
        &self,
        api: &Api<Secret>,
        namespace: &str,
        br: &BulkRecorder,
    ) -> Result<SecretFacts, kube::Error> {
        let mut refs: Vec<&SecretKeyRef> = vec![
            &br.spec.rabbitmq.url_secret_ref,
            &br.spec.postgres.url_secret_ref,
        ];
        refs.extend(br.spec.redis.as_ref().map(|r| &r.url_secret_ref));
        refs.extend(br.spec.mongodb.as_ref().map(|m| &m.url_secret_ref));
        let mut facts = SecretFacts::default();
        let mut versions = BTreeMap::new();
        for r in refs {
            match self.seen(api, namespace, &r.name).await? {
                None => facts
                    .missing
                    .push(format!("secret {} (key {})", r.name, r.key)),
                Some(seen) => {
                    if !seen.keys.contains(&r.key) {
                        facts
                            .missing
                            .push(format!("key {} in secret {}", r.key, r.name));
                    }
                    versions.insert(r.name.clone(), seen.resource_version);
                }
            }
        }
        facts.versions = versions
            .iter()
            .map(|(name, version)| format!("{name}={version}"))
            .collect::<Vec<_>>()
            .join(",");
        Ok(facts)
    }
}
