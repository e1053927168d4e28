//! Whether the API server serves a kind the operator uses only where it is installed (the
//! Prometheus Operator's PodMonitor). Discovery needs no RBAC rule; the answer is shared by
//! every reconcile and asked again at most once per [`TTL`], so a CRD installed later is noticed
//! within about a minute at the cost of one request a minute for the whole operator.

use std::time::Duration;

use kube::Client;
use tokio::time::Instant;

pub const TTL: Duration = Duration::from_secs(60);

/// One kind's discovery, cached.
pub struct Discovery {
    group_version: &'static str,
    plural: &'static str,
    /// Held across the request, so that reconciles running at once ask once between them.
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl Discovery {
    pub const fn new(group_version: &'static str, plural: &'static str) -> Self {
        Self {
            group_version,
            plural,
            last: tokio::sync::Mutex::const_new(None),
        }
    }

    /// The Prometheus Operator's PodMonitors.
    pub const fn pod_monitors() -> Self {
        Self::new("monitoring.coreos.com/v1", "podmonitors")
    }

    /// Whether the kind is served, as of at most [`TTL`] ago.
    pub async fn served(&self, client: &Client) -> Result<bool, kube::Error> {
        let mut last = self.last.lock().await;
        if let Some((at, served)) = *last
            && at.elapsed() < TTL
        {
            return Ok(served);
        }
        let served = match client.list_api_group_resources(self.group_version).await {
            Ok(list) => list.resources.iter().any(|r| r.name == self.plural),
            // The group itself is unknown: its CRDs are not installed.
            Err(kube::Error::Api(e)) if e.code == 404 => false,
            Err(e) => return Err(e),
        };
        *last = Some((Instant::now(), served));
        Ok(served)
    }

    /// Resolves once the kind is served (asking every [`TTL`]): a watch of it starts then.
    pub async fn wait_until_served(&self, client: &Client) {
        loop {
            match self.served(client).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, kind = self.plural, "discovery failed; asking again later")
                }
            }
            tokio::time::sleep(TTL).await;
        }
    }
}
