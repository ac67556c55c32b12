//! kruise-manager at fleet scale, with a simulated fleet on the test API server (see
//! `e2e::fleet`): Nodes heartbeating, pods churning, one simulated kruise-daemon per node. Each
//! scenario prints one line of figures with its conditions. Nothing is asserted on timings.
//!
//!   cargo bench -p e2e --bench fleet -- [fanout|steady|daytwo|storm|scaling|all]
//!
//! Sizes and pacing come from the environment: BENCH_NODES (5000), BENCH_JOBS (30),
//! BENCH_PULL_SECONDS (20), BENCH_HEARTBEAT_SECONDS (60 for fan-out, 10 for steady state).
//! `bash scripts/bench fleet` runs them all on a release build.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::fleet::apiserver::ApiServer;
use e2e::fleet::daemons::{self, DaemonConfig, DaemonStats};
use e2e::fleet::measure::{
    self, between, buckets, memory_mib, metric, percentile, quantile, secs, setting,
};
use e2e::fleet::nodes;
use e2e::{Cluster, Process};
use futures::StreamExt;
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::{ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const NS: &str = "bench";

/// The test API server, a manager, and the simulated fleet.
struct Bench {
    server: ApiServer,
    cluster: Cluster,
    manager: Option<Process>,
    logs: tempfile::TempDir,
    nodes: Arc<Mutex<Vec<String>>>,
    stats: Arc<DaemonStats>,
    stop: CancellationToken,
}

fn node_list(prefix: &str, from: usize, n: usize) -> Vec<(String, Value)> {
    (from..from + n)
        .map(|i| {
            (
                format!("{prefix}-{i:05}"),
                json!({"pool": if i % 2 == 0 { "a" } else { "b" }}),
            )
        })
        .collect()
}

impl Bench {
    async fn new() -> Self {
        let server = ApiServer::start();
        let cluster = server.cluster(&[NS, "kruise-daemon-config"]).await;
        Self {
            server,
            cluster,
            manager: None,
            logs: tempfile::tempdir().unwrap(),
            nodes: Arc::new(Mutex::new(Vec::new())),
            stats: Arc::new(DaemonStats::default()),
            stop: CancellationToken::new(),
        }
    }

    async fn add_nodes(&self, nodes: &[(String, Value)]) {
        nodes::create(&self.cluster.client, nodes).await;
        self.nodes
            .lock()
            .unwrap()
            .extend(nodes.iter().map(|(n, _)| n.clone()));
    }

    /// The simulated daemons, heartbeats every `heartbeat`, and `pods` pods/s churning.
    fn start_fleet(&self, heartbeat: Duration, pull: Duration, pods: u32) {
        let cfg = DaemonConfig {
            pull_time: pull,
            jitter: 0.25,
            progress_interval: Duration::from_secs(5),
            fail_rate: 0.0,
        };
        let c = self.cluster.client.clone();
        tokio::spawn(daemons::run(
            c.clone(),
            cfg,
            self.stats.clone(),
            self.stop.clone(),
        ));
        tokio::spawn(nodes::heartbeats(
            c.clone(),
            self.nodes.clone(),
            heartbeat,
            self.stop.clone(),
        ));
        tokio::spawn(nodes::churn_pods(
            c,
            NS.into(),
            self.nodes.clone(),
            pods,
            1000,
            self.stop.clone(),
        ));
    }

    /// The release kruise-manager, ready, and a NodeImage for each of `expect` nodes.
    async fn start_manager(&mut self, expect: usize) {
        let mut m = Process::manager_with(
            self.cluster.kubeconfig(),
            self.logs.path(),
            "manager",
            &[
                "--leader-election-lease-duration",
                "15s",
                "--log-level",
                "warn",
                "--placement-window",
                &std::env::var("BENCH_PLACEMENT_WINDOW").unwrap_or_else(|_| "10s".into()),
            ],
        );
        m.wait_ready(Duration::from_secs(300)).await;
        self.manager = Some(m);
        self.wait_node_images(expect).await;
    }

    async fn wait_node_images(&self, expect: usize) {
        let api: Api<NodeImage> = Api::all(self.cluster.client.clone());
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let n = api
                .list_metadata(&ListParams::default())
                .await
                .unwrap()
                .items
                .len();
            if n >= expect {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {n} of {expect} NodeImages after 15 minutes"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.manager
            .as_ref()
            .and_then(Process::pid)
            .expect("the manager runs")
    }

    async fn manager_metrics(&self) -> String {
        self.manager
            .as_ref()
            .expect("the manager runs")
            .metrics()
            .await
    }

    /// With `BENCH_VERBOSE`: the manager's input and write counters on stderr, headed `when`,
    /// and its log kept as `/tmp/fleet-manager.log`, to see what a figure came from.
    async fn debug_dump(&self, when: &str) {
        if std::env::var_os("BENCH_VERBOSE").is_none() {
            return;
        }
        let log = self.manager.as_ref().expect("the manager runs").log.clone();
        let _ = std::fs::copy(&log, "/tmp/fleet-manager.log");
        eprintln!("manager counters {when}:");
        for l in self.manager_metrics().await.lines().filter(|l| {
            l.starts_with("kruise_manager_inputs")
                || l.starts_with("kruise_manager_jobs_replanned")
                || l.starts_with("kruise_manager_writes")
        }) {
            eprintln!("  {l}");
        }
    }

    /// `(NodeImage spec patches, job status patches)` the API server answered 200 so far, from
    /// its `apiserver_request_total`, as on a real kube-apiserver.
    async fn writes(&self) -> (u64, u64) {
        let m = self.server.metrics().await;
        let count = |resource: &str, sub: &str| {
            metric(
                &m,
                "apiserver_request_total",
                &[
                    "verb=\"PATCH\"",
                    &format!("resource=\"{resource}\""),
                    &format!("subresource=\"{sub}\""),
                    "code=\"200\"",
                ],
            ) as u64
        };
        (count("nodeimages", ""), count("imagepulljobs", "status"))
    }

    async fn create_jobs(&self, jobs: &[ImagePullJob]) -> Vec<ImagePullJob> {
        let api: Api<ImagePullJob> = Api::namespaced(self.cluster.client.clone(), NS);
        let mut out = Vec::new();
        for j in jobs {
            out.push(
                api.create(&PostParams::default(), j)
                    .await
                    .expect("job created"),
            );
        }
        out
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn job(name: &str, completion: &str, parallelism: u64, pool: Option<&str>) -> ImagePullJob {
    let mut spec = json!({"image": format!("registry.example.com/bench/{name}:v1"), "parallelism": parallelism,
        "completionPolicy": {"type": completion}});
    if let Some(p) = pool {
        spec["selector"] = json!({"matchLabels": {"pool": p}});
    }
    serde_json::from_value(
        json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
        "metadata": {"name": name, "namespace": NS}, "spec": spec}),
    )
    .unwrap()
}

/// When each job was seen complete (completionTime set, or for a Never job every node done).
fn watch_completion(b: &Bench) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let api: Api<ImagePullJob> = Api::namespaced(b.cluster.client.clone(), NS);
    let (out, stop) = (seen.clone(), b.stop.clone());
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        loop {
            let j = tokio::select! {
                _ = stop.cancelled() => return,
                e = events.next() => match e { Some(Ok(j)) => j, Some(Err(_)) => continue, None => return },
            };
            let done = j.status.as_ref().is_some_and(|s| {
                s.completion_time.is_some()
                    || (s.desired > 0 && s.succeeded + s.failed == s.desired)
            });
            if done {
                out.lock()
                    .unwrap()
                    .entry(j.name_any())
                    .or_insert_with(Instant::now);
            }
        }
    });
    seen
}

/// What the manager did over a phase.
struct Phase {
    cpu: f64,
    wall: f64,
    rounds: f64,
    round_p50: Option<f64>,
    round_p99: Option<f64>,
    cells: f64,
    lease_p99: Option<f64>,
    ni_writes: u64,
    status_writes: u64,
}

struct Mark {
    cpu: f64,
    at: Instant,
    metrics: String,
    writes: (u64, u64),
}

async fn mark(b: &Bench) -> Mark {
    Mark {
        cpu: measure::cpu_seconds(b.pid()),
        at: Instant::now(),
        metrics: b.manager_metrics().await,
        writes: b.writes().await,
    }
}

async fn phase(b: &Bench, start: &Mark) -> Phase {
    let end = mark(b).await;
    let round = |m: &str| buckets(m, "kruise_manager_reconcile_duration_seconds");
    let rounds = between(&round(&start.metrics), &round(&end.metrics));
    let lease = |m: &str| buckets(m, "kruise_manager_lease_renewal_seconds");
    let renewals = between(&lease(&start.metrics), &lease(&end.metrics));
    let counter = |m: &str, name: &str| metric(m, name, &[]);
    Phase {
        cpu: end.cpu - start.cpu,
        wall: end.at.duration_since(start.at).as_secs_f64(),
        rounds: counter(&end.metrics, "kruise_manager_reconciles_total")
            - counter(&start.metrics, "kruise_manager_reconciles_total"),
        round_p50: quantile(&rounds, 0.5),
        round_p99: quantile(&rounds, 0.99),
        cells: counter(&end.metrics, "kruise_manager_cells_refreshed_total")
            - counter(&start.metrics, "kruise_manager_cells_refreshed_total"),
        lease_p99: quantile(&renewals, 0.99),
        ni_writes: end.writes.0 - start.writes.0,
        status_writes: end.writes.1 - start.writes.1,
    }
}

/// Every 15 s, how far the fan-out is, on stderr.
fn progress(b: &Bench, completion: Arc<Mutex<HashMap<String, Instant>>>, since: Instant) {
    let (stats, stop) = (b.stats.clone(), b.stop.clone());
    let (manager, server) = (b.pid(), b.server.pid());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            eprintln!(
                "  {:>4.0}s: {} results, {} status writes by the daemons, {} jobs complete; CPU so far: manager {:.1}s, API server {:.1}s",
                since.elapsed().as_secs_f64(),
                stats.results.load(Ordering::Relaxed),
                stats.status_writes.load(Ordering::Relaxed),
                completion.lock().unwrap().len(),
                measure::cpu_seconds(manager),
                measure::cpu_seconds(server),
            );
        }
    });
}

fn show(p: &Option<f64>) -> String {
    p.map_or("-".into(), secs)
}

/// Fan-out: `jobs` Always jobs created together over `nodes` nodes, parallelism 10 % of the
/// nodes, half over every node and half over a label (half the nodes).
async fn fanout(nodes: usize, jobs: usize, quiet: bool) -> Phase {
    let pull = Duration::from_secs(setting("BENCH_PULL_SECONDS", 20));
    let heartbeat = Duration::from_secs(setting("BENCH_HEARTBEAT_SECONDS", 60));
    let parallelism = (nodes as u64 / 10).max(1);
    let mut b = Bench::new().await;
    b.add_nodes(&node_list("node", 0, nodes)).await;
    b.start_fleet(heartbeat, pull, 5);
    b.start_manager(nodes).await;
    let (_, peak_before) = memory_mib(b.pid());
    let completion = watch_completion(&b);
    let start = mark(&b).await;
    let defs: Vec<ImagePullJob> = (0..jobs)
        .map(|j| {
            job(
                &format!("job-{j:03}"),
                "Always",
                parallelism,
                (j % 2 == 1).then_some("a"),
            )
        })
        .collect();
    let created = Instant::now();
    b.create_jobs(&defs).await;
    progress(&b, completion.clone(), created);
    let deadline = Duration::from_secs(60) + pull * 40;
    loop {
        if completion.lock().unwrap().len() >= jobs {
            break;
        }
        assert!(
            created.elapsed() < deadline,
            "not every job completed within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = created.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = phase(&b, &start).await;
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let changes = b.stats.spec_changes.lock().unwrap().clone();
        let mut by_count: std::collections::BTreeMap<usize, usize> = Default::default();
        for v in changes.values() {
            *by_count.entry(v.len()).or_default() += 1;
        }
        eprintln!("nodes by spec changes seen: {by_count:?}");
        for (n, v) in changes.iter().filter(|(_, v)| v.len() > 1).take(8) {
            let t0 = v[0].0;
            eprintln!(
                "  {n}: {:?}",
                v.iter()
                    .map(|(t, k)| (t.duration_since(t0).as_secs_f64(), *k))
                    .collect::<Vec<_>>()
            );
        }
    }
    b.debug_dump("after the fan-out").await;
    // How long after the last node's result each job said so.
    let results = b.stats.last_result.lock().unwrap().clone();
    let done = completion.lock().unwrap().clone();
    let mut lags: Vec<f64> = defs
        .iter()
        .filter_map(|d| {
            let last = results.get(&format!("registry.example.com/bench/{}:v1", d.name_any()))?;
            Some(
                done.get(&d.name_any())?
                    .saturating_duration_since(*last)
                    .as_secs_f64(),
            )
        })
        .collect();
    // The pulls alone: waves of `parallelism` nodes, each a nominal pull long.
    let waves = |targets: usize| targets.div_ceil(parallelism as usize) as f64;
    let alone = waves(nodes) * pull.as_secs_f64();
    let (_, peak) = memory_mib(b.pid());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (rest, _) = memory_mib(b.pid());
    if !quiet {
        let build = measure::build();
        println!(
            "fanout: {nodes} nodes x {jobs} jobs (parallelism {parallelism}, half over a label; simulated daemons, pulls {}s ±25%, progress every 5s; heartbeats every {}s; 5 pods/s churning; test API server; {build} kruise-manager): \
             all complete in {took:.0}s = {:.2}x the pulls alone ({alone:.0}s); manager CPU {:.1}s ({:.1}% of a core); RSS peak {peak:.0} MiB (before the jobs {peak_before:.0}), at rest {rest:.0} MiB; \
             {} rounds, p50 {}, p99 {}; NodeImage spec writes {} = {:.2} x N (floor N = {nodes}); job status writes {} (floor {jobs}); status behind the last result p50 {:.2}s p99 {:.2}s; lease renewal p99 {}",
            pull.as_secs(), heartbeat.as_secs(), took / alone, p.cpu, 100.0 * p.cpu / p.wall, p.rounds, show(&p.round_p50), show(&p.round_p99),
            p.ni_writes, p.ni_writes as f64 / nodes as f64, p.status_writes,
            percentile(&mut lags.clone(), 0.5), percentile(&mut lags, 0.99), show(&p.lease_p99),
        );
    }
    p
}

/// A settled cluster: `jobs` Never jobs done on every node, adopted by a manager started last.
async fn settled(nodes: usize, jobs: usize, heartbeat: Duration, pods: u32) -> Bench {
    let mut b = Bench::new().await;
    let list = node_list("node", 0, nodes);
    b.add_nodes(&list).await;
    let defs: Vec<ImagePullJob> = (0..jobs)
        .map(|j| {
            job(
                &format!("base-{j:03}"),
                "Never",
                (nodes as u64 / 10).max(1),
                (j % 2 == 1).then_some("a"),
            )
        })
        .collect();
    let created = b.create_jobs(&defs).await;
    nodes::settled_node_images(&b.cluster.client, &list, &created).await;
    b.start_fleet(
        heartbeat,
        Duration::from_secs(setting("BENCH_PULL_SECONDS", 20)),
        pods,
    );
    b.start_manager(nodes).await;
    // Adopted: every job counts every node it selects as done.
    let api: Api<ImagePullJob> = Api::namespaced(b.cluster.client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let l = api.list(&ListParams::default()).await.unwrap();
        if l.items.iter().all(|j| {
            j.status
                .as_ref()
                .is_some_and(|s| s.desired > 0 && s.succeeded == s.desired)
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the manager did not count the settled jobs within 10 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    b
}

/// Waits until the manager has run no round for 15 s: the counts reach their final values before
/// the manager has taken in every late event of the adoption. A manager that never goes quiet is
/// measured anyway after 5 minutes, and said so.
async fn wait_quiet(b: &Bench) {
    let rounds = || async {
        metric(
            &b.manager_metrics().await,
            "kruise_manager_reconciles_total",
            &[],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut last, mut since) = (rounds().await, Instant::now());
    while since.elapsed() < Duration::from_secs(15) {
        if Instant::now() > deadline {
            eprintln!("the manager still runs rounds 5 minutes after the cluster settled; measuring anyway");
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = rounds().await;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Steady state: a settled cluster, heartbeats every 10 s and pods churning, for a minute.
async fn steady(nodes: usize, jobs: usize) {
    let heartbeat = Duration::from_secs(setting("BENCH_HEARTBEAT_SECONDS", 10));
    let b = settled(nodes, jobs, heartbeat, 5).await;
    wait_quiet(&b).await;
    b.debug_dump("before the measured minute").await;
    let start = mark(&b).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let p = phase(&b, &start).await;
    b.debug_dump("after the measured minute").await;
    let (rss, peak) = memory_mib(b.pid());
    let inputs = metric(
        &b.manager_metrics().await,
        "kruise_manager_inputs_total",
        &["kind=\"node\""],
    );
    let build = measure::build();
    println!(
        "steady: {nodes} idle nodes heartbeating every {}s, {jobs} finished Never jobs ({} tags), 5 pods/s churning, 60 s (test API server, {build} kruise-manager): \
         manager CPU {:.2}s = {:.2}% of a core; {} rounds; {} cells looked at; {} NodeImage writes, {} job status writes; RSS {rss:.0} MiB (peak {peak:.0}); node events taken in so far {inputs:.0}",
        heartbeat.as_secs(), nodes * jobs * 3 / 4, p.cpu, 100.0 * p.cpu / p.wall, p.rounds, p.cells, p.ni_writes, p.status_writes,
    );
}

/// Day two: 100 finished Never jobs, then 10 new Always jobs while 50 nodes join and 50 leave.
async fn daytwo(nodes: usize) {
    let pull = Duration::from_secs(setting("BENCH_PULL_SECONDS", 20));
    let b = settled(nodes, 100, Duration::from_secs(60), 5).await;
    let completion = watch_completion(&b);
    let start = mark(&b).await;
    let parallelism = (nodes as u64 / 10).max(1);
    let defs: Vec<ImagePullJob> = (0..10)
        .map(|j| job(&format!("new-{j:02}"), "Always", parallelism, None))
        .collect();
    let created = Instant::now();
    b.create_jobs(&defs).await;
    let joining = node_list("late", nodes, 50);
    b.add_nodes(&joining).await;
    let leaving: Vec<String> = (0..50).map(|i| format!("node-{i:05}")).collect();
    nodes::delete(&b.cluster.client, &leaving).await;
    b.nodes.lock().unwrap().retain(|n| !leaving.contains(n));
    let deadline = Duration::from_secs(60) + pull * 40;
    loop {
        let done = completion
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("new-"))
            .count();
        if done >= 10 {
            break;
        }
        assert!(
            created.elapsed() < deadline,
            "the new jobs did not complete within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = created.elapsed().as_secs_f64();
    let p = phase(&b, &start).await;
    let (rss, peak) = memory_mib(b.pid());
    let build = measure::build();
    println!(
        "daytwo: {nodes} nodes with 100 finished Never jobs; 10 new Always jobs (parallelism {parallelism}) while 50 nodes join and 50 leave (test API server, {build} kruise-manager): \
         new jobs complete in {took:.0}s ({:.0}s of pulls alone, plus the late nodes); manager CPU {:.1}s ({:.1}% of a core); {} rounds, p50 {}, p99 {}; NodeImage spec writes {}; job status writes {}; RSS {rss:.0} MiB (peak {peak:.0})",
        (nodes as f64 / parallelism as f64).ceil() * pull.as_secs_f64(), p.cpu, 100.0 * p.cpu / p.wall, p.rounds, show(&p.round_p50), show(&p.round_p99), p.ni_writes, p.status_writes,
    );
}

/// A node storm: 500 nodes join a settled cluster of 30 Never jobs at once.
async fn storm(nodes: usize, jobs: usize) {
    let b = settled(nodes, jobs, Duration::from_secs(60), 0).await;
    let start = mark(&b).await;
    let joined = Instant::now();
    let joining = node_list("storm", nodes, 500);
    b.add_nodes(&joining).await;
    let api: Api<NodeImage> = Api::all(b.cluster.client.clone());
    let want_all = jobs; // every job selects every other node: pool a gets all, pool b half
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let l = api.list(&ListParams::default()).await.unwrap();
        let done = l
            .items
            .iter()
            .filter(|ni| ni.name_any().starts_with("storm-"))
            .filter(|ni| {
                let want = if ni.labels().get("pool").map(String::as_str) == Some("a") {
                    want_all
                } else {
                    want_all / 2 + want_all % 2
                };
                let ok = ni.status.as_ref().map_or(0, |s| {
                    s.image_statuses
                        .values()
                        .flat_map(|i| &i.tags)
                        .filter(|t| t.phase == kruise_api::TagPhase::Succeeded)
                        .count()
                });
                ok >= want
            })
            .count();
        if done >= 500 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of 500 new nodes done within 15 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took = joined.elapsed().as_secs_f64();
    let p = phase(&b, &start).await;
    let build = measure::build();
    println!(
        "storm: 500 nodes join {nodes} settled nodes with {jobs} Never jobs (test API server, {build} kruise-manager): every new node holds every tag after {took:.0}s; \
         manager CPU {:.1}s; {} rounds, p99 {}; NodeImage spec writes {} for 500 new nodes ({:.2} each; floor 1); job status writes {}",
        p.cpu, p.rounds, show(&p.round_p99), p.ni_writes, p.ni_writes as f64 / 500.0, p.status_writes,
    );
}

/// CPU per round against the changed cells, at 10, 30 and 100 jobs over 1,000 nodes.
async fn scaling() {
    for jobs in [10, 30, 100] {
        let p = fanout(1000, jobs, true).await;
        println!(
            "scaling: 1000 nodes x {jobs} jobs fan-out: {} rounds, {:.0} cells looked at; manager CPU {:.2}s = {:.0} µs per round, {:.1} µs per cell looked at",
            p.rounds, p.cells, p.cpu, 1e6 * p.cpu / p.rounds.max(1.0), 1e6 * p.cpu / p.cells.max(1.0),
        );
    }
}

#[tokio::main]
async fn main() {
    let which = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "all".into());
    let nodes = setting("BENCH_NODES", 5000) as usize;
    let jobs = setting("BENCH_JOBS", 30) as usize;
    let run = |name: &str| which == "all" || which == name;
    if run("fanout") {
        fanout(nodes, jobs, false).await;
    }
    if run("steady") {
        steady(nodes, jobs).await;
    }
    if run("daytwo") {
        daytwo(nodes).await;
    }
    if run("storm") {
        storm(nodes, jobs).await;
    }
    if run("scaling") {
        scaling().await;
    }
}
