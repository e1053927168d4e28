//! Objects: list, get, create, delete (with its preconditions), and the writes (server-side
//! apply, replace, patches), each checked by `OwnerReferencesPermissionEnforcement` before it is
//! stored.

use serde_json::{Value, json};

use super::{
    Caller, ObjectKey, Shared, State,
    authz::{self, Attributes},
    kinds::kind_of,
    patch::candidate,
    request::{Answer, Incoming, Query, Target, forbidden, status},
    storage::{keep_identity, persist, remove, rendered},
    writes::{self, Refusal, Stored},
};

fn not_found(target: &Target, name: &str) -> Answer {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", target.resource),
    )
}

pub(super) fn refused(refusal: Refusal) -> Answer {
    match refusal {
        Refusal::Conflict(message) => status(409, "Conflict", &message),
        Refusal::Invalid(message) => status(422, "Invalid", &message),
    }
}

pub(super) fn serve(
    state: &mut State,
    shared: &Shared,
    caller: &Caller,
    target: &Target,
    verb: &'static str,
    incoming: &Incoming,
) -> Answer {
    let Some((kind, api_version)) = kind_of(&target.group, &target.resource) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if verb == "list" {
        return list(state, target, &incoming.query, kind, &api_version);
    }
    let name = match (&target.name, verb) {
        (Some(n), _) => n.clone(),
        (None, "create") => incoming.body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        _ => return status(405, "MethodNotAllowed", "not supported by the fake"),
    };
    let key = target.key(&name);
    let existing = state.objects.get(&key).cloned();
    let next = match verb {
        "get" => return existing.map_or_else(|| not_found(target, &name), |s| (200, rendered(&s))),
        "delete" => return delete(state, shared, target, &key, &incoming.body),
        "create" => create(existing.as_ref(), kind, &api_version, &key, incoming),
        "update" | "patch" => write(caller, target, &key, existing.as_ref(), verb, incoming),
        _ => Err(status(405, "MethodNotAllowed", "not supported by the fake")),
    };
    match next {
        Ok(next) => admit_and_store(state, shared, caller, &key, existing.as_ref(), next),
        Err(answer) => answer,
    }
}

fn list(state: &State, target: &Target, query: &Query, kind: &str, api_version: &str) -> Answer {
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|(k, _)| {
            k.group == target.group
                && k.resource == target.resource
                && target
                    .namespace
                    .as_ref()
                    .is_none_or(|ns| k.namespace == *ns)
        })
        .map(|(_, s)| rendered(s))
        .filter(|o| query.selects(o))
        .collect();
    (
        200,
        json!({"apiVersion": api_version, "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}),
    )
}

/// A delete, honouring the `preconditions` (uid, resourceVersion) of its DeleteOptions.
fn delete(
    state: &mut State,
    shared: &Shared,
    target: &Target,
    key: &ObjectKey,
    options: &Value,
) -> Answer {
    let Some(existing) = state.objects.get(key) else {
        return not_found(target, &key.name);
    };
    for field in ["uid", "resourceVersion"] {
        let wanted = &options["preconditions"][field];
        let actual = &existing.object["metadata"][field];
        if !wanted.is_null() && wanted != actual {
            return status(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} \"{}\": Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {actual}",
                    target.resource, key.name
                ),
            );
        }
    }
    remove(state, shared, key).map_or_else(|| not_found(target, &key.name), |o| (200, o))
}

fn create(
    existing: Option<&Stored>,
    kind: &str,
    api_version: &str,
    key: &ObjectKey,
    incoming: &Incoming,
) -> Result<Stored, Answer> {
    if existing.is_some() {
        return Err(status(
            409,
            "AlreadyExists",
            &format!("{} \"{}\" already exists", key.resource, key.name),
        ));
    }
    let mut object = incoming.body.clone();
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    object["metadata"]["namespace"] = json!(key.namespace);
    let manager = incoming.query.field_manager.as_deref().unwrap_or("unknown");
    Ok(writes::update(None, object, manager, ""))
}

/// An update or a patch (server-side apply included) of the object or its status.
fn write(
    caller: &Caller,
    target: &Target,
    key: &ObjectKey,
    existing: Option<&Stored>,
    verb: &str,
    incoming: &Incoming,
) -> Result<Stored, Answer> {
    let apply = incoming.content_type.starts_with("application/apply-patch");
    let Some(existing) = existing else {
        if !apply {
            return Err(not_found(target, &key.name));
        }
        // An apply that creates the object is also authorized as `create`.
        let create = Attributes {
            group: target.group.clone(),
            resource: target.resource.clone(),
            name: Some(key.name.clone()),
            verb: "create",
        };
        if !caller.allows(&create) {
            return Err(forbidden(caller, &create, target.namespace.as_deref()));
        }
        if !target.subresource.is_empty() {
            return Err(not_found(target, &key.name));
        }
        return server_side_apply(None, key, target, incoming);
    };
    let mut next = if apply {
        server_side_apply(Some(existing), key, target, incoming)?
    } else {
        let manager = incoming.query.field_manager.as_deref().unwrap_or("unknown");
        let body = incoming.body.clone();
        let wanted = candidate(existing.object.clone(), verb, &incoming.content_type, body)
            .map_err(refused)?;
        writes::update(Some(existing), wanted, manager, &target.subresource)
    };
    keep_identity(&existing.object, &mut next.object);
    Ok(next)
}

fn server_side_apply(
    existing: Option<&Stored>,
    key: &ObjectKey,
    target: &Target,
    incoming: &Incoming,
) -> Result<Stored, Answer> {
    let manager = incoming.query.field_manager.as_deref().unwrap_or("");
    if manager.is_empty() {
        return Err(status(
            400,
            "BadRequest",
            "fieldManager is required for apply requests",
        ));
    }
    let mut config = incoming.body.clone();
    config["metadata"]["namespace"] = json!(key.namespace);
    if config["metadata"]["name"] != json!(key.name) {
        return Err(status(
            400,
            "BadRequest",
            "the name in the body differs from the path",
        ));
    }
    let force = incoming.query.force;
    writes::apply(existing, &config, manager, &target.subresource, force).map_err(refused)
}

/// `OwnerReferencesPermissionEnforcement`, then the write is stored.
fn admit_and_store(
    state: &mut State,
    shared: &Shared,
    caller: &Caller,
    key: &ObjectKey,
    existing: Option<&Stored>,
    next: Stored,
) -> Answer {
    if !state.owner_reference_enforcement_off {
        let before = existing.map(|s| &s.object);
        let checks = authz::owner_reference_checks(
            &key.group,
            &key.resource,
            &key.name,
            before,
            &next.object,
        );
        if let Some(denied) = checks.iter().find(|a| !caller.allows(a)) {
            let why = if denied.verb == "delete" {
                "cannot set an ownerRef on a resource you can't delete"
            } else {
                "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on"
            };
            let message = format!(
                "{} \"{}\" is forbidden: {why}: {denied:?}",
                key.resource, key.name
            );
            return status(403, "Forbidden", &message);
        }
    }
    let created = existing.is_none();
    let out = persist(state, shared, key, next, created);
    (if created { 201 } else { 200 }, out)
}
