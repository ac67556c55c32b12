//! The `revisions` scenario of the rollout bench: what the pre-download controller holds for a
//! cluster of many Deployments with a long revision history. Every Deployment is opted in and
//! keeps `revisions` ReplicaSets (the newest scaled up, the others at 0, as
//! `revisionHistoryLimit: 10` leaves them), each with a pod template of the size real ones have
//! (two containers with env, resources, probes and mounts). Nothing rolls: the figure is the
//! manager's memory at rest once it has listed them.

use std::time::{Duration, Instant};

use e2e::fleet::apiserver::ApiServer;
use e2e::fleet::measure::{self, metric};
use e2e::workloads::Workloads;
use e2e::Process;
use futures::StreamExt;
use serde_json::{json, Value};

const NS: &str = "bench";

/// A pod template as a Deployment of a typical service carries it.
fn template(app: &str, revision: usize) -> Value {
    let env: Vec<Value> = (0..8)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{app}-{i}")}))
        .collect();
    let probe = json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10});
    let image = format!("registry.example.com/team/{app}:{revision}");
    json!({
        "metadata": {"labels": {"app": app, "tier": "backend"},
                     "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
        "spec": {
            "serviceAccountName": app,
            "containers": [
                {"name": "main", "image": image, "env": env,
                 "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                               "limits": {"cpu": "1", "memory": "512Mi"}},
                 "readinessProbe": probe, "livenessProbe": probe,
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}]},
                {"name": "proxy", "image": "registry.example.com/mesh/proxy:1.22.3",
                 "args": ["proxy", "sidecar", "--log-level", "warning"],
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
            ],
            "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}}],
        },
    })
}

/// One Deployment at its newest revision, with its ReplicaSets.
async fn deployment(w: &Workloads, i: usize, revisions: usize) {
    let app = format!("d{i:04}");
    let labels = json!({"app": app});
    let deploy = w
        .create(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": app, "annotations": {"apps.kruise.io/image-predownload": "true"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                     "template": template(&app, revisions)},
        }))
        .await;
    for r in 1..=revisions {
        let replicas = if r == revisions { 3 } else { 0 };
        w.replicaset(
            &deploy,
            &format!("h{r}"),
            r as i64,
            replicas,
            &template(&app, r),
        )
        .await;
    }
    w.patch(
        &deploy,
        json!({"status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
                          "readyReplicas": 3, "availableReplicas": 3}}),
        true,
    )
    .await;
}

/// RSS (MiB) once it has changed by less than 1 MiB over 10 s.
async fn settled_rss(manager: &Process) -> f64 {
    let pid = manager.pid().expect("the manager runs");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut window: Vec<f64> = Vec::new();
    loop {
        window.push(measure::memory_mib(pid).0);
        if window.len() > 10 {
            window.remove(0);
            let (lo, hi) = window
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            if hi - lo < 1.0 {
                return hi;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the manager's RSS did not settle within 300 s: {window:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until `manager` holds `count` Deployments.
async fn wait_held(manager: &Process, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let m = manager.metrics().await;
        let held = metric(
            &m,
            "kruise_manager_predownload_workloads",
            &["kind=\"deployment\""],
        );
        if held as usize >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the manager holds {held} of {count} Deployments"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts a manager, waits until it holds `count` Deployments (none when pre-download is off)
/// and its RSS settles; returns (RSS, peak) in MiB and stops it.
async fn measure_manager(
    kubeconfig: &std::path::Path,
    count: usize,
    predownload: bool,
) -> (f64, f64) {
    let logs = tempfile::tempdir().unwrap();
    let on = if predownload { "true" } else { "false" };
    let mut manager = Process::manager_with(
        kubeconfig,
        logs.path(),
        "manager",
        &["--log-level", "warn", "--image-predownload", on],
    );
    manager.wait_ready(Duration::from_secs(120)).await;
    if predownload {
        wait_held(&manager, count).await;
    }
    let rss = settled_rss(&manager).await;
    let peak = measure::memory_mib(manager.pid().expect("the manager runs")).1;
    manager.terminate(Duration::from_secs(30)).await;
    (rss, peak)
}

pub async fn run(count: usize, revisions: usize) {
    let server = ApiServer::start();
    let cluster = server.cluster(&[NS, "kruise-daemon-config"]).await;
    let w = Workloads {
        client: cluster.client.clone(),
        ns: NS.into(),
    };
    let started = Instant::now();
    futures::stream::iter(0..count)
        .for_each_concurrent(16, |i| deployment(&w, i, revisions))
        .await;
    let written = started.elapsed().as_secs_f64();
    let (off, off_peak) = measure_manager(cluster.kubeconfig(), count, false).await;
    let (on, on_peak) = measure_manager(cluster.kubeconfig(), count, true).await;
    let build = measure::build();
    println!(
        "rollout revisions: {count} Deployments opted in with {revisions} ReplicaSets each (two-container pod templates, \
         written in {written:.0}s before the manager starts; kruise-test-apiserver process, {build} kruise-manager, no nodes or pods): \
         manager RSS at rest once it has listed them {on:.1} MiB (peak {on_peak:.1}); \
         with --image-predownload=false {off:.1} MiB (peak {off_peak:.1})"
    );
    drop(server);
}
