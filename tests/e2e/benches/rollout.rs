//! The rollout pre-download controller, two scenarios (`all` runs both):
//! - `reaction`: `BENCH_NODES` nodes (1000) and `BENCH_WORKLOADS` CloneSets (50) of
//!   `BENCH_REPLICAS` pods (20) spread over them, all rolled to a new image at once the way the
//!   CloneSet controller writes it (spec, new ControllerRevision, status). Prints the time from
//!   each template change to its ImagePullJob existing and to the first NodeImage listing the new
//!   image, with the conditions.
//! - `revisions`: `BENCH_DEPLOYMENTS` Deployments (2000) opted in to pre-download, with
//!   `BENCH_REVISIONS` ReplicaSets each (10), written before the manager starts. Prints the
//!   manager's RSS once it has listed them and its RSS has settled, next to a manager with
//!   pre-download off on the same cluster.
//!
//! Nothing is asserted on timings or sizes.
//!
//!   cargo bench -p e2e --bench rollout [-- all|reaction|revisions]   (`bash scripts/bench rollout`)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::fleet::apiserver::ApiServer;
use e2e::fleet::measure::{self, metric, percentile, setting};
use e2e::fleet::nodes;
use e2e::workloads::{install_openkruise_crds, template, CloneSetUpdate, Crds, Workloads};
use e2e::Process;
use futures::StreamExt;
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::ListParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde_json::{json, Value};

#[path = "rollout/revisions.rs"]
mod revisions;

const NS: &str = "bench";

fn image(w: usize, v: u32) -> String {
    format!("registry.example.com/bench/w{w:02}:{v}")
}

/// First time each key was seen.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Records when each pre-download job appears (by the workload it is for).
fn watch_jobs(client: kube::Client, seen: Seen) {
    let api: Api<ImagePullJob> = Api::namespaced(client, NS);
    tokio::spawn(async move {
        let mut s = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(j)) = s.next().await {
            seen.lock()
                .unwrap()
                .entry(j.spec.image.clone())
                .or_insert_with(Instant::now);
        }
    });
}

/// Records when each image first shows in a NodeImage spec.
fn watch_tags(client: kube::Client, seen: Seen) {
    let api: Api<NodeImage> = Api::all(client);
    tokio::spawn(async move {
        let mut s = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(ni)) = s.next().await {
            let now = Instant::now();
            let mut seen = seen.lock().unwrap();
            for (key, img) in &ni.spec.images {
                for t in &img.tags {
                    seen.entry(format!("{key}:{}", t.tag)).or_insert(now);
                }
            }
        }
    });
}

/// One CloneSet at revision 1 with `replicas` Ready pods on pseudo-random nodes.
async fn workload(w: &Workloads, i: usize, nodes: &[String], replicas: usize) -> Value {
    let name = format!("w{i:02}");
    let labels = json!({"app": name});
    let update = CloneSetUpdate {
        in_place: true,
        max_unavailable: Some(json!(1)),
        ..Default::default()
    };
    let mut cs =
        e2e::workloads::cloneset(&name, &image(i, 1), Crds::Main.version("CloneSet"), &update);
    cs["spec"]["replicas"] = replicas.into();
    let cs = w.create(cs).await;
    let v1 = format!("{name}-v1");
    w.revision(
        &cs,
        &v1,
        "v1",
        1,
        &template(&labels, &[("main", &image(i, 1))]),
    )
    .await;
    let mut rng = fastrand::Rng::with_seed(i as u64);
    futures::stream::iter(0..replicas)
        .for_each_concurrent(8, |p| {
            let node = nodes[rng.usize(..nodes.len())].clone();
            let labels = json!({"app": name, "controller-revision-hash": v1});
            let (cs, name, img) = (&cs, &name, image(i, 1));
            async move {
                w.pod(cs, &format!("{name}-{p}"), &node, labels, &img).await;
            }
        })
        .await;
    w.patch(
        &cs,
        json!({"status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas, "currentRevision": v1,
            "updateRevision": v1, "updatedReplicas": replicas, "updatedReadyReplicas": replicas}}),
        true,
    )
    .await;
    cs
}

/// What the CloneSet controller writes when the template changes to revision 2.
async fn roll(w: &Workloads, i: usize, cs: &Value) {
    let name = format!("w{i:02}");
    let labels = json!({"app": name});
    let t2 = template(&labels, &[("main", &image(i, 2))]);
    w.patch(cs, json!({"spec": {"template": t2}}), false).await;
    w.revision(cs, &format!("{name}-v2"), "v2", 2, &t2).await;
    w.patch(
        cs,
        json!({"status": {"observedGeneration": 2, "updateRevision": format!("{name}-v2"),
            "updatedReplicas": 0, "updatedReadyReplicas": 0}}),
        true,
    )
    .await;
}

fn stats(mut v: Vec<f64>) -> String {
    let (p50, p99) = (percentile(&mut v, 0.5), percentile(&mut v, 0.99));
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    format!("p50 {p50:.2}s, p99 {p99:.2}s, max {max:.2}s")
}

#[tokio::main]
async fn main() {
    let which = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "all".into());
    let run = |name: &str| which == "all" || which == name;
    assert!(
        run("reaction") || run("revisions"),
        "unknown scenario {which:?}: all, reaction or revisions"
    );
    if run("reaction") {
        reaction().await;
    }
    if run("revisions") {
        revisions::run(
            setting("BENCH_DEPLOYMENTS", 2000),
            setting("BENCH_REVISIONS", 10),
        )
        .await;
    }
}

async fn reaction() {
    let n = setting("BENCH_NODES", 1000);
    let count = setting("BENCH_WORKLOADS", 50);
    let replicas = setting("BENCH_REPLICAS", 20);
    let server = ApiServer::start();
    let cluster = server.cluster(&[NS, "kruise-daemon-config"]).await;
    install_openkruise_crds(&cluster, Crds::Main).await;
    let names: Vec<(String, Value)> = (0..n)
        .map(|i| (format!("node-{i:05}"), json!({})))
        .collect();
    nodes::create(&cluster.client, &names).await;
    let nodes: Vec<String> = names.into_iter().map(|(n, _)| n).collect();
    let logs = tempfile::tempdir().unwrap();
    let mut manager = Process::manager_with(
        cluster.kubeconfig(),
        logs.path(),
        "manager",
        &[
            "--log-level",
            "warn",
            "--leader-election-lease-duration",
            "15s",
        ],
    );
    manager.wait_ready(Duration::from_secs(120)).await;
    let ni: Api<NodeImage> = Api::all(cluster.client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    while ni
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
        < n
    {
        assert!(
            Instant::now() < deadline,
            "the manager did not create every NodeImage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let w = Workloads {
        client: cluster.client.clone(),
        ns: NS.into(),
    };
    let created: Vec<Value> = futures::stream::iter(0..count)
        .map(|i| workload(&w, i, &nodes, replicas))
        .buffered(4)
        .collect()
        .await;
    // The manager holds every CloneSet before the rollouts start.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = manager.metrics().await;
        let held = metric(
            &m,
            "kruise_manager_predownload_workloads",
            &["kind=\"cloneset\""],
        );
        if held as usize >= count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the manager holds {held} of {count} CloneSets"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (jobs, tags): (Seen, Seen) = Default::default();
    watch_jobs(cluster.client.clone(), jobs.clone());
    watch_tags(cluster.client.clone(), tags.clone());
    tokio::time::sleep(Duration::from_secs(1)).await; // the watches have listed
    let cpu_before = measure::cpu_seconds(manager.pid().expect("the manager runs"));
    let started: Vec<Instant> = futures::stream::iter(created.iter().enumerate())
        .map(|(i, cs)| {
            let w = &w;
            async move {
                let t = Instant::now();
                roll(w, i, cs).await;
                t
            }
        })
        .buffered(count)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (to_job, to_tag) = loop {
        let (j, t) = (jobs.lock().unwrap().clone(), tags.lock().unwrap().clone());
        let to_job: Vec<f64> = (0..count)
            .filter_map(|i| {
                Some(
                    j.get(&image(i, 2))?
                        .duration_since(started[i])
                        .as_secs_f64(),
                )
            })
            .collect();
        let to_tag: Vec<f64> = (0..count)
            .filter_map(|i| {
                let key = format!("{}:2", image(i, 2).trim_end_matches(":2"));
                Some(t.get(&key)?.duration_since(started[i]).as_secs_f64())
            })
            .collect();
        if to_job.len() == count && to_tag.len() == count {
            break (to_job, to_tag);
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s: {} of {count} jobs, {} first tags",
            to_job.len(),
            to_tag.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu = measure::cpu_seconds(manager.pid().expect("the manager runs")) - cpu_before;
    let build = measure::build();
    println!(
        "rollout: {count} CloneSets of {replicas} pods over {n} nodes rolled at once (kruise-test-apiserver process, {build} kruise-manager, no daemons; \
         each rollout written as the CloneSet controller writes it): template change to ImagePullJob {}; to the first NodeImage tag {}; manager CPU {cpu:.2}s",
        stats(to_job),
        stats(to_tag),
    );
    drop(server);
}
