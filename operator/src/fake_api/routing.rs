//! From an HTTP request to an answer: the checks every request passes (the group being served,
//! RBAC, injected faults), then the handler of its concern (objects, the scale subresource,
//! watches), the metadata-only rendering, and the request log. What the handlers share (the
//! request read whole, the answers) is in [`super::request`], below this.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use kube::client::Body;
use serde_json::{Value, json};

use super::{
    Caller, Shared, State,
    authz::{self, Attributes},
    crud, kinds,
    request::{Answer, Incoming, Target, forbidden, parse_path, status},
    scale,
    storage::metadata_only,
    watch::{self, ResponseBody},
};

pub(super) async fn handle_request(
    shared: Arc<Shared>,
    caller: Caller,
    request: Request<Body>,
) -> Response<ResponseBody> {
    let incoming = Incoming::read(request).await;
    let Some(target) = parse_path(&incoming.path) else {
        // Discovery of one group version: /apis/<group>/<version>.
        let mut state = shared.state.lock().expect("state");
        let (code, answer) = kinds::discovery(&incoming.path, |g| state.serves(g));
        let entry = incoming.logged(&caller, "discovery", "", &incoming.path, code);
        state.log.push(entry);
        return full(code, &answer);
    };
    let resource = target.rbac_resource();
    let verb = authz::verb(
        &incoming.method,
        target.name.is_some(),
        incoming.query.watch,
    );
    let mut state = shared.state.lock().expect("state");
    let early = gate(&mut state, &caller, &target, verb, &incoming);
    if verb == "watch" && early.is_none() {
        let entry = incoming.logged(&caller, verb, &target.group, &resource, 200);
        state.log.push(entry);
        drop(state);
        return watch_response(shared.clone(), &target, &incoming);
    }
    let (code, mut answer) = early.unwrap_or_else(|| match target.subresource.as_str() {
        "scale" => scale::serve(&mut state, &shared, &target, verb, &incoming),
        _ => crud::serve(&mut state, &shared, &caller, &target, verb, &incoming),
    });
    if incoming.metadata_only && code < 300 {
        answer = as_metadata(answer);
    }
    let entry = incoming.logged(&caller, verb, &target.group, &resource, code);
    state.log.push(entry);
    full(code, &answer)
}

/// The answer a request gets before its handler runs, if any: its group is not served (a CRD
/// not installed), RBAC refuses it, or the test injected a fault.
fn gate(
    state: &mut State,
    caller: &Caller,
    target: &Target,
    verb: &'static str,
    incoming: &Incoming,
) -> Option<Answer> {
    let attributes = Attributes {
        group: target.group.clone(),
        resource: target.rbac_resource(),
        name: target.name.clone(),
        verb,
    };
    if !state.serves(&target.group) {
        Some(status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ))
    } else if !caller.allows(&attributes) || state.revoked(caller, &attributes) {
        Some(forbidden(caller, &attributes, target.namespace.as_deref()))
    } else {
        take_fault(state, &incoming.method, &incoming.path_and_query)
            .map(|fault| status(fault, "InternalError", "injected by the test"))
    }
}

fn watch_response(
    shared: Arc<Shared>,
    target: &Target,
    incoming: &Incoming,
) -> Response<ResponseBody> {
    let selection = watch::Selection {
        group: target.group.clone(),
        resource: target.resource.clone(),
        namespace: target.namespace.clone(),
        query: incoming.query.clone(),
        metadata_only: incoming.metadata_only,
    };
    let since = incoming.query.resource_version.unwrap_or(0);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(watch::stream(shared, selection, since))
        .expect("a response")
}

/// An object or a list as `PartialObjectMetadata`.
fn as_metadata(answer: Value) -> Value {
    let Some(items) = answer["items"].as_array() else {
        return metadata_only(&answer);
    };
    let items: Vec<Value> = items.iter().map(metadata_only).collect();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": answer["metadata"], "items": items})
}

fn take_fault(state: &mut State, method: &str, path: &str) -> Option<u16> {
    let fault = state
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains))?;
    fault.times -= 1;
    Some(fault.status)
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
