//! The objects one BulkRecorder owns, applied in order (the recorders' identity and RBAC before
//! the Deployment that uses them, the disruption budget after it), and the ones it no longer
//! wants deleted.

use bulk_recorder_crds::BulkRecorder;
use k8s_openapi::api::{apps::v1::Deployment, policy::v1::PodDisruptionBudget};
use kube::{
    Api, Resource, ResourceExt,
    api::ObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    apply::Outcome,
    context::Context,
    desired,
    error::{During, Error},
    observed::Observed,
    stores::{Stores, cached_meta, known_meta},
};

/// What a reconcile changed in the cluster, for the events.
#[derive(Debug, Default)]
pub struct Changes {
    /// Kinds the server changed when they were applied.
    pub applied: Vec<String>,
    /// `Kind name` of objects deleted because the resource no longer wants them.
    pub deleted: Vec<String>,
}

/// Applies one owned object; records a conflict or, when the server changed it, its kind.
pub async fn own<K>(
    ctx: &Context,
    desired: &K,
    cached: Option<ObjectMeta>,
    owner_uid: &str,
    observed: &mut Observed,
    changes: &mut Changes,
) -> Result<Outcome<K>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let ns = desired.meta().namespace.clone().unwrap_or_default();
    let api = Api::<K>::namespaced(ctx.client.clone(), &ns);
    let outcome = ctx
        .applied
        .apply(&api, desired, cached, owner_uid)
        .await
        .during(|| format!("applying {} {}", K::kind(&()), desired.name_any()))?;
    match &outcome {
        Outcome::Applied { changed: true, .. } => changes.applied.push(K::kind(&()).into_owned()),
        Outcome::Conflict(why) => observed.conflicts.push(why.clone()),
        _ => {}
    }
    Ok(outcome)
}

/// Deletes the owned `K` called `name` if it exists and is ours.
pub async fn retire<K>(
    ctx: &Context,
    br: &BulkRecorder,
    name: &str,
    known: Option<Option<ObjectMeta>>,
    changes: &mut Changes,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let ns = br.namespace().unwrap_or_default();
    let api = Api::<K>::namespaced(ctx.client.clone(), &ns);
    let uid = br.uid().unwrap_or_default();
    if ctx
        .applied
        .retire(&api, &ns, name, known, &uid)
        .await
        .during(|| format!("deleting {} {name}", K::kind(&())))?
    {
        changes.deleted.push(format!("{} {name}", K::kind(&())));
    }
    Ok(())
}

/// The metadata of `name` from one of the controller's stores, if it runs.
fn cached<K>(
    stores: Option<&Stores>,
    store: fn(&Stores) -> &Store<K>,
    ns: &str,
    name: &str,
) -> Option<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Clone,
{
    stores.and_then(|s| cached_meta(store(s), ns, name))
}

/// Applies the recorders' ServiceAccount, Role, RoleBinding, metrics Service, Deployment and
/// PodDisruptionBudget; returns the Deployment as the cluster holds it (None when it is not
/// ours).
pub async fn apply_all(
    br: &BulkRecorder,
    ctx: &Context,
    secret_versions: &str,
    observed: &mut Observed,
    changes: &mut Changes,
) -> Result<Option<Deployment>, Error> {
    let ns = br.namespace().ok_or(Error::NoNamespace)?;
    let (name, uid) = (br.name_any(), br.uid().unwrap_or_default());
    let stores = ctx.stores.get();
    let sa = desired::service_account(br);
    let sa_name = sa.name_any();
    let cached_sa = cached(stores, |s| &s.service_accounts, &ns, &sa_name);
    own(ctx, &sa, cached_sa, &uid, observed, changes).await?;
    let cached_role = cached(stores, |s| &s.roles, &ns, &sa_name);
    own(
        ctx,
        &desired::role(br),
        cached_role,
        &uid,
        observed,
        changes,
    )
    .await?;
    let cached_binding = cached(stores, |s| &s.role_bindings, &ns, &sa_name);
    own(
        ctx,
        &desired::role_binding(br),
        cached_binding,
        &uid,
        observed,
        changes,
    )
    .await?;
    let service = desired::service(br);
    let cached_service = cached(stores, |s| &s.services, &ns, &service.name_any());
    own(ctx, &service, cached_service, &uid, observed, changes).await?;

    let live = stores.and_then(|s| {
        s.deployments
            .get(&ObjectRef::new(&name).within(&ns))
            .map(|d| (*d).clone())
    });
    let wanted = desired::deployment(br, &ctx.recorder_image, secret_versions);
    let live_meta = live.as_ref().map(|d| d.metadata.clone());
    let deployment = match own(ctx, &wanted, live_meta, &uid, observed, changes).await? {
        Outcome::Applied { object, .. } => Some(object),
        Outcome::Current => live,
        Outcome::Conflict(_) => None,
    };

    if desired::wants_disruption_budget(br) {
        let cached_budget = cached(stores, |s| &s.disruption_budgets, &ns, &name);
        let budget = desired::pod_disruption_budget(br);
        own(ctx, &budget, cached_budget, &uid, observed, changes).await?;
    } else {
        let known = stores.and_then(|s| known_meta(&s.disruption_budgets, &ns, &name));
        retire::<PodDisruptionBudget>(ctx, br, &name, known, changes).await?;
    }
    Ok(deployment)
}
