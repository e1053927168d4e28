//! The PodMonitor of a BulkRecorder with `spec.monitoring.podMonitor`. Monitoring never gets in
//! the way of recording: whatever happens here (the Prometheus Operator's CRD missing, a name
//! taken, a refused apply) is reported in the PodMonitorReady condition only, never fails the
//! reconcile, and never touches Ready or Degraded.

use bulk_recorder_crds::BulkRecorder;
use kube::ResourceExt;

use crate::{
    apply::Outcome,
    context::Context,
    desired::{self, PodMonitor},
    observed::{Observed, PodMonitorState},
    owned::{Changes, own, retire},
    stores::{cached_meta, known_meta},
};

/// Applies or deletes the PodMonitor as the spec asks; `None` when the spec does not ask for
/// one (no condition then).
pub async fn reconcile(
    br: &BulkRecorder,
    ctx: &Context,
    changes: &mut Changes,
) -> Option<PodMonitorState> {
    let wanted = br.spec.monitoring.pod_monitor;
    let served = match ctx.pod_monitor_crd.served(&ctx.client).await {
        Ok(served) => served,
        Err(error) if wanted => {
            return Some(PodMonitorState::Failed(format!(
                "asking the API server whether it serves PodMonitors: {error}"
            )));
        }
        // Nothing wanted, nothing known: nothing to do.
        Err(_) => return None,
    };
    let ns = br.namespace().unwrap_or_default();
    let name = br.name_any();
    let store = ctx.stores.get().map(|s| &s.pod_monitors);
    if !wanted {
        if served {
            let known = store.and_then(|s| known_meta(s, &ns, &name));
            if let Err(error) = retire::<PodMonitor>(ctx, br, &name, known, changes).await {
                tracing::warn!(resource = %format!("{ns}/{name}"), %error, "could not delete the PodMonitor");
            }
        }
        return None;
    }
    if !served {
        return Some(PodMonitorState::CrdMissing);
    }
    let uid = br.uid().unwrap_or_default();
    let cached = store.and_then(|s| cached_meta(s, &ns, &name));
    // Conflicts are reported by the state, not in Degraded: collected aside.
    let mut aside = Observed::default();
    let monitor = desired::pod_monitor(br);
    Some(
        match own(ctx, &monitor, cached, &uid, &mut aside, changes).await {
            Ok(Outcome::Conflict(why)) => PodMonitorState::Conflict(why),
            Ok(_) => PodMonitorState::Applied(br.spec.monitoring.pod_monitor_labels.clone()),
            Err(error) => PodMonitorState::Failed(error.to_string()),
        },
    )
}
