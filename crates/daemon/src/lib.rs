//! kruise-daemon, one per node: follows the node's NodeImage, keeps one pull worker per tag
//! (bounded by `--max-concurrent-pulls`), pulls through the runtime's CRI socket, and reports each
//! tag's result in the NodeImage status, written by one coalescing writer.

mod args;
pub mod controller;
pub mod desired;
pub mod events;
pub mod metrics;
pub mod registry_gate;
pub mod runtime;
pub mod secrets;
pub mod status;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

pub use args::Args;
use k8s_openapi::api::core::v1::ObjectReference;
use kruise_api::NodeImage;
use kube::runtime::events::{Recorder, Reporter};
use kube::Api;
use tokio::sync::{mpsc, Semaphore};

/// The binary's `main`: flags from `args` (the first is the program's name), logging, a
/// multi-threaded runtime, then [`run`].
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<()> {
    use clap::Parser;
    let args = Args::parse_from(args);
    kruise_observe::init_logging(&args.log)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Runs until SIGTERM or SIGINT: stop taking work, cancel pulls, flush the status, exit.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let kruise_observe::Started {
        shutdown,
        readiness,
        metrics,
        admin,
        addr,
    } = kruise_observe::start("kruise_daemon", args.metrics_addr, metrics::Metrics::new).await?;
    tracing::info!(node = %args.node_name, %addr, "kruise-daemon serving /metrics, /healthz and /readyz");

    let (client, server) =
        kruise_observe::api::client("kruise-daemon", env!("CARGO_PKG_VERSION")).await?;
    tracing::info!(%server, "using the Kubernetes API server");
    let Some(runtime) = find_runtime(&args, &shutdown).await else {
        return Ok(());
    };

    let api: Api<NodeImage> = Api::all(client.clone());
    let (status_tx, status_rx) = mpsc::channel(1024);
    let writer = status::StatusWriter {
        api: api.clone(),
        node: args.node_name.clone(),
        metrics: metrics.clone(),
        timing: status::Timing::default(),
    };
    let writer = tokio::spawn(writer.run(status_rx));

    let reporter = Reporter {
        controller: "kruise-daemon".into(),
        instance: Some(args.node_name.clone()),
    };
    let node_image = ObjectReference {
        api_version: Some("apps.kruise.io/v1beta1".into()),
        kind: Some("NodeImage".into()),
        name: Some(args.node_name.clone()),
        ..Default::default()
    };
    let ctx = Arc::new(worker::WorkerContext {
        runtime: Arc::new(runtime::CriRuntime::new(runtime).await),
        permits: Arc::new(Semaphore::new(args.max_concurrent_pulls as usize)),
        status: status_tx.clone(),
        credentials: Arc::new(secrets::SecretCredentials {
            client: client.clone(),
        }),
        events: Arc::new(events::KubeEvents {
            recorder: Recorder::new(client.clone(), reporter),
            node_image,
        }),
        metrics,
        check_interval: args.image_check_interval,
        progress_interval: (!args.progress_interval.is_zero()).then_some(args.progress_interval),
        initial_backoff: Duration::from_secs(1),
        clock: worker::Clock::new(),
        registry_gate: Default::default(), // h16 registry gate
    });
    let mut controller = controller::Controller::new(ctx);
    let ready = readiness.clone();
    controller
        .run(api, &args.node_name, &server, shutdown.clone(), move || {
            ready.set(true)
        })
        .await;

    tracing::info!("stopping: cancelling pulls and flushing status");
    readiness.set(false);
    controller.stop_all().await;
    let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
    if status_tx
        .send(status::StatusUpdate::Flush(ack_tx))
        .await
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(5), ack_rx).await;
    }
    drop(status_tx);
    drop(controller);
    writer.abort();
    let _ = admin.await;
    tracing::info!("kruise-daemon stopped");
    Ok(())
}

/// Waits for the container runtime, retrying every 10 s (it may start after the daemon).
async fn find_runtime(
    args: &Args,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<kruise_cri::CriClient> {
    loop {
        match kruise_cri::detect(args.runtime_endpoint.as_deref(), &args.host_run_dir).await {
            Ok(found) => {
                tracing::info!(
                    runtime = %found.version.runtime_name,
                    version = %found.version.runtime_version,
                    endpoint = %found.endpoint,
                    "container runtime found"
                );
                return Some(found.client);
            }
            Err(e) => tracing::error!(error = %e, "container runtime not found; retrying in 10s"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
