//! kruise-daemon, one per node: follows the node's NodeImage, keeps one pull worker per tag
//! (bounded by `--max-concurrent-pulls`), pulls through the runtime's CRI socket, and reports each
//! tag's result in the NodeImage status, written by one coalescing writer.

pub mod admission;
mod args;
pub mod controller;
pub mod desired;
pub mod events;
pub mod metrics;
pub mod peer;
pub mod pinning;
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
    kruise_observe::block_on(run(args))
}

/// Runs until SIGTERM or SIGINT (stop taking work, cancel pulls, flush the status, exit 0), or
/// until a supervised task fails (exit non-zero; the kubelet restarts the daemon).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let started =
        kruise_observe::start("kruise_daemon", args.metrics_addr, metrics::Metrics::new).await?;
    tracing::info!(node = %args.node_name, addr = %started.addr, "kruise-daemon serving /metrics, /healthz and /readyz");
    let (client, server) =
        kruise_observe::api::client("kruise-daemon", env!("CARGO_PKG_VERSION")).await?;
    tracing::info!(%server, "using the Kubernetes API server");
    let Some(cri) = find_runtime(&args, &started.shutdown).await else {
        return Ok(());
    };
    let ready = runtime::Readiness::new(started.readiness.clone());
    let sup = &started.supervisor;
    sup.spawn(
        "the container runtime probe",
        runtime::probe(
            cri.clone(),
            RUNTIME_PROBE_INTERVAL,
            ready.clone(),
            started.metrics.clone(),
            started.shutdown.clone(),
        ),
    );
    let api: Api<NodeImage> = Api::all(client.clone());
    let holdings = Arc::new(tokio::sync::watch::channel(peer::Holdings::default()).0);
    let (status, writer) = start_status_writer(&args, &api, &started, holdings.clone());
    let ctx = worker_context(&args, &client, cri, status.clone(), &started).await;
    if args.peer_port != 0 {
        serve_peers(&args, &client, &ctx, holdings.subscribe(), &started).await?;
    }
    sup.spawn(
        "the pin keeper",
        pin_keeper(
            ctx.clone(),
            started.metrics.clone(),
            started.shutdown.clone(),
        ),
    );
    let mut controller = controller::Controller::new(ctx);
    let synced = ready.clone();
    let follow = controller.run(
        api,
        &args.node_name,
        &server,
        started.shutdown.clone(),
        move || synced.synced(),
    );
    let failed = tokio::select! {
        _ = follow => None,
        cause = sup.failed() => Some(cause),
    };
    sup.stopping();
    ready.stopping();
    if let Some(cause) = failed {
        anyhow::bail!("{cause}");
    }
    tracing::info!("stopping: cancelling pulls and flushing status");
    controller.stop_all().await;
    flush(&status).await;
    writer.abort();
    let _ = started.admin.await;
    tracing::info!("kruise-daemon stopped");
    Ok(())
}

/// How often the daemon asks the runtime whether it answers.
const RUNTIME_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Status updates waiting for the writer at most; a full channel makes workers wait.
const STATUS_QUEUE: usize = 1024;

type Started = kruise_observe::Started<metrics::Metrics>;

/// The NodeImage status writer, supervised, and the senders' side of its channel.
fn start_status_writer(
    args: &Args,
    api: &Api<NodeImage>,
    started: &Started,
    holdings: Arc<tokio::sync::watch::Sender<peer::Holdings>>,
) -> (status::StatusSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(STATUS_QUEUE);
    let progress = started
        .supervisor
        .watchdog("the NodeImage status writer", args.stall_timeout);
    let writer = status::StatusWriter {
        api: api.clone(),
        node: args.node_name.clone(),
        metrics: started.metrics.clone(),
        timing: status::Timing::default(),
        progress: progress.clone(),
        holdings,
    };
    let task = started
        .supervisor
        .spawn("the NodeImage status writer", writer.run(rx));
    let sender = status::StatusSender::new(tx, progress, started.metrics.clone());
    (sender, task)
}

async fn worker_context(
    args: &Args,
    client: &kube::Client,
    cri: kruise_cri::CriClient,
    status: status::StatusSender,
    started: &Started,
) -> Arc<worker::WorkerContext<runtime::CriRuntime>> {
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
    // A size read holds its pull: a short deadline (an unreadable registry is then left alone
    // for a while and the pull goes ahead unchecked).
    let registries = kruise_registry::Registries::new(args.insecure_registries.clone())
        .with_timeout(Duration::from_secs(10));
    let admission = args.image_fs_max_percent < 100;
    let mut runtime =
        runtime::CriRuntime::new(cri, registries, args.image_fs_path.clone(), admission).await;
    if args.peer_port != 0 {
        runtime.peers = Some(peer::copy::PeerClient::new(
            args.peer_token_file.clone(),
            args.peer_min_bytes_per_second,
        ));
    }
    Arc::new(worker::WorkerContext {
        runtime: Arc::new(runtime),
        permits: Arc::new(Semaphore::new(args.max_concurrent_pulls as usize)),
        status,
        credentials: Arc::new(secrets::SecretCredentials {
            client: client.clone(),
        }),
        events: Arc::new(events::KubeEvents {
            recorder: Recorder::new(client.clone(), reporter),
            node_image,
        }),
        metrics: started.metrics.clone(),
        check_interval: args.image_check_interval,
        progress_interval: (!args.progress_interval.is_zero()).then_some(args.progress_interval),
        initial_backoff: Duration::from_secs(1),
        clock: worker::Clock::new(),
        registry_gate: Default::default(),
        guarantees: worker::Guarantees {
            pin: args.pin_images,
            image_fs_max_percent: args.image_fs_max_percent,
            space_retry: args.image_fs_recheck_interval,
            ..Default::default()
        },
    })
}

/// Serves the blobs of the images this node holds to the other daemons (`--peer-port`), under
/// the supervisor: a taken port fails the start, a server that ends fails the process.
async fn serve_peers(
    args: &Args,
    client: &kube::Client,
    ctx: &worker::WorkerContext<runtime::CriRuntime>,
    holdings: tokio::sync::watch::Receiver<peer::Holdings>,
    started: &Started,
) -> anyhow::Result<()> {
    let Some(feed) = ctx.runtime.feed.clone() else {
        tracing::warn!("the runtime has no containerd content store: this node serves no blobs to peers (and copies none)");
        return Ok(());
    };
    if args.peer_service_accounts.is_empty() {
        tracing::warn!("--peer-service-accounts is empty: every peer's request is refused (403)");
    }
    let auth = peer::auth::Authenticator::new(
        Box::new(peer::auth::KubeReviewer(client.clone())),
        args.peer_audience.clone(),
        &args.peer_service_accounts,
    );
    let server = Arc::new(peer::serve::BlobServer::new(
        auth,
        feed,
        holdings,
        args.peer_max_uploads as usize,
        args.peer_upload_bytes_per_second,
        started.metrics.clone(),
    ));
    let addr = std::net::SocketAddr::new(args.peer_bind_address, args.peer_port);
    let (local, served) = server.serve(addr, started.shutdown.clone()).await?;
    tracing::info!(addr = %local, audience = %args.peer_audience, "serving blobs to peers");
    started.supervisor.spawn("the peer blob server", served);
    Ok(())
}

/// The pin keeper, also woken after every pin so the gauges follow at once.
async fn pin_keeper(
    ctx: Arc<worker::WorkerContext<runtime::CriRuntime>>,
    metrics: Arc<metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let wanted = ctx.guarantees.wanted_pins.subscribe();
    let recount = ctx.guarantees.recount.clone();
    let wake = ctx.guarantees.wanted_pins.clone();
    let nudge = async move {
        loop {
            recount.notified().await;
            // Marks the wanted set changed without changing it: the keeper looks again.
            wake.send_modify(|_| {});
        }
    };
    tokio::select! {
        _ = pinning::keeper(ctx.runtime.clone(), wanted, metrics, stop) => {}
        _ = nudge => {}
    }
}

/// Writes what the status writer holds, waiting at most 5 s for it.
async fn flush(status: &status::StatusSender) {
    let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
    if status
        .send(status::StatusUpdate::Flush(ack_tx))
        .await
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(5), ack_rx).await;
    }
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
