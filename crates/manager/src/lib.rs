//! kruise-manager: watches Nodes, NodeImages, ImagePullJobs, ImageListPullJobs, Pods and pull
//! secrets; decides (in [`engine`], a state machine with no I/O, on a thread of its own) what
//! every NodeImage spec and job status should be, replanning only what each event changed; and
//! writes only the differences, one patch per object.

pub mod adopt;
mod args;
pub mod digests;
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
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kruise_api::ImagePullJob;
use kruise_observe::supervise::Watchdog;
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
    kruise_observe::block_on(run(args))
}

/// Runs until SIGTERM or SIGINT (exit 0), or until the lease is lost or a supervised task fails
/// (an error: the process exits non-zero and the kubelet restarts it).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let started =
        kruise_observe::start("kruise_manager", args.metrics_addr, metrics::Metrics::new).await?;
    tracing::info!(addr = %started.addr, "kruise-manager serving /metrics, /healthz and /readyz");
    let (client, server) =
        kruise_observe::api::client("kruise-manager", env!("CARGO_PKG_VERSION")).await?;
    tracing::info!(%server, "using the Kubernetes API server");
    if !wait_for_crds(&client, &server, &started.shutdown).await {
        return Ok(());
    }
    check_node_selector(&client, &args.node_selector).await?;
    let (engine, write_batches) = EngineThread::start(&args, &started)?;
    let scope = watch::Scope {
        node_selector: args.node_selector.clone(),
        job_namespace: args.job_namespace.clone(),
    };
    watch::start(
        &client,
        &scope,
        &engine.inputs,
        &server,
        &started.supervisor,
    );
    if let Err(end) = until(engine.ready(), &started, None).await {
        return step_down(end, engine, None, None, started).await;
    }
    started.readiness.set(true);
    tracing::info!("every watch listed; the engine is ready");
    let leadership = match elect(&args, &client, &started).await {
        Ok(leadership) => leadership,
        Err(end) => return step_down(end, engine, None, None, started).await,
    };
    let lost = leadership.as_ref().map(|l| l.lost.clone());
    let planning = Planning::start(&args, &client, &started, &engine, write_batches);
    let _ = engine.inputs.send_async(engine::Input::Lead(true)).await;
    tracing::info!("leading; planning");
    let end = until(std::future::pending::<()>(), &started, lost.as_ref())
        .await
        .unwrap_err();
    step_down(end, engine, Some(planning), leadership, started).await
}

/// Why the manager stops.
enum End {
    Shutdown,
    LostLease,
    Failed(String),
}

/// Runs `f` unless the process is told to stop, loses its lease or fails first.
async fn until<T>(
    f: impl std::future::Future<Output = T>,
    started: &Started,
    lost: Option<&CancellationToken>,
) -> Result<T, End> {
    let lost = async {
        match lost {
            Some(l) => l.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        v = f => Ok(v),
        _ = started.shutdown.cancelled() => Err(End::Shutdown),
        _ = lost => Err(End::LostLease),
        cause = started.supervisor.failed() => Err(End::Failed(cause)),
    }
}

type Started = kruise_observe::Started<metrics::Metrics>;

/// Competes for the Lease when leader election is on; `Ok(None)` when it is off.
async fn elect(
    args: &Args,
    client: &Client,
    started: &Started,
) -> Result<Option<lease::Leadership>, End> {
    if !args.leader_elect {
        return Ok(None);
    }
    let cfg = lease::LeaseConfig {
        namespace: args.leader_election_namespace.clone(),
        name: args.leader_election_id.clone(),
        identity: lease::identity(),
        duration: args.leader_election_lease_duration,
    };
    let leading = lease::lead(
        client.clone(),
        cfg,
        started.shutdown.clone(),
        started.supervisor.clone(),
        Some(started.metrics.clone()),
    );
    match until(leading, started, None).await? {
        Some(l) => Ok(Some(l)),
        None => Err(End::Shutdown),
    }
}

/// Stops in the order that hands over fastest and loses nothing: no new plans, the Lease given
/// back (the standby starts at once; writes still in flight carry the resourceVersion they were
/// planned from, so a stale one gets a conflict instead of overwriting), then the writes in
/// flight drained. A lost lease writes nothing more; a failure drains nothing.
async fn step_down(
    end: End,
    engine: EngineThread,
    planning: Option<Planning>,
    leadership: Option<lease::Leadership>,
    started: Started,
) -> anyhow::Result<()> {
    started.readiness.set(false);
    started.supervisor.stopping();
    if let Some(p) = &planning {
        p.stop_predownload();
    }
    if matches!(end, End::LostLease | End::Failed(_)) {
        if let Some(p) = &planning {
            p.writer.abort();
        }
    }
    engine.stop().await;
    if !matches!(end, End::LostLease) {
        if let Some(l) = leadership {
            l.release().await;
        }
    }
    match end {
        End::Shutdown => {
            if let Some(p) = planning {
                p.drain().await;
            }
            let _ = started.admin.await;
            tracing::info!("kruise-manager stopped");
            Ok(())
        }
        End::LostLease => {
            anyhow::bail!("lost leadership; exiting so a fresh process can compete again")
        }
        End::Failed(cause) => anyhow::bail!("{cause}"),
    }
}

/// What runs while leading: the writer and the pre-download controller.
struct Planning {
    writer: tokio::task::JoinHandle<()>,
    predownload: Option<tokio::task::JoinHandle<()>>,
}

impl Planning {
    fn start(
        args: &Args,
        client: &Client,
        started: &Started,
        engine: &EngineThread,
        batches: tokio::sync::mpsc::Receiver<Vec<engine::Write>>,
    ) -> Self {
        let recorder = || {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: "kruise-manager".into(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            )
        };
        let writer = writer::Writer {
            client: client.clone(),
            recorder: recorder(),
            metrics: started.metrics.clone(),
            done: engine.inputs.clone(),
            job_namespace: args.job_namespace.clone(),
            progress: engine.writer_progress.clone(),
            registries: kruise_registry::Registries::new(args.insecure_registries.clone()),
        };
        // The writer stops only when the engine's side of its channel goes (the engine stopping
        // or failing, which is reported as such).
        let writer = started
            .supervisor
            .spawn_finite("the writer", writer.run(batches, SHUTDOWN_GRACE));
        let predownload = args.image_predownload.then(|| {
            let cfg = predownload::controller::Config {
                all_workloads: args.image_predownload_all_workloads,
                namespace: args.job_namespace.clone(),
                discovery_interval: args.predownload_discovery_interval,
            };
            let controller = predownload::controller::run(
                client.clone(),
                recorder(),
                started.metrics.clone(),
                cfg,
                started.supervisor.clone(),
                started.shutdown.child_token(),
            );
            started
                .supervisor
                .spawn("the pre-download controller", controller)
        });
        Self {
            writer,
            predownload,
        }
    }

    fn stop_predownload(&self) {
        if let Some(p) = &self.predownload {
            p.abort();
        }
    }

    /// Lets the writer finish what is in flight; it stops once the engine's side of its channel
    /// is gone, within its grace period.
    async fn drain(self) {
        let bound = SHUTDOWN_GRACE + Duration::from_secs(1);
        if tokio::time::timeout(bound, self.writer).await.is_err() {
            tracing::warn!(
                ?bound,
                "the writer did not stop in time; the next leader plans again"
            );
        }
    }
}

/// The engine's thread and its channels: inputs in (watches, the writer's results), batches of
/// writes out, both bounded.
struct EngineThread {
    inputs: flume::Sender<engine::Input>,
    ready: tokio::sync::watch::Receiver<bool>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    /// The writes handed to the writer and not finished yet.
    writer_progress: Arc<Watchdog>,
}

/// Inputs queued for the engine at most: a burst (a relist at 5,000 nodes) waits in the watches
/// instead of in memory, and a stalled engine shows as a full queue.
const INPUT_QUEUE: usize = 16_384;
/// Batches of writes queued for the writer at most.
const WRITE_QUEUE: usize = 64;

impl EngineThread {
    fn start(
        args: &Args,
        started: &Started,
    ) -> anyhow::Result<(Self, tokio::sync::mpsc::Receiver<Vec<engine::Write>>)> {
        let settings = engine::Settings {
            nodeimage_creation_delay: args.nodeimage_creation_delay,
            response_timeout: args.node_response_timeout,
            job_namespace: args.job_namespace.clone(),
            placement_window: args.placement_window,
            status_interval: args.status_interval,
            resolve_digests: args.resolve_digests,
            digest_check_interval: args.digest_check_interval,
            peer_port: args.peer_port,
            registry_budget: args.registry_budget,
            peer_fanout: args.peer_fanout,
        };
        // The engine runs on a thread of its own: a long round (a leader's first, at 5,000
        // nodes) never holds up the watches, the lease renewal or the metrics server.
        let (inputs, engine_inputs) = flume::bounded(INPUT_QUEUE);
        let (writes, batches) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let sup = &started.supervisor;
        let writer_progress = sup.watchdog("the writer", args.stall_timeout);
        let engine_loop = EngineLoop {
            engine: engine::Engine::new(settings),
            inputs: engine_inputs,
            writes,
            metrics: started.metrics.clone(),
            ready: ready_tx,
            stop: stop.clone(),
            rounds: sup.watchdog("the engine", args.stall_timeout),
            writer_progress: writer_progress.clone(),
        };
        let thread = sup.spawn_thread("kruise-engine", move || engine_loop.run())?;
        let me = Self {
            inputs,
            ready,
            stop,
            thread,
            writer_progress,
        };
        Ok((me, batches))
    }

    /// Resolves once every watch has listed; never if the engine stopped first (the supervisor
    /// says why).
    async fn ready(&self) {
        let mut ready = self.ready.clone();
        if ready.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Tells the engine thread to stop and waits (without blocking the runtime, and at most
    /// 5 s: a stalled engine is left behind, the process is exiting) until it has.
    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.inputs.try_send(engine::Input::Lead(false));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.thread.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The engine thread's state: takes inputs as they come, and runs a round once the first change
/// since the last round is [`DEBOUNCE`] old, or a timer is due; hands the writes to the writer.
struct EngineLoop {
    engine: engine::Engine,
    inputs: flume::Receiver<engine::Input>,
    writes: tokio::sync::mpsc::Sender<Vec<engine::Write>>,
    metrics: Arc<metrics::Metrics>,
    ready: tokio::sync::watch::Sender<bool>,
    stop: Arc<AtomicBool>,
    /// A round, and handing its writes over, must finish within the stall timeout.
    rounds: Arc<Watchdog>,
    writer_progress: Arc<Watchdog>,
}

impl EngineLoop {
    fn run(mut self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.inputs.recv_timeout(self.wait()) {
                Ok(input) => self.take(input),
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
            self.metrics.queued("engine_inputs", self.inputs.len());
            if self.engine.ready() && !*self.ready.borrow() {
                let _ = self.ready.send(true);
            }
            let now = Timestamp::now();
            if self.round_due(now) && !self.stop.load(Ordering::SeqCst) && !self.round(now) {
                return;
            }
        }
    }

    fn debounce() -> SignedDuration {
        SignedDuration::try_from(DEBOUNCE).unwrap_or_default()
    }

    /// Until the next round may be due: a change's debounce, or the next timer.
    fn wait(&self) -> Duration {
        let engine = &self.engine;
        let due = [
            engine
                .changed_since
                .filter(|_| engine.has_work())
                .map(|t| t + Self::debounce()),
            engine.next_timer(),
        ]
        .into_iter()
        .flatten()
        .min();
        due.map_or(Duration::from_secs(60), |d| {
            Duration::try_from(d.duration_since(Timestamp::now())).unwrap_or_default()
        })
    }

    /// Takes `input` and what else has arrived, a bounded batch at a time.
    fn take(&mut self, input: engine::Input) {
        self.metrics.input(&input);
        self.engine.input(input, Timestamp::now());
        for input in self.inputs.try_iter().take(10_000) {
            self.metrics.input(&input);
            self.engine.input(input, Timestamp::now());
        }
    }

    fn round_due(&self, now: Timestamp) -> bool {
        let engine = &self.engine;
        engine
            .changed_since
            .is_some_and(|t| t + Self::debounce() <= now && engine.has_work())
            || engine.next_timer().is_some_and(|t| t <= now)
    }

    /// One round, its writes handed to the writer (waiting while its queue is full); `false`
    /// once the writer is gone.
    fn round(&mut self, now: Timestamp) -> bool {
        let _busy = self.rounds.busy();
        let started = Instant::now();
        let out = self.engine.round(now);
        self.metrics.round(&self.engine, started.elapsed());
        if out.is_empty() {
            return true;
        }
        if kruise_observe::fault("engine-round-panic") {
            panic!("injected fault: the engine-round-panic fail point");
        }
        self.writer_progress.add(1);
        let sent = self.writes.blocking_send(out).is_ok();
        self.metrics
            .queued("writes", WRITE_QUEUE - self.writes.capacity());
        sent
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
