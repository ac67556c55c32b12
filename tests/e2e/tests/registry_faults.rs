//! Registry faults a fleet meets every day, each injected by the lab's proxy in front of the
//! real registry, pulled by a real containerd 1.6 for the real kruise-daemon: a rate limit
//! (429), 5xx in a burst, a connection cut mid-layer, a registry slower than the tag's timeout.
//! Each ends as the README says, within the tag's `backoffLimit + 1` attempts, counted by the
//! daemon (`kruise_daemon_pull_attempts_total`) and at the proxy.

use std::time::Duration;

use e2e::node::NodeImages;
use e2e::{wait_for, Cluster, DaemonOptions, Process};
use k8s_openapi::jiff::Timestamp;
use kruise_api::TagPhase;
use kruise_testlab::{Fault, Lab, Lasting, Layer, PushedImage, SlowProxy, Target};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

struct Env {
    _cluster: Cluster,
    lab: Lab,
    images: NodeImages,
    proxy: SlowProxy,
    node: String,
    daemon: Process,
    _logs: tempfile::TempDir,
}

impl Env {
    /// The lab, an unthrottled proxy in front of its open registry, and a ready daemon.
    async fn start() -> Self {
        let cluster = Cluster::start().await;
        let images = cluster.node_images();
        let lab = Lab::start().expect("containerd lab");
        let proxy = lab.slow_proxy(&lab.registry, 0).expect("proxy started");
        let logs = tempfile::tempdir().unwrap();
        let node = cluster.name("n");
        images.create(&node).await;
        let opts = DaemonOptions::local(&node, lab.cri_endpoint());
        let mut daemon = Process::daemon(cluster.kubeconfig(), &opts, logs.path());
        daemon.wait_ready(MINUTE).await;
        Self {
            _cluster: cluster,
            lab,
            images,
            proxy,
            node,
            daemon,
            _logs: logs,
        }
    }

    /// An image in the open registry, and its reference through the proxy.
    fn push(&self, repo: &str, layer: Layer) -> (PushedImage, String) {
        let img = self
            .lab
            .push(&self.lab.registry, repo, "v1", &[layer])
            .expect("image pushed");
        let through_proxy = img
            .reference
            .replace(&self.lab.registry.host(), &self.proxy.host());
        (img, through_proxy)
    }

    async fn want(&self, reference: &str, policy: Value) {
        let extra = json!({ "pullPolicy": policy });
        self.images.want(&self.node, reference, 1, extra).await;
    }

    async fn message(&self, reference: &str) -> Option<String> {
        self.images.tag_status(&self.node, reference).await?.message
    }

    /// `kruise_daemon_pull_attempts_total{result}`, 0 when not exported yet.
    async fn attempts(&self, result: &str) -> u64 {
        let prefix = format!("kruise_daemon_pull_attempts_total{{result=\"{result}\"}} ");
        self.daemon
            .metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or(0)
    }
}

/// The time in "…, retrying at <RFC 3339>".
fn retrying_at(message: &str) -> Timestamp {
    let at = message.rsplit(' ').next().unwrap_or_default();
    at.parse()
        .unwrap_or_else(|e| panic!("no RFC 3339 time at the end of {message:?}: {e}"))
}

#[tokio::test]
async fn a_rate_limit_holds_every_tag_of_the_host_until_the_registry_relents() {
    let env = Env::start().await;
    let (_, a) = env.push("lab/rl-a", Layer::random("a", 1 << 20, 101));
    let (_, b) = env.push("lab/rl-b", Layer::random("b", 1 << 20, 102));
    let limit = Fault::TooManyRequests {
        retry_after_secs: 30,
    };
    env.proxy.inject(limit, Target::Any, Lasting::UntilCleared);
    let host = env.proxy.host();
    let said = format!("rate-limited by the registry {host}, retrying at ");

    env.want(&a, json!({"backoffLimit": 3})).await;
    let waiting = wait_for("tag a to say it is rate-limited", MINUTE, || async {
        env.message(&a).await.filter(|m| m.starts_with(&said))
    })
    .await;
    let ahead = (retrying_at(&waiting) - Timestamp::now()).get_seconds();
    assert!(
        (0..=15).contains(&ahead),
        "{waiting}: retrying {ahead}s ahead"
    );

    // Tag b of the same registry arrives during the backoff: it waits, saying so, and does not
    // knock on the registry meanwhile.
    env.want(&b, json!({"backoffLimit": 3})).await;
    let b_waiting = wait_for("tag b to wait for the same registry", MINUTE, || async {
        let s = env.images.tag_status(&env.node, &b).await?;
        s.message
            .filter(|m| m.starts_with(&said))
            .map(|m| (s.phase, m))
    })
    .await;
    assert_eq!(b_waiting.0, TagPhase::Waiting, "{}", b_waiting.1);
    assert_eq!(
        env.proxy.requests_for("/lab/rl-b/"),
        0,
        "tag b sent nothing while the host backs off"
    );

    env.proxy.clear_fault();
    for r in [&a, &b] {
        let done = env
            .images
            .wait_phase(&env.node, r, TagPhase::Succeeded, 1, MINUTE)
            .await;
        assert_eq!(done.message, None);
    }
    let limited = env.attempts("rate_limited").await;
    let total = limited + env.attempts("succeeded").await;
    assert!(limited >= 1, "a rate-limited attempt was counted");
    assert!(
        total <= 2 * 4,
        "{total} attempts for 2 tags of backoffLimit 3"
    );
    eprintln!(
        "rate limit: {limited} limited attempts, {} requests at the proxy",
        env.proxy.requests()
    );
}

#[tokio::test]
async fn server_errors_in_a_burst_are_retried_within_the_backoff_limit() {
    let env = Env::start().await;
    let (img, r) = env.push("lab/burst", Layer::random("f", 1 << 20, 111));
    // containerd tries a 5xx manifest twice per PullImage: four answers fail two attempts.
    env.proxy
        .inject(Fault::Status(503), Target::Manifests, Lasting::Requests(4));
    env.want(&r, json!({"backoffLimit": 3})).await;
    let done = env
        .images
        .wait_phase(&env.node, &r, TagPhase::Succeeded, 1, MINUTE)
        .await;
    assert!(done.image_id.unwrap().ends_with(&img.config_digest));
    assert_eq!(env.proxy.faults_injected(), 4, "the whole burst was met");
    let failed = env.attempts("registry_error").await;
    assert!((1..=3).contains(&failed), "{failed} failed attempts");
    assert_eq!(env.attempts("succeeded").await, 1);
}

#[tokio::test]
async fn a_connection_cut_mid_layer_is_resumed_by_the_runtime() {
    let env = Env::start().await;
    let (img, r) = env.push("lab/cut-once", Layer::random("c", 4 << 20, 121));
    env.proxy.inject(
        Fault::CutBlobAfter(1 << 20),
        Target::Blobs,
        Lasting::Requests(1),
    );
    env.want(&r, json!({"backoffLimit": 3})).await;
    let done = env
        .images
        .wait_phase(&env.node, &r, TagPhase::Succeeded, 1, MINUTE)
        .await;
    assert!(done.image_id.unwrap().ends_with(&img.config_digest));
    assert_eq!(env.proxy.faults_injected(), 1);
    let lines = env.proxy.request_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/lab/cut-once/blobs/") && l.contains("Range: bytes=")),
        "containerd asked for the rest of the layer: {lines:?}"
    );
    assert_eq!(env.attempts("succeeded").await, 1, "within one attempt");
}

#[tokio::test]
async fn a_connection_cut_before_every_layer_fails_after_the_backoff_limit() {
    let env = Env::start().await;
    let (_, r) = env.push("lab/cut-always", Layer::random("c", 1 << 20, 131));
    // Inside the response head: no byte of a blob ever arrives.
    env.proxy.inject(
        Fault::CutBlobAfter(200),
        Target::Blobs,
        Lasting::UntilCleared,
    );
    env.want(&r, json!({"backoffLimit": 1})).await;
    let failed = env
        .images
        .wait_phase(&env.node, &r, TagPhase::Failed, 1, MINUTE)
        .await;
    let msg = failed.message.unwrap();
    assert!(
        msg.starts_with("failed after 2 attempts: the registry is unreachable: ")
            && msg.ends_with("connection broken: unexpected EOF"),
        "{msg}"
    );
    assert_eq!(env.attempts("registry_unreachable").await, 2);
    assert_eq!(env.attempts("succeeded").await, 0);
}

#[tokio::test]
async fn a_registry_slower_than_the_timeout_fails_each_attempt_with_the_timeout() {
    let env = Env::start().await;
    let (_, r) = env.push("lab/stalled", Layer::random("s", 1 << 20, 141));
    env.proxy.inject(
        Fault::Stall(Duration::from_secs(120)),
        Target::Any,
        Lasting::UntilCleared,
    );
    env.want(&r, json!({"timeoutSeconds": 2, "backoffLimit": 1}))
        .await;
    let failed = env
        .images
        .wait_phase(&env.node, &r, TagPhase::Failed, 1, MINUTE)
        .await;
    assert_eq!(
        failed.message.as_deref(),
        Some("failed after 2 attempts: timed out after 2s (pullPolicy.timeoutSeconds)")
    );
    assert_eq!(env.attempts("timeout").await, 2);
    assert_eq!(
        env.proxy.faults_injected(),
        2,
        "one stalled request per attempt: {:?}",
        env.proxy.request_lines()
    );
    // The cancelled attempts left no request held open at the proxy.
    wait_for("the stalled connections to close", MINUTE, || async {
        (env.proxy.active_connections() == 0).then_some(())
    })
    .await;
}
