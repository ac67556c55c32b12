//! The daemon's overhead: the same size of image pulled (a) directly through CRI and (b) through
//! a NodeImage spec entry until the status says Succeeded, on the same containerd and registry,
//! alternating, each round with fresh content (cold pulls). Prints per-round and median figures
//! and the status writes per pulled tag. Run with `bash scripts/bench` (release build).
//!
//! The lab runs containerd 1.7 (which reports pins) on an image filesystem of its own (a tmpfs).
//! With the node guarantees on (the default; BENCH_GUARANTEES=0 turns them off), the daemon checks
//! disk space (--image-fs-max-percent 80: the manifest read from the registry, the content store
//! and statvfs consulted), and each entry carries a digest and `pin: true`, as the manager writes
//! a `Never` job's: the daemon pulls by digest, names the image after its tag and pins it.
//!
//! BENCH_ROUNDS (default 9) and BENCH_IMAGE_MB (default 50) change the run.

use std::time::{Duration, Instant};

use e2e::fleet::measure::setting;
use e2e::node::{key_and_tag, NodeImages};
use e2e::{Cluster, DaemonOptions, Process};
use futures::StreamExt;
use kruise_api::{NodeImage, TagPhase};
use kruise_cri::PullRequest;
use kruise_testlab::{ContainerdBinary, ContainerdOptions, Lab, Layer};
use kube::api::WatchParams;
use kube::core::WatchEvent;
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Time from the spec write to the watch event showing the tag Succeeded.
async fn through_daemon(
    images: &NodeImages,
    node: &str,
    reference: &str,
    extra: serde_json::Value,
) -> Duration {
    let (key, _) = key_and_tag(reference);
    let rv = images
        .api
        .get(node)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watch = images
        .api
        .watch(
            &WatchParams::default()
                .fields(&format!("metadata.name={node}"))
                .timeout(290),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let start = Instant::now();
    images
        .set_image(
            node,
            reference,
            json!({"tags": [NodeImages::tag(reference, 1, extra)]}),
        )
        .await;
    while let Some(ev) = watch.next().await {
        if let Ok(WatchEvent::Modified(ni)) = ev {
            if succeeded(&ni, &key) {
                return start.elapsed();
            }
        }
    }
    panic!("the watch ended before {reference} succeeded");
}

fn succeeded(ni: &NodeImage, key: &str) -> bool {
    ni.status
        .as_ref()
        .and_then(|s| s.image_statuses.get(key))
        .is_some_and(|i| i.tags.iter().any(|t| t.phase == TagPhase::Succeeded))
}

#[tokio::main]
async fn main() {
    let rounds = setting("BENCH_ROUNDS", 9);
    let mib = setting("BENCH_IMAGE_MB", 50) as usize;
    let guarantees = setting("BENCH_GUARANTEES", 1) != 0;
    let cluster = Cluster::start().await;
    // Room for every round's two images, compressed and unpacked, with some to spare.
    let fs_bytes = (rounds * 2 * 3 * (mib as u64) + 256) << 20;
    // The same runtime and filesystem either way, so the two runs compare.
    let lab = Lab::start_with(ContainerdOptions {
        binary: ContainerdBinary::Pinning,
        image_fs_bytes: Some(fs_bytes),
    })
    .expect("containerd lab (bash .ci/install-deps installs containerd 1.7)");
    let mut extra_args = Vec::new();
    if let Some(fs) = lab.containerd.image_fs().filter(|_| guarantees) {
        extra_args = vec![
            "--image-fs-max-percent".to_string(),
            "80".to_string(),
            "--image-fs-path".to_string(),
            fs.display().to_string(),
        ];
    }
    let logs = tempfile::tempdir().unwrap();
    let node = &cluster.name("bench-node");
    let images = NodeImages::new(cluster.client.clone());
    images.create(node).await;
    let opts = DaemonOptions {
        node: node.into(),
        runtime_endpoint: lab.cri_endpoint(),
        max_concurrent_pulls: 2,
        image_check_interval: "24h".into(),
        progress_interval: "30s".into(),
        extra_args,
    };
    let mut daemon = Process::daemon(cluster.kubeconfig(), &opts, logs.path());
    daemon.wait_ready(Duration::from_secs(60)).await;
    let cri = kruise_cri::detect(Some(&lab.cri_endpoint()), std::path::Path::new("/none"))
        .await
        .unwrap()
        .client;
    // Status writes seen by a watch of this NodeImage: the same count on any API server.
    let status_writes = e2e::node::StatusWrites::start(images.api.clone(), node);

    let server = std::env::var("E2E_KUBECONFIG").map_or_else(
        |_| "the test API server".to_string(),
        |p| format!("the API server of {p}"),
    );
    let with = if guarantees {
        "with the node guarantees on (containerd 1.7, pin + digest + disk-space admission at 80% of its own image filesystem)"
    } else {
        "with the node guarantees off (BENCH_GUARANTEES=0: containerd 1.7 on its own image filesystem, no pin, digest or admission)"
    };
    println!(
        "daemon overhead: {rounds} rounds, {mib} MiB single-layer images, cold pulls on the lab's containerd \
         from a registry over loopback; one kruise-daemon (--max-concurrent-pulls 2), {server}; {with}"
    );
    println!(
        "{:>5} {:>12} {:>12} {:>12}",
        "round", "direct ms", "daemon ms", "overhead ms"
    );
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    // What the manager writes for a resolved `Never` job: its digest, and a pin.
    let extra = |img: &kruise_testlab::PushedImage| {
        if guarantees {
            json!({"digest": img.manifest_digest, "pin": true})
        } else {
            json!({})
        }
    };
    for r in 0..rounds {
        let a = lab
            .push(
                &lab.registry,
                &format!("bench/direct{r}"),
                "v1",
                &[Layer::random("blob", mib << 20, 10_000 + r)],
            )
            .unwrap();
        let b = lab
            .push(
                &lab.registry,
                &format!("bench/daemon{r}"),
                "v1",
                &[Layer::random("blob", mib << 20, 20_000 + r)],
            )
            .unwrap();
        let pull_direct = async {
            let t = Instant::now();
            cri.pull_image(
                PullRequest {
                    image: a.reference.clone(),
                    ..Default::default()
                },
                Some(Duration::from_secs(300)),
            )
            .await
            .unwrap();
            t.elapsed()
        };
        // Alternate which goes first, so neither always gets a warmer page cache.
        let (d, v) = if r % 2 == 0 {
            let d = pull_direct.await;
            (
                d,
                through_daemon(&images, node, &b.reference, extra(&b)).await,
            )
        } else {
            let v = through_daemon(&images, node, &b.reference, extra(&b)).await;
            (pull_direct.await, v)
        };
        println!(
            "{r:>5} {:>12.1} {:>12.1} {:>12.1}",
            d.as_secs_f64() * 1e3,
            v.as_secs_f64() * 1e3,
            (v.as_secs_f64() - d.as_secs_f64()) * 1e3
        );
        direct.push(d.as_secs_f64());
        via.push(v.as_secs_f64());
    }
    let writes = status_writes.count();
    // Pulls vary from round to round more than the daemon adds, so the overhead is taken per
    // round (each pair ran back to back) and its median reported.
    let diffs: Vec<f64> = direct.iter().zip(&via).map(|(d, v)| v - d).collect();
    let ratios: Vec<f64> = direct.iter().zip(&via).map(|(d, v)| v / d - 1.0).collect();
    println!(
        "median direct {:.1} ms, through the daemon {:.1} ms; per-round overhead: median {:.1} ms, median {:+.1}%",
        median(direct.clone()) * 1e3,
        median(via.clone()) * 1e3,
        median(diffs) * 1e3,
        median(ratios) * 100.0
    );
    println!(
        "status writes per pulled tag: {:.2} ({writes} writes for {rounds} tags)",
        writes as f64 / rounds as f64
    );
    if guarantees {
        // Every pulled image was pinned, and the runtime says so; a counter that cannot be read
        // fails the run.
        let metrics = daemon.metrics().await;
        let pinned = metrics
            .lines()
            .find(|l| l.starts_with("kruise_daemon_pins_total{result=\"pinned\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .expect("kruise_daemon_pins_total{result=\"pinned\"} is exported");
        println!("pinned by the daemon: {pinned} of {rounds} images");
        assert_eq!(
            pinned, rounds,
            "every image pulled through the daemon is pinned"
        );
    }
    assert!(daemon.terminate(Duration::from_secs(15)).await.success());
}
