//! kruise-manager: watches Nodes, NodeImages, ImagePullJobs, ImageListPullJobs, Pods and pull
//! secrets; decides (in [`engine`], a state machine with no I/O, on a thread of its own) what
//! every NodeImage spec and job status should be, replanning only what each event changed; and
//! writes only the differences, one patch per object.

pub mod adopt;
mod args;
pub mod engine;
pub mod lean;
pub mod lease;
pub mod listjob;
mod listwriter;
pub mod metrics;
pub mod predownload;
pub mod secrets;
pub mod selector;
pub mod watch;
pub mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use args::Args;
use k8s_openapi::jiff::Timestamp;
use kruise_api::ImagePullJob;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Changes arriving within this window are planned together (jobs created together share
/// writes); a round never waits longer than this after the first change.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// How long a stopping manager lets the writes in flight finish; well inside the default 30 s
/// termination grace period, and a later leader recomputes anything left undone.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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

/// Runs until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let kruise_observe::Started {
        shutdown,
        readiness,
        metrics,
        admin,
        addr,
    } = kruise_observe::start("kruise_manager", args.metrics_addr, metrics::Metrics::new).await?;
    tracing::info!(%addr, "kruise-manager serving /metrics, /healthz and /readyz");

    let (client, server) =
        kruise_observe::api::client("kruise-manager", env!("CARGO_PKG_VERSION")).await?;
    tracing::info!(%server, "using the Kubernetes API server");
    if !wait_for_crds(&client, &server, &shutdown).await {
        return Ok(());
    }
    check_node_selector(&client, &args.node_selector).await?;
    let scope = watch::Scope {
        node_selector: args.node_selector.clone(),
        job_namespace: args.job_namespace.clone(),
    };
    let settings = engine::Settings {
        nodeimage_creation_delay: args.nodeimage_creation_delay,
        response_timeout: args.node_response_timeout,
        job_namespace: args.job_namespace.clone(),
        placement_window: args.placement_window,
        status_interval: args.status_interval,
    };

    // The engine runs on a thread of its own: a long round (a leader's first, at 5,000 nodes)
    // never holds up the watches, the lease renewal or the metrics server.
    let (inputs, engine_inputs) = std::sync::mpsc::channel();
    let (writes, write_batches) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let stop = Arc::new(AtomicBool::new(false));
    let engine_thread = {
        let (metrics, stop) = (metrics.clone(), stop.clone());
        let engine = engine::Engine::new(settings);
        std::thread::Builder::new()
            .name("kruise-engine".into())
            .spawn(move || engine_loop(engine, engine_inputs, writes, metrics, ready_tx, stop))?
    };
    watch::start(&client, &scope, &inputs, &server);
    tokio::select! {
        r = ready_rx.wait_for(|r| *r) => { r.map_err(|_| anyhow::anyhow!("the engine stopped before it was ready"))?; }
        _ = shutdown.cancelled() => {
            stop_engine(&stop, &inputs, engine_thread).await;
            return Ok(());
        }
    }
    readiness.set(true);
    tracing::info!("every watch listed; the engine is ready");

    let leadership = if args.leader_elect {
        let cfg = lease::LeaseConfig {
            namespace: args.leader_election_namespace.clone(),
            name: args.leader_election_id.clone(),
            identity: lease::identity(),
            duration: args.leader_election_lease_duration,
        };
        match lease::lead(client.clone(), cfg, shutdown.clone(), Some(metrics.clone())).await {
            Some(l) => Some(l),
            None => {
                stop_engine(&stop, &inputs, engine_thread).await;
                return Ok(());
            }
        }
    } else {
        None
    };
    let lost = leadership
        .as_ref()
        .map_or_else(CancellationToken::new, |l| l.lost.clone());
    let writer = writer::Writer {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "kruise-manager".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        metrics: metrics.clone(),
        done: inputs.clone(),
        job_namespace: args.job_namespace.clone(),
    };
    let writer = tokio::spawn(writer.run(write_batches, SHUTDOWN_GRACE));
    let predownload = args.image_predownload.then(|| {
        let cfg = predownload::controller::Config {
            all_workloads: args.image_predownload_all_workloads,
            namespace: args.job_namespace.clone(),
            discovery_interval: args.predownload_discovery_interval,
        };
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "kruise-manager".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        tokio::spawn(predownload::controller::run(
            client.clone(),
            recorder,
            metrics.clone(),
            cfg,
            shutdown.child_token(),
        ))
    });
    let _ = inputs.send(engine::Input::Lead(true));
    tracing::info!("leading; planning");

    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = lost.cancelled() => {
            // Not one more write without the lease: another replica may be leading already.
            writer.abort();
            stop_engine(&stop, &inputs, engine_thread).await;
            anyhow::bail!("lost leadership; exiting so a fresh process can compete again");
        }
    }
    readiness.set(false);
    if let Some(p) = predownload {
        p.abort();
    }
    // The engine stops planning; the writer finishes what is in flight (bounded), then the
    // lease is handed over.
    stop_engine(&stop, &inputs, engine_thread).await;
    tokio::select! {
        _ = writer => {}
        _ = lost.cancelled() => tracing::warn!("lost the lease while stopping; the remaining writes are dropped"),
    }
    if let Some(l) = leadership {
        l.release().await;
    }
    let _ = admin.await;
    tracing::info!("kruise-manager stopped");
    Ok(())
}

/// Tells the engine thread to stop and waits (without blocking the runtime) until it has.
async fn stop_engine(
    stop: &AtomicBool,
    inputs: &std::sync::mpsc::Sender<engine::Input>,
    thread: std::thread::JoinHandle<()>,
) {
    stop.store(true, Ordering::SeqCst);
    let _ = inputs.send(engine::Input::Lead(false));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !thread.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The engine thread: takes inputs as they come, and runs a round once the first change since
/// the last round is [`DEBOUNCE`] old, or a timer is due; hands the writes to the writer.
fn engine_loop(
    mut engine: engine::Engine,
    inputs: std::sync::mpsc::Receiver<engine::Input>,
    writes: tokio::sync::mpsc::UnboundedSender<Vec<engine::Write>>,
    metrics: Arc<metrics::Metrics>,
    ready: tokio::sync::watch::Sender<bool>,
    stop: Arc<AtomicBool>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let debounce = k8s_openapi::jiff::SignedDuration::try_from(DEBOUNCE).expect("small");
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Timestamp::now();
        let due = [
            engine
                .changed_since
                .filter(|_| engine.has_work())
                .map(|t| t + debounce),
            engine.next_timer(),
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = due.map_or(Duration::from_secs(60), |d| {
            Duration::try_from(d.duration_since(now)).unwrap_or_default()
        });
        match inputs.recv_timeout(wait) {
            Ok(input) => {
                metrics.input(&input);
                engine.input(input, Timestamp::now());
                // Take what else has arrived, a bounded batch at a time.
                for input in inputs.try_iter().take(10_000) {
                    metrics.input(&input);
                    engine.input(input, Timestamp::now());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if engine.ready() && !*ready.borrow() {
            let _ = ready.send(true);
        }
        let now = Timestamp::now();
        let round_due = engine
            .changed_since
            .is_some_and(|t| t + debounce <= now && engine.has_work())
            || engine.next_timer().is_some_and(|t| t <= now);
        if !round_due || stop.load(Ordering::SeqCst) {
            continue;
        }
        let started = Instant::now();
        let out = engine.round(now);
        metrics.round(&engine, started.elapsed());
        if !out.is_empty() && writes.send(out).is_err() {
            return;
        }
    }
}

/// Waits until the API server answers and serves ImagePullJobs, retrying with backoff and
/// saying why not (the server and the cause; "install the CRDs" only when they are missing).
/// `false` on shutdown.
async fn wait_for_crds(client: &Client, server: &str, shutdown: &CancellationToken) -> bool {
    let api: Api<ImagePullJob> = Api::all(client.clone());
    let mut retry = Duration::from_secs(1);
    let mut log = kruise_observe::api::RetryLog::default();
    loop {
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => {
                log.recovered("reaching the API server");
                return true;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => tracing::error!(
                %server,
                retry_in = ?retry,
                "the ImagePullJob CRD is not installed (404 for imagepulljobs.apps.kruise.io); \
                 install the CRDs: kubectl apply -f config/crd/ (the Helm chart installs them)"
            ),
            Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => tracing::error!(
                %server,
                error = %s.message,
                retry_in = ?retry,
                "not allowed to list ImagePullJobs; the manager's service account needs the \
                 chart's ClusterRole (charts/kruise/templates/rbac-manager.yaml)"
            ),
            Err(e) => log.failed("reaching the API server", server, &e, Some(retry)),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = kruise_observe::api::backoff(retry, Duration::from_secs(30));
    }
}

/// Refuses a `--node-selector` the API server cannot parse, naming the flag (the API server's
/// own parser is the one that counts).
async fn check_node_selector(client: &Client, selector: &str) -> anyhow::Result<()> {
    if selector.is_empty() {
        return Ok(());
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    match nodes
        .list_metadata(&kube::api::ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 400 => {
            anyhow::bail!(
                "--node-selector {selector:?} is not a label selector: {}",
                s.message
            )
        }
        _ => Ok(()),
    }
}
