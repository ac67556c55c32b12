//! Registry egress with and without peer-to-peer copies (issue #18): N simulated nodes on this
//! machine, each a real containerd of its own (own root, state and socket) and a real
//! kruise-daemon serving peers on a loopback address of its own, the real kruise-manager, the
//! project's test API server, and a registry behind a proxy that caps its egress for all
//! clients together. One ImagePullJob (parallelism N) pulls a multi-layer image of random
//! (incompressible) bytes, three ways, each on fresh nodes and a fresh registry:
//! - `solo`: one node alone, the single-node time at that bandwidth;
//! - `registry`: N nodes, the manager planning no peers (today's behaviour, `--peer-port 0`);
//! - `peers`: N nodes, the manager planning peers (`--registry-budget`, `--peer-fanout`).
//!
//! Prints, per run: registry bytes served (counted at the proxy, all responses) per image,
//! time from the job's creation until every node holds the image, bytes by source from the
//! job's status, and the CPU seconds of the daemons and of the containerds (from /proc; an
//! unreadable counter fails the run), with their sum over the machine's cores: on one machine
//! all nodes share its cores, so that is the least time the copies and unpacks can take here. Run with `bash scripts/bench p2p` (release build).
//!
//! BENCH_NODES (16), BENCH_IMAGE_MB (200), BENCH_LAYERS (8), BENCH_REGISTRY_MIBPS (20),
//! BENCH_BUDGET (1), BENCH_FANOUT (2), BENCH_RUNS (`solo,registry,peers`).

use std::time::{Duration, Instant};

use e2e::fleet::measure::setting;
use e2e::{manifest, Cluster, System};
use kruise_testlab::Layer;
use serde_json::json;

struct Figures {
    run: String,
    nodes: usize,
    seconds: f64,
    registry_bytes_served: u64,
    status_registry: i64,
    status_peers: i64,
    daemon_cpu: f64,
    /// CPU seconds of the nodes' containerds (writing, hashing and unpacking what they got).
    containerd_cpu: f64,
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat (the daemon's CPU): {e}"));
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

async fn run(name: &str, nodes: usize, peers: bool) -> (Figures, u64) {
    let mib = setting("BENCH_IMAGE_MB", 200u64);
    let layers = setting("BENCH_LAYERS", 8u64);
    let cap = setting("BENCH_REGISTRY_MIBPS", 20u64) << 20;
    let (budget, fanout) = (setting("BENCH_BUDGET", 1u32), setting("BENCH_FANOUT", 2u32));
    let mut sys = System::without_manager(Cluster::local()).await;
    let mut setup = sys.peer_setup().await;
    let layer_bytes = (mib << 20) / layers;
    let layers: Vec<Layer> = (0..layers)
        .map(|i| Layer::random(&format!("l{i}"), layer_bytes as usize, 100 + i))
        .collect();
    let built = Instant::now();
    let image = sys
        .lab
        .push(&sys.lab.registry, "bench/p2p", "v1", &layers)
        .expect("image pushed");
    eprintln!(
        "[{name}] image of {} bytes built and pushed in {:.1}s",
        image.size,
        built.elapsed().as_secs_f64()
    );
    let proxy = sys.lab.slow_proxy(&sys.lab.registry, 0).expect("proxy");
    proxy.set_total_rate(cap);
    let reference = image
        .reference
        .replacen(&sys.lab.registry.host(), &proxy.host(), 1);
    let args = if peers {
        setup.manager_args(budget, fanout)
    } else {
        vec!["--peer-port".into(), "0".into()]
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m = sys.manager_process("manager", &args);
    m.wait_ready(e2e::DEADLINE).await;
    sys.manager = Some(m);
    let ports = [sys.lab.registry.port(), proxy.port()];
    for i in 0..nodes {
        sys.add_peer_node(
            &mut setup,
            &format!("n{i}"),
            json!({}),
            &ports,
            &["--peer-max-uploads", &fanout.to_string()],
        )
        .await;
    }
    let pids: Vec<u32> = sys
        .daemons
        .iter()
        .map(|d| d.pid().expect("daemon running"))
        .collect();
    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let runtimes: Vec<u32> = (sys.runtimes.iter())
        .map(|r| r.pid().expect("containerd running"))
        .collect();
    let runtime_cpu_before: f64 = runtimes.iter().map(|p| cpu_seconds(*p)).sum();
    let served_before = proxy.bytes_sent();
    let start = Instant::now();
    sys.apply_job(manifest(
        "v1beta1",
        "bench",
        &reference,
        json!({
            "parallelism": nodes, "completionPolicy": {"type": "Always"},
            "pullPolicy": {"timeoutSeconds": 1800, "backoffLimit": 1},
        }),
    ))
    .await;
    let st = e2e::wait_for(
        "every node holds the image",
        Duration::from_secs(1800),
        || async {
            let j = sys.jobs().get_opt("bench").await.ok().flatten()?;
            j.status
                .filter(|s| s.succeeded as usize == nodes || s.failed > 0)
        },
    )
    .await;
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(st.failed, 0, "[{name}] nodes failed: {st:#?}");
    let daemon_cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
    let containerd_cpu = runtimes.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - runtime_cpu_before;
    let figures = Figures {
        run: name.to_string(),
        nodes,
        seconds,
        registry_bytes_served: proxy.bytes_sent() - served_before,
        status_registry: st.registry_bytes.unwrap_or(0),
        status_peers: st.peer_bytes.unwrap_or(0),
        daemon_cpu,
        containerd_cpu,
    };
    (figures, image.size)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nodes = setting("BENCH_NODES", 16usize);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs = std::env::var("BENCH_RUNS").unwrap_or_else(|_| "solo,registry,peers".into());
    let mut rows = Vec::new();
    let mut image_size = 0;
    for r in runs.split(',').map(str::trim) {
        let (figures, size) = match r {
            "solo" => run("solo", 1, false).await,
            "registry" => run("registry", nodes, false).await,
            "peers" => run("peers", nodes, true).await,
            other => panic!("BENCH_RUNS: unknown run {other:?} (solo, registry, peers)"),
        };
        image_size = size;
        eprintln!("[{r}] done in {:.1}s", figures.seconds);
        rows.push(figures);
    }
    let solo = rows.iter().find(|f| f.run == "solo").map(|f| f.seconds);
    println!(
        "p2p: image {:.0} MiB in {} layers, registry capped at {} MiB/s for all clients, budget {} fanout {}; test API server, real containerd 1.6 per node, release binaries, {cores} cores shared by every node",
        image_size as f64 / 1048576.0,
        setting("BENCH_LAYERS", 8u64),
        setting("BENCH_REGISTRY_MIBPS", 20u64),
        setting("BENCH_BUDGET", 1u32),
        setting("BENCH_FANOUT", 2u32),
    );
    println!(
        "{:<9} {:>5} {:>9} {:>8} {:>13} {:>11} {:>13} {:>11} {:>15} {:>12}",
        "run",
        "nodes",
        "time s",
        "x solo",
        "registry/img",
        "status reg",
        "status peers",
        "daemon cpu",
        "containerd cpu",
        "cpu / cores"
    );
    for f in &rows {
        println!(
            "{:<9} {:>5} {:>9.1} {:>8} {:>13.2} {:>11} {:>13} {:>11.1} {:>15.1} {:>12.1}",
            f.run,
            f.nodes,
            f.seconds,
            solo.map_or("-".into(), |s| format!("{:.2}", f.seconds / s)),
            f.registry_bytes_served as f64 / image_size as f64,
            kruise_api::units::bytes(f.status_registry as u64),
            kruise_api::units::bytes(f.status_peers as u64),
            f.daemon_cpu,
            f.containerd_cpu,
            (f.daemon_cpu + f.containerd_cpu) / cores as f64,
        );
    }
}
