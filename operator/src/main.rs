//! `bulk-recorder-operator`: elects a leader through a Lease, then runs the controller.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use bulk_recorder_operator::{context::Context, controller, http, startup};
use clap::Parser;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

#[derive(Parser)]
#[command(
    version,
    about = "Reconciles BulkRecorder resources into recorder Deployments"
)]
struct Args {
    /// Image of the recorder, for BulkRecorders that do not set spec.image.
    #[arg(long, env = "RECORDER_IMAGE")]
    recorder_image: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Watch one namespace only; empty: all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    watch_namespace: String,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "bulk-recorder-operator")]
    lease_name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }

    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    if let Err(error) = startup::check_crd(&client).await {
        tracing::error!(%error, "cannot start");
        return Err(error.into());
    }
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("bulk-recorder-operator-{}", std::process::id()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        args.recorder_image.clone(),
        identity.clone(),
    ));
    let ready = Arc::new(AtomicBool::new(false));
    http::serve(args.metrics_addr, ctx.clone(), ready.clone())
        .await
        .with_context(|| format!("binding --metrics-addr {}", args.metrics_addr))?;

    // Only the replica holding the Lease reconciles; the others wait for it to lapse.
    let leases = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_field_manager(lease_field_manager(&identity))
        .build()
        .await
        .context("preparing leader election")?;
    let (mut leader, lease_task) = leases.watch().await;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(identity, lease = args.lease_name, "waiting for leadership");
    while !*leader.borrow_and_update() {
        tokio::select! {
            changed = leader.changed() => changed.context("leader election stopped")?,
            _ = shutdown_signal() => return Ok(()),
        }
    }
    tracing::info!(identity, "leading: reconciling BulkRecorders");

    let namespace = Some(args.watch_namespace).filter(|ns| !ns.is_empty());
    let mut lost = leader.clone();
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutting down"),
            _ = lost.wait_for(|leading| !*leading) => tracing::warn!("lost leadership: stopping so that a single leader reconciles"),
        }
    };
    controller::run(client, ctx, namespace, stop).await;
    drop(leader);
    let _ = lease_task.await;
    Ok(())
}

/// Each replica renews the Lease under a field manager of its own.
fn lease_field_manager(identity: &str) -> String {
    format!("bulk-recorder-operator-lease-{identity}")
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_replica_has_its_own_lease_field_manager() {
        assert_ne!(
            super::lease_field_manager("operator-7d9f-a"),
            super::lease_field_manager("operator-7d9f-b")
        );
    }
}
