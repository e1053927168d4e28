//! An in-process Kubernetes API server for the operator's tests and benchmark, strict where a
//! kind fake would hide bugs: server-side apply tracks field managers (an apply that leaves out a
//! list-map entry it applied before removes it), the status subresource writes only `status`,
//! RBAC is the tables of `crate::rbac`, `OwnerReferencesPermissionEnforcement` is on, JSON
//! patch `test`s fail with 422, and watches stream changes. Objects are JSON; kinds are the
//! ones the operator touches.
//!
//! Each client acts as one [`Caller`]; every request is logged (see [`FakeApiServer::requests`]).

mod authz;
pub mod fields;
mod watch;
pub mod writes;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use authz::Attributes;
pub use authz::Caller;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use kube::{Client, Resource, client::Body};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use watch::ResponseBody;
use writes::{Managers, Refusal, Stored};

/// Kinds the server knows: (kind, group, version, resource, namespaced).
const KINDS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "BulkRecorder",
        "bulkrecorder.io",
        "v1alpha1",
        "bulkrecorders",
        true,
    ),
    ("Deployment", "apps", "v1", "deployments", true),
    ("Service", "", "v1", "services", true),
    ("ServiceAccount", "", "v1", "serviceaccounts", true),
    ("Secret", "", "v1", "secrets", true),
    ("Pod", "", "v1", "pods", true),
    ("Namespace", "", "v1", "namespaces", false),
    ("Role", "rbac.authorization.k8s.io", "v1", "roles", true),
    (
        "RoleBinding",
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        true,
    ),
    ("Event", "events.k8s.io", "v1", "events", true),
    ("Lease", "coordination.k8s.io", "v1", "leases", true),
];

fn kind_of(group: &str, resource: &str) -> Option<(&'static str, String)> {
    KINDS
        .iter()
        .find(|(_, g, _, r, _)| *g == group && *r == resource)
        .map(|(k, g, v, _, _)| {
            let api_version = if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            };
            (*k, api_version)
        })
}

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
    objects: std::collections::BTreeMap<ObjectKey, Stored>,
    rv: u64,
    uids: u64,
    changes: Vec<Change>,
    log: Vec<Logged>,
    faults: Vec<Fault>,
    crd_missing: bool,
    owner_reference_enforcement_off: bool,
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
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::default(),
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
                    respond.send_response(handle_request(shared, caller, request).await);
                });
            }
        });
        Client::new(service, "default")
    }

    /// Stores `object` as an administrator would create it; returns it as stored.
    pub fn create<T: Serialize>(&self, object: &T) -> Value {
        let object = serde_json::to_value(object).expect("serializable");
        let (group, resource) = resource_of(&object);
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
        self.shared.state.lock().expect("state").crd_missing = true;
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

fn resource_of(object: &Value) -> (String, String) {
    let kind = object["kind"].as_str().expect("a kind");
    let (_, group, _, resource, _) = KINDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .unwrap_or_else(|| panic!("the fake API server does not know kind {kind}"));
    (group.to_string(), resource.to_string())
}

/// The object with its `managedFields` (managers only; the field sets stay internal).
fn rendered(stored: &Stored) -> Value {
    let mut object = stored.object.clone();
    let entries: Vec<Value> = stored
        .managers
        .keys()
        .map(|m| {
            let mut e =
                json!({"manager": m.name, "operation": m.operation, "fieldsType": "FieldsV1"});
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if !entries.is_empty() {
        object["metadata"]["managedFields"] = Value::Array(entries);
    }
    object
}

fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

/// Identity fields only the server sets.
fn keep_identity(before: &Value, after: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
        "name",
        "namespace",
    ] {
        let old = before["metadata"][field].clone();
        if let Some(meta) = after["metadata"].as_object_mut() {
            if old.is_null() {
                meta.remove(field);
            } else {
                meta.insert(field.into(), old);
            }
        }
    }
}

/// Writes a CPU quantity the way the API server stores it for built-in kinds ("0.5" becomes
/// "500m"), so that a client comparing what it sent with what is stored sees a difference.
fn canonical_quantities(object: &mut Value) {
    let Some(containers) = object
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for container in containers {
        for part in ["requests", "limits"] {
            if let Some(cpu) = container.pointer_mut(&format!("/resources/{part}/cpu"))
                && let Some(text) = cpu.as_str()
                && text.contains('.')
                && let Ok(cores) = text.parse::<f64>()
            {
                *cpu = json!(format!("{}m", (cores * 1000.0).round() as i64));
            }
        }
    }
}

/// Stores `next` at `key` unless nothing changed; returns the object as stored.
fn persist(
    state: &mut State,
    shared: &Shared,
    key: &ObjectKey,
    mut next: Stored,
    create: bool,
) -> Value {
    if key.group == "apps" {
        canonical_quantities(&mut next.object);
    }
    let before = state.objects.get(key).cloned();
    if let Some(before) = &before {
        let same_object = before.object == next.object;
        let same_managers: Managers = before.managers.clone();
        if same_object && same_managers == next.managers {
            return rendered(before);
        }
    }
    state.rv += 1;
    let meta = next.object["metadata"]
        .as_object_mut()
        .expect("objects have metadata");
    meta.insert("resourceVersion".into(), json!(state.rv.to_string()));
    if create || before.is_none() {
        state.uids += 1;
        meta.entry("uid")
            .or_insert_with(|| json!(format!("00000000-0000-4000-8000-{:012}", state.uids)));
        meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        meta.insert("generation".into(), json!(1));
        meta.insert("namespace".into(), json!(key.namespace));
        if key.namespace.is_empty() {
            meta.remove("namespace");
        }
    } else if let Some(before) = &before
        && writes::spec_changed(&before.object, &next.object)
    {
        let generation = before.object["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0)
            + 1;
        next.object["metadata"]["generation"] = json!(generation);
    }
    let kind = if before.is_some() {
        "MODIFIED"
    } else {
        "ADDED"
    };
    state.changes.push(Change {
        rv: state.rv,
        group: key.group.clone(),
        resource: key.resource.clone(),
        namespace: key.namespace.clone(),
        kind,
        object: next.object.clone(),
    });
    let out = rendered(&next);
    state.objects.insert(key.clone(), next);
    shared.changes.send_replace(state.rv);
    out
}

fn remove(state: &mut State, shared: &Shared, key: &ObjectKey) -> Option<Value> {
    let stored = state.objects.remove(key)?;
    state.rv += 1;
    state.changes.push(Change {
        rv: state.rv,
        group: key.group.clone(),
        resource: key.resource.clone(),
        namespace: key.namespace.clone(),
        kind: "DELETED",
        object: stored.object.clone(),
    });
    shared.changes.send_replace(state.rv);
    Some(stored.object)
}

/// The query parameters the server honours.
#[derive(Clone, Debug, Default)]
struct Query {
    watch: bool,
    resource_version: Option<u64>,
    timeout_seconds: Option<u64>,
    label_selector: Vec<(String, Option<String>, bool)>,
    field_manager: Option<String>,
    force: bool,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut q = Self::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "watch" => q.watch = v == "true" || v == "1",
                "resourceVersion" => q.resource_version = v.parse().ok(),
                "timeoutSeconds" => q.timeout_seconds = v.parse().ok(),
                "fieldManager" => q.field_manager = Some(v.into_owned()),
                "force" => q.force = v == "true",
                "labelSelector" => {
                    for term in v.split(',').filter(|t| !t.is_empty()) {
                        q.label_selector
                            .push(if let Some((k, v)) = term.split_once("!=") {
                                (k.into(), Some(v.into()), false)
                            } else if let Some((k, v)) = term.split_once('=') {
                                (k.into(), Some(v.trim_start_matches('=').into()), true)
                            } else if let Some(k) = term.strip_prefix('!') {
                                (k.into(), None, false)
                            } else {
                                (term.into(), None, true)
                            });
                    }
                }
                _ => {}
            }
        }
        q
    }

    fn selects(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.label_selector.iter().all(|(k, v, positive)| {
            let have = labels[k].as_str();
            let hit = match v {
                Some(v) => have == Some(v.as_str()),
                None => have.is_some(),
            };
            hit == *positive
        })
    }
}

/// A request's target, from its path.
struct Target {
    group: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: String,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [r] => (*r, None, ""),
        [r, n] => (*r, Some(n.to_string()), ""),
        [r, n, s] => (*r, Some(n.to_string()), *s),
        _ => return None,
    };
    let _ = version;
    Some(Target {
        group: group.into(),
        namespace,
        resource: resource.into(),
        name,
        subresource: subresource.into(),
    })
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": reason, "message": message, "code": code}),
    )
}

fn full(code: u16, body: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never: Infallible| match never {})
                .boxed_unsync(),
        )
        .expect("a response")
}

async fn handle_request(
    shared: Arc<Shared>,
    caller: Caller,
    request: Request<Body>,
) -> Response<ResponseBody> {
    let method = request.method().to_string();
    let uri = request.uri().clone();
    let path = uri.path().to_string();
    let (content_type, accept) = {
        let header = |name: http::header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        (
            header(http::header::CONTENT_TYPE),
            header(http::header::ACCEPT),
        )
    };
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let query = Query::parse(uri.query().unwrap_or_default());
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();

    let log = |verb: &'static str, group: &str, resource: &str, code: u16| Logged {
        caller: caller.clone(),
        method: method.clone(),
        path: path_and_query.clone(),
        group: group.into(),
        resource: resource.into(),
        verb,
        body: body.clone(),
        status: code,
    };

    let Some(target) = parse_path(&path) else {
        // Discovery of one group version: /apis/<group>/<version>.
        let (code, answer) = discovery(&shared, &path);
        shared
            .state
            .lock()
            .expect("state")
            .log
            .push(log("discovery", "", &path, code));
        return full(code, &answer);
    };
    let resource_name = if target.subresource.is_empty() {
        target.resource.clone()
    } else {
        format!("{}/{}", target.resource, target.subresource)
    };
    let verb = authz::verb(&method, target.name.is_some(), query.watch);
    let attributes = Attributes {
        group: target.group.clone(),
        resource: resource_name.clone(),
        name: target.name.clone(),
        verb,
    };

    let metadata_only = accept.contains("as=PartialObjectMetadata");
    let (code, answer) = {
        let mut state = shared.state.lock().expect("state");
        let outcome = if state.crd_missing && target.group == "bulkrecorder.io" {
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        } else if !caller.allows(&attributes) {
            forbidden(&caller, &attributes)
        } else if let Some(fault) = take_fault(&mut state, &method, &path_and_query) {
            status(fault, "InternalError", "injected by the test")
        } else if verb == "watch" {
            drop(state);
            let since = query.resource_version.unwrap_or(0);
            let selection = watch::Selection {
                group: target.group.clone(),
                resource: target.resource.clone(),
                namespace: target.namespace.clone(),
                query: query.clone(),
                metadata_only,
            };
            shared.state.lock().expect("state").log.push(log(
                verb,
                &target.group,
                &resource_name,
                200,
            ));
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(watch::stream(shared.clone(), selection, since))
                .expect("a response");
        } else {
            serve(
                &mut state,
                &shared,
                &caller,
                &target,
                verb,
                &query,
                &content_type,
                body.clone(),
            )
        };
        let (code, mut answer) = outcome;
        if metadata_only && code < 300 {
            answer = if answer["items"].is_array() {
                let items: Vec<Value> = answer["items"]
                    .as_array()
                    .expect("checked")
                    .iter()
                    .map(metadata_only_item)
                    .collect();
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": answer["metadata"], "items": items})
            } else {
                metadata_only_item(&answer)
            };
        }
        state
            .log
            .push(log(verb, &target.group, &resource_name, code));
        (code, answer)
    };
    full(code, &answer)
}

fn metadata_only_item(object: &Value) -> Value {
    metadata_only(object)
}

fn forbidden(caller: &Caller, a: &Attributes) -> (u16, Value) {
    status(
        403,
        "Forbidden",
        &format!(
            "{caller:?} cannot {} resource \"{}\" in API group \"{}\"{}",
            a.verb,
            a.resource,
            a.group,
            a.name
                .as_ref()
                .map(|n| format!(" (name {n})"))
                .unwrap_or_default()
        ),
    )
}

fn take_fault(state: &mut State, method: &str, path: &str) -> Option<u16> {
    let fault = state
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains))?;
    fault.times -= 1;
    Some(fault.status)
}

fn discovery(shared: &Shared, path: &str) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let crd_missing = shared.state.lock().expect("state").crd_missing;
    match parts.as_slice() {
        ["apis", group, version] => {
            let resources: Vec<Value> = KINDS
                .iter()
                .filter(|(_, g, v, _, _)| g == group && v == version)
                .filter(|(_, g, ..)| !(crd_missing && *g == "bulkrecorder.io"))
                .flat_map(|(kind, _, _, resource, namespaced)| {
                    let main = json!({"name": resource, "kind": kind, "namespaced": namespaced,
                        "singularName": kind.to_lowercase(),
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
                    let status = json!({"name": format!("{resource}/status"), "kind": kind,
                        "namespaced": namespaced, "singularName": "", "verbs": ["get", "patch", "update"]});
                    [main, status]
                })
                .collect();
            if resources.is_empty() {
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            } else {
                (
                    200,
                    json!({"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": format!("{group}/{version}"), "resources": resources}),
                )
            }
        }
        _ => status(404, "NotFound", "not a path this fake serves"),
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    state: &mut State,
    shared: &Shared,
    caller: &Caller,
    target: &Target,
    verb: &'static str,
    query: &Query,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let namespace = target.namespace.clone().unwrap_or_default();
    let Some((kind, api_version)) = kind_of(&target.group, &target.resource) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if verb == "list" {
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|(k, _)| {
                k.group == target.group
                    && k.resource == target.resource
                    && (target.namespace.is_none() || k.namespace == namespace)
            })
            .map(|(_, s)| rendered(s))
            .filter(|o| query.selects(o))
            .collect();
        return (
            200,
            json!({"apiVersion": api_version, "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}),
        );
    }
    let name = match (&target.name, verb) {
        (Some(n), _) => n.clone(),
        (None, "create") => body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        _ => return status(405, "MethodNotAllowed", "not supported by the fake"),
    };
    let key = ObjectKey {
        group: target.group.clone(),
        resource: target.resource.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let existing = state.objects.get(&key).cloned();
    let manager = query
        .field_manager
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let not_found = || {
        status(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", target.resource),
        )
    };
    let next = match verb {
        "get" => return existing.map_or_else(not_found, |s| (200, rendered(&s))),
        "delete" => {
            return remove(state, shared, &key).map_or_else(not_found, |o| (200, o));
        }
        "create" => {
            if existing.is_some() {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{} \"{name}\" already exists", target.resource),
                );
            }
            let mut object = body;
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
            object["metadata"]["namespace"] = json!(namespace);
            writes::update(None, object, &manager, "")
        }
        "update" | "patch" => {
            let apply = content_type.starts_with("application/apply-patch");
            if !apply && existing.is_none() {
                return not_found();
            }
            if existing.is_none() {
                // An apply that creates the object is also authorized as `create`.
                let create = Attributes {
                    group: target.group.clone(),
                    resource: target.resource.clone(),
                    name: Some(name.clone()),
                    verb: "create",
                };
                if !caller.allows(&create) {
                    return forbidden(caller, &create);
                }
                if !target.subresource.is_empty() {
                    return not_found();
                }
            }
            let result = if apply {
                if query.field_manager.as_deref().unwrap_or("").is_empty() {
                    return status(
                        400,
                        "BadRequest",
                        "fieldManager is required for apply requests",
                    );
                }
                let mut config = body;
                config["metadata"]["namespace"] = json!(namespace);
                if config["metadata"]["name"] != json!(name) {
                    return status(
                        400,
                        "BadRequest",
                        "the name in the body differs from the path",
                    );
                }
                writes::apply(
                    existing.as_ref(),
                    &config,
                    query.field_manager.as_deref().unwrap_or(""),
                    &target.subresource,
                    query.force,
                )
            } else {
                let current = existing.as_ref().expect("checked").object.clone();
                candidate(current, verb, content_type, body)
                    .map(|c| writes::update(existing.as_ref(), c, &manager, &target.subresource))
            };
            match result {
                Ok(mut next) => {
                    if let Some(before) = &existing {
                        keep_identity(&before.object, &mut next.object);
                    }
                    next
                }
                Err(Refusal::Conflict(message)) => return status(409, "Conflict", &message),
                Err(Refusal::Invalid(message)) => return status(422, "Invalid", &message),
            }
        }
        _ => return status(405, "MethodNotAllowed", "not supported by the fake"),
    };
    if !state.owner_reference_enforcement_off {
        let checks = authz::owner_reference_checks(
            &target.group,
            &target.resource,
            &name,
            existing.as_ref().map(|s| &s.object),
            &next.object,
        );
        if let Some(denied) = checks.iter().find(|a| !caller.allows(a)) {
            let message = if denied.verb == "delete" {
                format!(
                    "{} \"{name}\" is forbidden: cannot set an ownerRef on a resource you can't delete: {:?}",
                    target.resource, denied
                )
            } else {
                format!(
                    "{} \"{name}\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: {:?}",
                    target.resource, denied
                )
            };
            return status(403, "Forbidden", &message);
        }
    }
    let created = existing.is_none();
    let out = persist(state, shared, &key, next, created);
    (if created { 201 } else { 200 }, out)
}

/// The object a non-apply write asks for.
fn candidate(
    mut current: Value,
    verb: &str,
    content_type: &str,
    body: Value,
) -> Result<Value, Refusal> {
    if verb == "update" {
        let rv = body["metadata"]["resourceVersion"].clone();
        if !rv.is_null() && rv != current["metadata"]["resourceVersion"] {
            return Err(Refusal::Conflict(
                "the object has been modified; please apply your changes to the latest version and try again".into(),
            ));
        }
        return Ok(body);
    }
    if content_type.starts_with("application/json-patch") {
        let patch: json_patch::Patch = serde_json::from_value(body)
            .map_err(|e| Refusal::Invalid(format!("not a JSON patch: {e}")))?;
        json_patch::patch(&mut current, &patch)
            .map_err(|e| Refusal::Invalid(format!("the JSON patch does not apply: {e}")))?;
    } else {
        // Merge patches (and strategic merge patches, which for these kinds act alike).
        let rv = body["metadata"]["resourceVersion"].clone();
        if !rv.is_null() && rv != current["metadata"]["resourceVersion"] {
            return Err(Refusal::Conflict("the object has been modified".into()));
        }
        json_patch::merge(&mut current, &body);
    }
    Ok(current)
}
