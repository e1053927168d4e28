//! An in-process Kubernetes API server for the operator's tests and benchmark, strict where a
//! kind fake would hide bugs: server-side apply tracks field managers (an apply that leaves out a
//! list-map entry it applied before removes it), the status subresource writes only `status`,
//! the scale subresource reads and writes `spec.replicas` as a CRD's does, RBAC is the tables of
//! `crate::rbac`, `OwnerReferencesPermissionEnforcement` is on, JSON patch `test`s fail with 422,
//! delete preconditions hold, CRDs can be missing, and watches stream changes. Objects are JSON;
//! kinds are the ones the operator touches.
//!
//! By concern: [`routing`] (requests to answers, RBAC, faults), [`crud`] (objects), [`patch`]
//! (replace and patches), [`writes`] and [`fields`] (server-side apply and field ownership),
//! [`storage`] (what is stored, versions, the change log), [`watch`], [`scale`], [`kinds`]
//! (known kinds and discovery) and [`authz`].
//!
//! Each client acts as one [`Caller`]; every request is logged (see [`FakeApiServer::requests`]).

mod authz;
mod crud;
pub mod fields;
mod kinds;
mod patch;
mod request;
mod routing;
mod scale;
mod storage;
mod watch;
pub mod writes;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

pub use authz::Caller;
use http::{Request, Response};
use kube::{Client, Resource, client::Body};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use storage::{keep_identity, persist, remove, rendered};
use watch::ResponseBody;
use writes::Stored;

/// The Prometheus Operator's API group (PodMonitor).
pub const POD_MONITOR_GROUP: &str = "monitoring.coreos.com";

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub resource: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn of<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Self {
        Self {
            group: K::group(&()).into_owned(),
            resource: K::plural(&()).into_owned(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// One change, as watches deliver it.
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    pub object: Value,
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Logged {
    pub caller: Caller,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// get, list, watch, create, patch, update, delete, discovery.
    pub verb: &'static str,
    pub body: Value,
    pub status: u16,
}

/// An answer to give instead of the normal one, to the next `times` matching requests.
struct Fault {
    method: String,
    path_contains: String,
    status: u16,
    times: usize,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<ObjectKey, Stored>,
    rv: u64,
    uids: u64,
    changes: Vec<Change>,
    log: Vec<Logged>,
    faults: Vec<Fault>,
    /// API groups whose CRDs are not installed (their requests and discovery answer 404).
    unserved: BTreeSet<String>,
    owner_reference_enforcement_off: bool,
    /// Permissions taken from a caller (group, resource, verb), as a missing RBAC rule would.
    revoked: Vec<(Caller, String, String, &'static str)>,
}

impl State {
    /// Whether requests to `group` are served.
    fn serves(&self, group: &str) -> bool {
        !self.unserved.contains(group)
    }

    fn revoked(&self, caller: &Caller, a: &authz::Attributes) -> bool {
        self.revoked
            .iter()
            .any(|(c, g, r, v)| c == caller && *g == a.group && *r == a.resource && *v == a.verb)
    }
}

struct Shared {
    state: Mutex<State>,
    changes: tokio::sync::watch::Sender<u64>,
}

/// The server; clones share it.
#[derive(Clone)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApiServer {
    /// A cluster with the kinds of [`kinds::KINDS`], where the Prometheus Operator's CRDs are not
    /// installed (see [`FakeApiServer::serve_group`]).
    pub fn new() -> Self {
        let state = State {
            unserved: BTreeSet::from([POD_MONITOR_GROUP.to_string()]),
            ..Default::default()
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                changes: tokio::sync::watch::channel(0).0,
            }),
        }
    }

    /// A client acting as `caller`. Needs a Tokio runtime.
    pub fn client(&self, caller: Caller) -> Client {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (shared, caller) = (shared.clone(), caller.clone());
                tokio::spawn(async move {
                    let response = routing::handle_request(shared, caller, request).await;
                    respond.send_response(response);
                });
            }
        });
        Client::new(service, "default")
    }

    /// Stores `object` as an administrator would create it; returns it as stored.
    pub fn create<T: Serialize>(&self, object: &T) -> Value {
        let object = serde_json::to_value(object).expect("serializable");
        let (group, resource) = kinds::resource_of(&object);
        let key = ObjectKey {
            group,
            resource,
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .into(),
            name: object["metadata"]["name"].as_str().expect("a name").into(),
        };
        let mut state = self.shared.state.lock().expect("state");
        let stored = writes::update(None, object, "test-setup", "");
        persist(&mut state, &self.shared, &key, stored, true)
    }

    /// The object at `key`, as a GET would return it.
    pub fn get_value(&self, key: &ObjectKey) -> Option<Value> {
        let state = self.shared.state.lock().expect("state");
        state.objects.get(key).map(rendered)
    }

    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<K> {
        self.get_value(&ObjectKey::of::<K>(namespace, name))
            .map(|v| serde_json::from_value(v).expect("a valid object"))
    }

    /// Changes the object at `key` as manager `manager` would with an update (for instance
    /// `kubectl edit`, or the Deployment controller writing a status with `subresource`
    /// "status").
    pub fn edit(
        &self,
        key: &ObjectKey,
        manager: &str,
        subresource: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let mut state = self.shared.state.lock().expect("state");
        let before = state.objects.get(key).cloned().expect("the object exists");
        let mut candidate = before.object.clone();
        change(&mut candidate);
        let mut next = writes::update(Some(&before), candidate, manager, subresource);
        keep_identity(&before.object, &mut next.object);
        persist(&mut state, &self.shared, key, next, false);
    }

    /// Deletes the object at `key`, as an administrator would.
    pub fn delete(&self, key: &ObjectKey) {
        let mut state = self.shared.state.lock().expect("state");
        remove(&mut state, &self.shared, key);
    }

    /// Names of the field managers of the object at `key`, with their operation and
    /// subresource (`name/operation/subresource`).
    pub fn managers(&self, key: &ObjectKey) -> Vec<String> {
        let state = self.shared.state.lock().expect("state");
        state
            .objects
            .get(key)
            .map(|s| {
                s.managers
                    .keys()
                    .map(|m| format!("{}/{}/{}", m.name, m.operation, m.subresource))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.state.lock().expect("state").log.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.state.lock().expect("state").log.clear();
    }

    /// Answers the next `times` requests whose method is `method` and whose path contains
    /// `path_contains` with `status` (an API error) instead.
    pub fn fail(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        self.shared.state.lock().expect("state").faults.push(Fault {
            method: method.into(),
            path_contains: path_contains.into(),
            status,
            times,
        });
    }

    /// Makes the BulkRecorder resource unknown, as before its CRD is installed.
    pub fn without_crd(&self) {
        self.serve_group("bulkrecorder.io", false);
    }

    /// Installs (`true`) or removes the CRDs of an API group: while a group is not served, its
    /// requests answer 404 and discovery does not list it. The Prometheus Operator's
    /// (`monitoring.coreos.com`) is not served until a test installs it.
    pub fn serve_group(&self, group: &str, served: bool) {
        let mut state = self.shared.state.lock().expect("state");
        if served {
            state.unserved.remove(group);
        } else {
            state.unserved.insert(group.into());
        }
    }

    /// Takes `verb` on `resource` (or `resource/subresource`) of `group` from `caller`, as a
    /// Role without that rule would: its requests answer 403 until [`FakeApiServer::grant`].
    pub fn revoke(&self, caller: Caller, group: &str, resource: &str, verb: &'static str) {
        let mut state = self.shared.state.lock().expect("state");
        state
            .revoked
            .push((caller, group.into(), resource.into(), verb));
    }

    /// Gives back every permission [`FakeApiServer::revoke`] took.
    pub fn grant(&self) {
        self.shared.state.lock().expect("state").revoked.clear();
    }

    /// Turns the `OwnerReferencesPermissionEnforcement` admission plugin off (as on clusters
    /// that do not enable it).
    pub fn without_owner_reference_enforcement(&self) {
        self.shared
            .state
            .lock()
            .expect("state")
            .owner_reference_enforcement_off = true;
    }
}
