//! What every handler of the fake API server reads and answers: a request read whole (its
//! target, query and body) and the answers (a status, a refusal), below the routing that picks
//! the handler.

use http::Request;
use kube::client::Body;
use serde_json::{Value, json};

use super::{Caller, Logged, ObjectKey, authz::Attributes};

/// An answer: status code and body.
pub(super) type Answer = (u16, Value);

/// One request, read whole.
pub(super) struct Incoming {
    pub method: String,
    pub path: String,
    pub path_and_query: String,
    pub content_type: String,
    /// Asked for `PartialObjectMetadata` (metadata-only reads and watches).
    pub metadata_only: bool,
    pub body: Value,
    pub query: Query,
}

fn header(request: &Request<Body>, name: http::header::HeaderName) -> String {
    let value = request.headers().get(name).and_then(|v| v.to_str().ok());
    value.unwrap_or_default().to_string()
}

impl Incoming {
    pub(super) async fn read(request: Request<Body>) -> Self {
        let content_type = header(&request, http::header::CONTENT_TYPE);
        let accept = header(&request, http::header::ACCEPT);
        let metadata_only = accept.contains("as=PartialObjectMetadata");
        let method = request.method().to_string();
        let uri = request.uri().clone();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        Self {
            method,
            path: uri.path().to_string(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            content_type,
            metadata_only,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            query: Query::parse(uri.query().unwrap_or_default()),
        }
    }

    pub(super) fn logged(
        &self,
        caller: &Caller,
        verb: &'static str,
        group: &str,
        resource: &str,
        status: u16,
    ) -> Logged {
        Logged {
            caller: caller.clone(),
            method: self.method.clone(),
            path: self.path_and_query.clone(),
            group: group.into(),
            resource: resource.into(),
            verb,
            body: self.body.clone(),
            status,
        }
    }
}

/// A 403 as the API server words it: what was refused, to whom, and where.
pub(super) fn forbidden(caller: &Caller, a: &Attributes, namespace: Option<&str>) -> Answer {
    let (resource, subresource) = a.resource.split_once('/').unwrap_or((&a.resource, ""));
    let qualified = match a.group.as_str() {
        "" => resource.to_string(),
        group => format!("{resource}.{group}"),
    };
    let object = a
        .name
        .as_ref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    let sub = match subresource {
        "" => String::new(),
        sub => format!("/{sub}"),
    };
    let place = namespace
        .map(|ns| format!(" in the namespace \"{ns}\""))
        .unwrap_or_else(|| " at the cluster scope".into());
    status(
        403,
        "Forbidden",
        &format!(
            "{qualified}{object} is forbidden: User \"{}\" cannot {} resource \"{resource}{sub}\" in API group \"{}\"{place}",
            caller.user(),
            a.verb,
            a.group,
        ),
    )
}

pub(super) fn status(code: u16, reason: &str, message: &str) -> Answer {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": reason, "message": message, "code": code}),
    )
}

/// The query parameters the server honours.
#[derive(Clone, Debug, Default)]
pub(super) struct Query {
    pub watch: bool,
    pub resource_version: Option<u64>,
    pub timeout_seconds: Option<u64>,
    pub label_selector: Vec<(String, Option<String>, bool)>,
    pub field_manager: Option<String>,
    pub force: bool,
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

    pub(super) fn selects(&self, object: &Value) -> bool {
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
pub(super) struct Target {
    pub group: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: String,
}

impl Target {
    /// Where the object called `name` lives.
    pub(super) fn key(&self, name: &str) -> ObjectKey {
        ObjectKey {
            group: self.group.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.into(),
        }
    }

    /// `resource` or `resource/subresource`, as RBAC names it.
    pub(super) fn rbac_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

pub(super) fn parse_path(path: &str) -> Option<Target> {
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
