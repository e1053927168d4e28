//! Checks before the operator starts: without the CRD, every watch fails and nothing says why.

use kube::Client;

/// The API version the operator serves.
pub const GROUP_VERSION: &str = "bulkrecorder.io/v1alpha1";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "the BulkRecorder CRD is not installed ({GROUP_VERSION} bulkrecorders is unknown to the API server): install it with `kubectl apply --server-side -f crds/bulkrecorder.yaml` (Helm installs it with the chart)"
    )]
    CrdMissing,
    #[error(
        "the installed BulkRecorder CRD is older than this operator (it has no {0} subresource): apply the current crds/bulkrecorder.yaml (`kubectl apply --server-side -f crds/bulkrecorder.yaml`)"
    )]
    CrdOutdated(&'static str),
    #[error("asking the API server which resources {GROUP_VERSION} serves: {0}")]
    Api(#[source] kube::Error),
}

/// Fails when the API server does not serve BulkRecorders with their status and scale
/// subresources (a CRD of an earlier release: its schema would also drop this release's fields).
/// Discovery needs no RBAC rule (every authenticated user may read it).
pub async fn check_crd(client: &Client) -> Result<(), StartupError> {
    let resources = match client.list_api_group_resources(GROUP_VERSION).await {
        Ok(list) => list.resources,
        Err(kube::Error::Api(e)) if e.code == 404 => return Err(StartupError::CrdMissing),
        Err(e) => return Err(StartupError::Api(e)),
    };
    let served = |name: &str| resources.iter().any(|r| r.name == name);
    if !served("bulkrecorders") {
        return Err(StartupError::CrdMissing);
    }
    for subresource in ["status", "scale"] {
        if !served(&format!("bulkrecorders/{subresource}")) {
            return Err(StartupError::CrdOutdated(subresource));
        }
    }
    Ok(())
}
