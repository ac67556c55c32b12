//! kruise-manager: serves health and metrics and (from the manager issue on) runs the NodeImage,
//! ImagePullJob and ImageListPullJob controllers.

mod args;
pub mod plan;
pub mod selector;

use std::sync::{Arc, Mutex};

pub use args::Args;
use kruise_observe::{serve_admin, shutdown_on_signal, Readiness};
use prometheus_client::registry::Registry;

/// Runs until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal();
    let registry = Arc::new(Mutex::new(Registry::with_prefix("kruise_manager")));
    let readiness = Readiness::default();
    let (addr, admin) = serve_admin(
        args.metrics_addr,
        registry,
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "kruise-manager serving /metrics, /healthz and /readyz");
    readiness.set(true);
    shutdown.cancelled().await;
    let _ = admin.await;
    tracing::info!("kruise-manager stopped");
    Ok(())
}
