//! A fake API server for reconciler tests: each test scripts the conversation a reconcile
//! must have (method, path, answer), in order, and reads back what was sent. A request the
//! script does not expect fails the test, and so does a script left unfinished.

use std::sync::{Arc, Mutex};

use bulk_recorder_crds::{
    BulkRecorder, BulkRecorderSpec, PostgresSpec, RabbitMqSpec, SecretKeyRef,
};
use http::{Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};

use crate::{context::Context, rbac::OPERATOR_CALLS};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

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
            message_format: Default::default(),
            rabbitmq: RabbitMqSpec {
                url_secret_ref: SecretKeyRef {
                    name: "rabbitmq".into(),
                    key: "url".into(),
                },
                queue: "transaction_balance_operation".into(),
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
        },
    );
    br.metadata.namespace = Some(namespace.into());
    br.metadata.uid = Some("3f1c3f6e-0000-4000-8000-000000000001".into());
    br.metadata.generation = Some(1);
    br
}

/// One expected request and the answer to give.
pub struct Exchange {
    pub method: &'static str,
    /// The request's path and query must start with this.
    pub path: String,
    pub status: u16,
    /// The answer's body; `None` echoes the request body back (what an apply returns).
    pub answer: Option<Value>,
}

pub fn expect(
    method: &'static str,
    path: impl Into<String>,
    status: u16,
    answer: Value,
) -> Exchange {
    Exchange {
        method,
        path: path.into(),
        status,
        answer: Some(answer),
    }
}

/// An apply (PATCH) answered with the object it sent.
pub fn expect_apply(path: impl Into<String>) -> Exchange {
    Exchange {
        method: "PATCH",
        path: path.into(),
        status: 200,
        answer: None,
    }
}

pub fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

pub fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ledger"}, "data": {"url": "dXJs"}})
}

pub fn pod_list(names: &[&str]) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|n| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": n, "namespace": "ledger"}}))
        .collect();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items})
}

/// What the reconcile sent: (method, path, body) of every request, in order.
pub type Sent = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A context whose client talks to the fake server, and the server playing `script`.
pub fn serve(script: Vec<Exchange>) -> (Arc<Context>, tokio::task::JoinHandle<()>, Sent) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Arc::new(Context::new(
        client,
        "bulk-recorder:test".into(),
        "test".into(),
    ));
    let sent: Sent = Arc::default();
    let log = sent.clone();
    let server = tokio::spawn(async move {
        for (step, exchange) in script.into_iter().enumerate() {
            let (request, respond) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("step {step}: no request came"));
            let method = request.method().to_string();
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            assert_granted(&method, &path, &content_type);
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_eq!(
                (method.as_str(), path.starts_with(&exchange.path)),
                (exchange.method, true),
                "step {step}: expected {} {}, got {method} {path}",
                exchange.method,
                exchange.path
            );
            log.lock().unwrap().push((method, path, body.clone()));
            let answer = exchange.answer.unwrap_or(body);
            let response = Response::builder()
                .status(exchange.status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
        // Anything more is a request the script did not expect.
        let extra =
            tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request())
                .await;
        if let Ok(Some((request, _))) = extra {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    });
    (ctx, server, sent)
}

/// The (API group, resource, verbs) RBAC checks for one request. An apply may create the
/// object, and the API server then also checks `create`.
pub fn permission(
    method: &str,
    path_and_query: &str,
    content_type: &str,
) -> (String, String, Vec<&'static str>) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/v1/... (core group) or /apis/<group>/<version>/...
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource path: {path}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => panic!("not a resource path: {path}"),
    };
    let watch = query
        .split('&')
        .any(|q| q == "watch=true" || q == "watch=1");
    let verbs = match (method, named) {
        ("GET", true) => vec!["get"],
        ("GET", false) if watch => vec!["watch"],
        ("GET", false) => vec!["list"],
        ("POST", _) => vec!["create"],
        ("PUT", _) => vec!["update"],
        ("PATCH", _) if content_type.starts_with("application/apply-patch") => {
            vec!["patch", "create"]
        }
        ("PATCH", _) => vec!["patch"],
        ("DELETE", _) => vec!["delete"],
        (other, _) => panic!("unexpected method {other}"),
    };
    (group.to_string(), resource, verbs)
}

/// Fails when a request needs a permission that `rbac::OPERATOR_CALLS` (and so the chart)
/// does not list: the table must be the operator's real calls.
fn assert_granted(method: &str, path: &str, content_type: &str) {
    let (group, resource, verbs) = permission(method, path, content_type);
    let granted = OPERATOR_CALLS
        .iter()
        .find(|(g, r, _)| *g == group && *r == resource)
        .map(|(_, _, v)| *v)
        .unwrap_or_default();
    for verb in verbs {
        assert!(
            granted.contains(&verb),
            "{method} {path} needs {verb} on {group}/{resource}, which rbac::OPERATOR_CALLS does not list"
        );
    }
}
