//! Fan-out cost at scale: BENCH_NODES Nodes (default 5000) with their NodeImages, then
//! BENCH_JOBS Never jobs (default 30) created together, each allowed on every node at once.
//! Measures the NodeImage writes, job status writes and time until every job has its tag on every
//! node, and kruise-manager's memory. No daemons run: this is the manager's side only. The API
//! server is the project's test server, so write counts are exact (its request counters).
//! Run with `bash scripts/bench fanout` (release build).

use std::time::{Duration, Instant};

use e2e::{wait_for, Cluster, Process};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let nodes = env_or("BENCH_NODES", 5000);
    let jobs = env_or("BENCH_JOBS", 30);
    let cluster = Cluster::start().await;
    let logs = tempfile::tempdir().unwrap();
    println!("fan-out: {nodes} nodes, {jobs} jobs created together, parallelism = every node");

    let t = Instant::now();
    let node_api: Api<Node> = Api::all(cluster.client.clone());
    futures::stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": format!("node-{i:05}"), "labels": {"pool": if i % 2 == 0 { "a" } else { "b" }}},
                    "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
                }))
                .unwrap();
                api.create(&PostParams::default(), &node).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    println!("created {nodes} Nodes in {:.1}s", t.elapsed().as_secs_f64());

    let mut manager = Process::manager(cluster.kubeconfig(), logs.path(), "manager");
    manager.wait_ready(Duration::from_secs(120)).await;
    let ni_api: Api<NodeImage> = Api::all(cluster.client.clone());
    let t = Instant::now();
    wait_for("a NodeImage per Node", Duration::from_secs(600), || async {
        let n = ni_api
            .list_metadata(&ListParams::default())
            .await
            .ok()?
            .items
            .len();
        (n == nodes).then_some(())
    })
    .await;
    println!(
        "manager created {nodes} NodeImages in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let rss_idle = manager.rss_kib().unwrap_or(0);

    let count = |verb: &'static str, resource: &'static str, sub: &'static str| {
        let c = &cluster;
        async move { c.request_count(verb, resource, sub).await.unwrap_or(0) }
    };
    let ni_writes_before = count("patch", "nodeimages.apps.kruise.io", "").await;
    let status_before = count("patch", "imagepulljobs.apps.kruise.io", "status").await;
    let job_api: Api<ImagePullJob> = Api::namespaced(cluster.client.clone(), "default");
    let t = Instant::now();
    for j in 0..jobs {
        let job: ImagePullJob = serde_json::from_value(json!({
            "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "metadata": {"name": format!("job-{j:02}")},
            "spec": {"image": format!("registry.example.com/base/image-{j:02}:v1"), "parallelism": nodes, "completionPolicy": {"type": "Never"}},
        }))
        .unwrap();
        job_api.create(&PostParams::default(), &job).await.unwrap();
    }
    wait_for(
        "every job to have its tag on every node",
        Duration::from_secs(900),
        || async {
            let list = job_api.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|j| {
                    j.status
                        .as_ref()
                        .is_some_and(|s| s.desired == nodes as i32 && s.active == nodes as i32)
                })
                .then_some(())
        },
    )
    .await;
    let elapsed = t.elapsed();
    // Let trailing writes land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ni_writes = count("patch", "nodeimages.apps.kruise.io", "").await - ni_writes_before;
    let status_writes =
        count("patch", "imagepulljobs.apps.kruise.io", "status").await - status_before;
    let rss_busy = manager.rss_kib().unwrap_or(0);
    let rss_peak = manager.peak_rss_kib().unwrap_or(0);
    println!(
        "all {jobs} tags on all {nodes} nodes after {:.1}s",
        elapsed.as_secs_f64()
    );
    println!(
        "NodeImage writes: {ni_writes} ({:.2} per node; one write per node per job would be {})",
        ni_writes as f64 / nodes as f64,
        nodes * jobs
    );
    println!(
        "job status writes: {status_writes} ({:.1} per job)",
        status_writes as f64 / jobs as f64
    );
    println!("kruise-manager RSS: {:.1} MiB with {nodes} empty NodeImages, {:.1} MiB with {} tags placed, peak {:.1} MiB", rss_idle as f64 / 1024.0, rss_busy as f64 / 1024.0, nodes * jobs, rss_peak as f64 / 1024.0);
    assert!(manager.terminate(Duration::from_secs(30)).await.success());
}
