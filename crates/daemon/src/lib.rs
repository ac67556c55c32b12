//! kruise-daemon, one per node: finds the container runtime, serves health and metrics, and
//! (from the daemon issue on) pulls what the node's NodeImage lists and reports it.

mod args;

use std::sync::{Arc, Mutex};

pub use args::Args;
use kruise_observe::{serve_admin, shutdown_on_signal, Readiness};
use prometheus_client::registry::Registry;

/// Runs until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal();
    let registry = Arc::new(Mutex::new(Registry::with_prefix("kruise_daemon")));
    let readiness = Readiness::default();
    let (addr, admin) = serve_admin(
        args.metrics_addr,
        registry,
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(node = %args.node_name, %addr, "kruise-daemon serving /metrics, /healthz and /readyz");

    let runtime = kruise_cri::detect(args.runtime_endpoint.as_deref(), &args.host_run_dir)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(
        runtime = %runtime.version.runtime_name,
        version = %runtime.version.runtime_version,
        endpoint = %runtime.endpoint,
        "container runtime found"
    );
    readiness.set(true);
    shutdown.cancelled().await;
    let _ = admin.await;
    tracing::info!("kruise-daemon stopped");
    Ok(())
}
