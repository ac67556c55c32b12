//! kruise-daemon as a process: a real containerd and registries on loopback, the API server of
//! the harness, and the test standing in for the manager by writing NodeImage specs.

use std::time::Duration;

use base64::Engine;
use e2e::node::{events, key_and_tag, NodeImages};
use e2e::{wait_for, Cluster, DaemonOptions, Process};
use k8s_openapi::api::core::v1::Secret;
use kruise_api::TagPhase;
use kruise_testlab::{Lab, Layer};
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

struct Env {
    cluster: Cluster,
    lab: Lab,
    images: NodeImages,
    logs: tempfile::TempDir,
}

impl Env {
    async fn start() -> Self {
        Self::on(Cluster::start().await)
    }

    /// On `cluster` ([`Cluster::local`] for tests that inject faults).
    fn on(cluster: Cluster) -> Self {
        let images = cluster.node_images();
        Self {
            cluster,
            lab: Lab::start().expect("containerd lab"),
            images,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    /// A NodeImage for `node` and a ready daemon serving it.
    async fn daemon(&self, node: &str, max_pulls: u32) -> Process {
        if self.images.api.get_opt(node).await.unwrap().is_none() {
            self.images.create(node).await;
        }
        let opts = DaemonOptions {
            max_concurrent_pulls: max_pulls,
            ..DaemonOptions::local(node, self.lab.cri_endpoint())
        };
        let mut d = Process::daemon(self.cluster.kubeconfig(), &opts, self.logs.path());
        d.wait_ready(MINUTE).await;
        d
    }

    /// An image in the open registry.
    fn push(&self, repo: &str, tag: &str, layer: Layer) -> kruise_testlab::PushedImage {
        self.lab
            .push(&self.lab.registry, repo, tag, &[layer])
            .expect("image pushed")
    }

    /// A throttling proxy to the open registry, and `img`'s reference through it.
    fn slow(
        &self,
        img: &kruise_testlab::PushedImage,
        bytes_per_second: u64,
    ) -> (kruise_testlab::SlowProxy, String) {
        let proxy = self
            .lab
            .slow_proxy(&self.lab.registry, bytes_per_second)
            .expect("proxy started");
        let reference = img
            .reference
            .replace(&self.lab.registry.host(), &proxy.host());
        (proxy, reference)
    }

    async fn cri(&self) -> kruise_cri::CriClient {
        kruise_cri::detect(
            Some(&self.lab.cri_endpoint()),
            std::path::Path::new("/none"),
        )
        .await
        .expect("containerd")
        .client
    }
}

#[tokio::test]
async fn pulls_a_tag_reports_it_and_skips_an_image_already_present() {
    let mut env = Env::start().await;
    let img = env.push("lab/app", "v1", Layer::random("app.bin", 2 << 20, 1));
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    env.images.want(&node, &img.reference, 1, json!({})).await;

    let done = env
        .images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    let (key, _) = key_and_tag(&img.reference);
    assert_eq!(done.image_id, Some(format!("{key}@{}", img.config_digest)));
    assert_eq!(done.progress, 100);
    assert!(done.start_time.is_some() && done.completion_time.is_some() && done.message.is_none());
    let status = env.images.api.get(&node).await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.desired,
            status.succeeded,
            status.failed,
            status.pulling,
            status.waiting
        ),
        (1, 1, 0, 0, 0)
    );
    assert!(
        env.cri()
            .await
            .image_status(&img.reference)
            .await
            .unwrap()
            .is_some(),
        "the image is in containerd"
    );
    wait_for(
        "a PullImageSucceed event on the NodeImage",
        MINUTE,
        || async {
            (!events(&env.cluster.client, "default", "PullImageSucceed", &node)
                .await
                .is_empty())
            .then_some(())
        },
    )
    .await;

    // IfNotPresent with the registry gone: the daemon sees the image and does not pull.
    env.lab.registry.stop();
    env.images.want(&node, &img.reference, 2, json!({})).await;
    let again = env
        .images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 2, MINUTE)
        .await;
    assert_eq!(again.image_id, done.image_id);
}

#[tokio::test]
async fn always_pulls_again_and_gets_new_content_under_the_same_tag() {
    let env = Env::start().await;
    let first = env.push("lab/latest", "latest", Layer::random("a", 1 << 20, 10));
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    let always = json!({"imagePullPolicy": "Always"});
    env.images
        .want(&node, &first.reference, 1, always.clone())
        .await;
    let one = env
        .images
        .wait_phase(&node, &first.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    assert!(one.image_id.unwrap().ends_with(&first.config_digest));

    let second = env.push("lab/latest", "latest", Layer::random("a", 1 << 20, 11));
    assert_ne!(first.config_digest, second.config_digest);
    env.images.want(&node, &first.reference, 2, always).await;
    let two = env
        .images
        .wait_phase(&node, &first.reference, TagPhase::Succeeded, 2, MINUTE)
        .await;
    assert!(
        two.image_id.unwrap().ends_with(&second.config_digest),
        "Always fetched the new content"
    );
}

#[tokio::test]
async fn digest_references_are_pulled_by_digest() {
    let env = Env::start().await;
    let img = env.push("lab/pinned", "v1", Layer::file("f", "pinned"));
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    let tag_digest = format!(
        "{}:v1@{}",
        img.reference.rsplit_once(':').unwrap().0,
        img.manifest_digest
    );
    let entry = json!({"tags": [
        NodeImages::tag(&img.digest_reference, 1, json!({})),
        NodeImages::tag(&tag_digest, 1, json!({})),
    ]});
    env.images
        .set_image(&node, &img.digest_reference, entry)
        .await;
    for reference in [&img.digest_reference, &tag_digest] {
        let done = env
            .images
            .wait_phase(&node, reference, TagPhase::Succeeded, 1, MINUTE)
            .await;
        assert!(
            done.image_id.unwrap().ends_with(&img.config_digest),
            "{reference}"
        );
    }
    assert!(env
        .cri()
        .await
        .image_status(&img.digest_reference)
        .await
        .unwrap()
        .is_some());
}

async fn pull_secret(env: &Env, name: &str, user: &str, pass: &str) -> Value {
    env.cluster.shared_namespace("kruise-daemon-config").await;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let config = json!({"auths": {env.lab.auth_registry.host(): {"auth": auth}}}).to_string();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": env.cluster.labelled(json!({}))},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
    }))
    .unwrap();
    let api: Api<Secret> = Api::namespaced(env.cluster.client.clone(), "kruise-daemon-config");
    api.create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    json!([{"namespace": "kruise-daemon-config", "name": name}])
}

#[tokio::test]
async fn a_private_registry_with_the_right_secret_the_wrong_one_and_a_missing_one() {
    let env = Env::start().await;
    let creds = env.lab.auth_registry.credentials().unwrap().clone();
    let good_img = env
        .lab
        .push(
            &env.lab.auth_registry,
            "lab/private",
            "good",
            &[Layer::random("p", 1 << 20, 21)],
        )
        .unwrap();
    let bad_img = env
        .lab
        .push(
            &env.lab.auth_registry,
            "lab/private2",
            "bad",
            &[Layer::random("p", 1 << 20, 22)],
        )
        .unwrap();
    let lost_img = env
        .lab
        .push(
            &env.lab.auth_registry,
            "lab/private3",
            "lost",
            &[Layer::random("p", 1 << 20, 23)],
        )
        .unwrap();
    let good = pull_secret(
        &env,
        &env.cluster.name("good"),
        &creds.username,
        &creds.password,
    )
    .await;
    let bad = pull_secret(&env, &env.cluster.name("bad"), &creds.username, "wrong").await;
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    env.images.set_image(&node, &good_img.reference, json!({"pullSecrets": good, "tags": [NodeImages::tag(&good_img.reference, 1, json!({}))]})).await;
    env.images.set_image(&node, &bad_img.reference, json!({"pullSecrets": bad, "tags": [NodeImages::tag(&bad_img.reference, 1, json!({}))]})).await;
    let missing = json!([{"namespace": "kruise-daemon-config", "name": "nope"}]);
    env.images.set_image(&node, &lost_img.reference, json!({"pullSecrets": missing, "tags": [NodeImages::tag(&lost_img.reference, 1, json!({}))]})).await;

    env.images
        .wait_phase(&node, &good_img.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    let refused = env
        .images
        .wait_phase(&node, &bad_img.reference, TagPhase::Failed, 1, MINUTE)
        .await;
    let msg = refused.message.unwrap();
    assert!(
        msg.starts_with("the registry refused the credentials") && msg.contains("401 Unauthorized"),
        "{msg}"
    );
    let lost = env
        .images
        .wait_phase(&node, &lost_img.reference, TagPhase::Failed, 1, MINUTE)
        .await;
    let msg = lost.message.unwrap();
    assert!(
        msg.contains("pull secret kruise-daemon-config/nope not found"),
        "{msg}"
    );
    // The right secret given to the refused tag (same version, as the manager does when a job
    // with the right secret joins) is used at once, well before the failed tag's next retry.
    env.images.set_image(&node, &bad_img.reference, json!({"pullSecrets": good, "tags": [NodeImages::tag(&bad_img.reference, 1, json!({}))]})).await;
    env.images
        .wait_phase(
            &node,
            &bad_img.reference,
            TagPhase::Succeeded,
            1,
            Duration::from_secs(30),
        )
        .await;
}

#[tokio::test]
async fn a_missing_image_fails_at_once_with_events_on_the_node_image_and_the_job() {
    let env = Env::start().await;
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    let missing = format!("{}/lab/nothing:v9", env.lab.registry.host());
    let owner = json!({"ownerReferences": [{"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "namespace": "default", "name": "job-x", "uid": "00000000-0000-0000-0000-000000000001"}]});
    env.images.want(&node, &missing, 1, owner).await;
    let failed = env
        .images
        .wait_phase(&node, &missing, TagPhase::Failed, 1, MINUTE)
        .await;
    let msg = failed.message.unwrap();
    assert!(msg.starts_with("image not found in the registry"), "{msg}");
    assert!(!msg.contains("attempts"), "not found is not retried: {msg}");
    wait_for(
        "PullImageFailed events on the NodeImage and on the owning job",
        MINUTE,
        || async {
            let on_node = events(&env.cluster.client, "default", "PullImageFailed", &node).await;
            let on_job = events(&env.cluster.client, "default", "PullImageFailed", "job-x").await;
            (!on_node.is_empty() && !on_job.is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_attempt_that_outlasts_its_timeout_fails_with_the_timeout() {
    let env = Env::start().await;
    let img = env.push("lab/big", "v1", Layer::random("big", 8 << 20, 31));
    let (proxy, slow_ref) = env.slow(&img, 512 << 10);
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    let policy = json!({"pullPolicy": {"timeoutSeconds": 2, "backoffLimit": 0}});
    env.images.want(&node, &slow_ref, 1, policy).await;
    let failed = env
        .images
        .wait_phase(&node, &slow_ref, TagPhase::Failed, 1, MINUTE)
        .await;
    assert_eq!(
        failed.message.as_deref(),
        Some("timed out after 2s (pullPolicy.timeoutSeconds)")
    );
    assert!(
        proxy.wait_quiet(Duration::from_secs(2), Duration::from_secs(20)),
        "the timed-out pull stopped downloading"
    );
}

#[tokio::test]
async fn a_registry_that_comes_back_before_the_retries_run_out() {
    let mut env = Env::start().await;
    let img = env.push("lab/flaky", "v1", Layer::random("f", 1 << 20, 41));
    env.lab.registry.stop();
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    env.images
        .want(
            &node,
            &img.reference,
            1,
            json!({"pullPolicy": {"backoffLimit": 4}}),
        )
        .await;
    let retrying = wait_for("a retry to show in the status", MINUTE, || async {
        env.images
            .tag_status(&node, &img.reference)
            .await
            .and_then(|s| s.message)
            .filter(|m| m.starts_with("attempt ") && m.contains(" of 5 failed"))
    })
    .await;
    assert!(
        retrying.contains("the registry is unreachable") && retrying.contains("connection refused"),
        "{retrying}"
    );
    env.lab.registry.start_again().unwrap();
    let done = env
        .images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    assert!(done.message.is_none());
}

#[tokio::test]
async fn a_withdrawn_tag_cancels_its_pull_without_a_failure() {
    let env = Env::start().await;
    let img = env.push("lab/withdrawn", "v1", Layer::random("w", 16 << 20, 51));
    let (proxy, slow_ref) = env.slow(&img, 1 << 20);
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    env.images.want(&node, &slow_ref, 1, json!({})).await;
    env.images
        .wait_phase(&node, &slow_ref, TagPhase::Pulling, 1, MINUTE)
        .await;
    wait_for("the pull to be downloading", MINUTE, || async {
        (proxy.bytes_sent() > 1 << 20).then_some(())
    })
    .await;

    env.images.set_image(&node, &slow_ref, Value::Null).await;
    assert!(
        proxy.wait_quiet(Duration::from_secs(2), Duration::from_secs(10)),
        "containerd stopped downloading"
    );
    assert!(
        proxy.bytes_sent() < 12 << 20,
        "stopped well before the 16 MiB image was complete"
    );
    wait_for(
        "the tag to leave the status",
        Duration::from_secs(10),
        || async {
            env.images
                .tag_status(&node, &slow_ref)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        env.cri()
            .await
            .image_status(&slow_ref)
            .await
            .unwrap()
            .is_none(),
        "the image was not pulled"
    );
    assert!(
        events(&env.cluster.client, "default", "PullImageFailed", &node)
            .await
            .is_empty(),
        "no failure event for a withdrawn tag"
    );
}

#[tokio::test]
async fn a_version_bump_starts_a_new_round() {
    let env = Env::start().await;
    let img = env.push("lab/bump", "v1", Layer::file("f", "bump"));
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    env.images.want(&node, &img.reference, 1, json!({})).await;
    let first = env
        .images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    env.images.want(&node, &img.reference, 2, json!({})).await;
    let second = env
        .images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 2, MINUTE)
        .await;
    assert!(second.completion_time.unwrap().0 >= first.completion_time.unwrap().0);
}

#[tokio::test]
async fn a_daemon_killed_mid_pull_resumes_without_pulling_finished_tags_again() {
    let env = Env::start().await;
    let small = env.push("lab/small", "v1", Layer::file("f", "small"));
    let big = env.push("lab/slow", "v1", Layer::random("s", 12 << 20, 61));
    let (_proxy, slow_ref) = env.slow(&big, 2 << 20);
    let node = env.cluster.name("n");
    let mut d = env.daemon(&node, 2).await;
    env.images.want(&node, &small.reference, 1, json!({})).await;
    env.images.want(&node, &slow_ref, 1, json!({})).await;
    let small_done = env
        .images
        .wait_phase(&node, &small.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    env.images
        .wait_phase(&node, &slow_ref, TagPhase::Pulling, 1, MINUTE)
        .await;
    let succeed_events = events(&env.cluster.client, "default", "PullImageSucceed", &node)
        .await
        .len();

    d.kill();
    let _d2 = env.daemon(&node, 2).await;
    let big_done = env
        .images
        .wait_phase(
            &node,
            &slow_ref,
            TagPhase::Succeeded,
            1,
            Duration::from_secs(120),
        )
        .await;
    assert!(big_done.image_id.unwrap().ends_with(&big.config_digest));
    let small_after = env
        .images
        .tag_status(&node, &small.reference)
        .await
        .unwrap();
    assert_eq!(
        small_after.completion_time, small_done.completion_time,
        "the finished tag was adopted, not pulled again"
    );
    let status = env.images.api.get(&node).await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.desired,
            status.succeeded,
            status.pulling,
            status.waiting,
            status.failed
        ),
        (2, 2, 0, 0, 0)
    );
    let after = events(&env.cluster.client, "default", "PullImageSucceed", &node).await;
    let series: i32 = after
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    assert_eq!(
        series as usize,
        succeed_events + 1,
        "one more success (the big image), none for the adopted tag"
    );
}

#[tokio::test]
async fn the_pull_budget_holds_and_status_writes_stay_few() {
    let env = Env::start().await;
    let proxy = env.lab.slow_proxy(&env.lab.registry, 2 << 20).unwrap();
    let refs: Vec<String> = (0..6)
        .map(|i| {
            let img = env.push(
                &format!("lab/c{i}"),
                "v1",
                Layer::random("c", 2 << 20, 70 + i),
            );
            img.reference
                .replace(&env.lab.registry.host(), &proxy.host())
        })
        .collect();
    let node = env.cluster.name("n");
    let d = env.daemon(&node, 2).await;
    let writes = e2e::node::StatusWrites::start(env.images.api.clone(), &node);
    for r in &refs {
        env.images.want(&node, r, 1, json!({})).await;
    }
    // The daemon's own gauge, read every 100 ms: pulls of 2 MiB at 2 MiB/s shared by two take
    // about two seconds each, so both slots are seen busy.
    let most = std::sync::atomic::AtomicI64::new(0);
    wait_for("every tag to succeed", Duration::from_secs(120), || async {
        let metrics = d.metrics().await;
        let in_flight = metrics
            .lines()
            .find(|l| l.starts_with("kruise_daemon_pulls_in_flight "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .expect("kruise_daemon_pulls_in_flight is exported");
        assert!(
            in_flight <= 2,
            "more than --max-concurrent-pulls=2 pulling: {in_flight}"
        );
        most.fetch_max(in_flight, std::sync::atomic::Ordering::SeqCst);
        let status = env.images.api.get(&node).await.ok()?.status?;
        assert!(
            status.pulling <= 2,
            "more than 2 pulling in the status: {status:?}"
        );
        (status.succeeded == 6).then_some(())
    })
    .await;
    assert_eq!(most.into_inner(), 2, "both pull slots were used");
    let writes = writes.count();
    assert!(
        (2..=12).contains(&writes),
        "{writes} status writes for 6 tags (coalesced: at most 2 a tag)"
    );
}

#[tokio::test]
async fn sigterm_stops_a_pulling_daemon_promptly() {
    let env = Env::start().await;
    let img = env.push("lab/term", "v1", Layer::random("t", 8 << 20, 81));
    let (proxy, slow_ref) = env.slow(&img, 256 << 10);
    let node = env.cluster.name("n");
    let mut d = env.daemon(&node, 2).await;
    env.images.want(&node, &slow_ref, 1, json!({})).await;
    let before = wait_for("progress to be reported", MINUTE, || async {
        let s = env.images.tag_status(&node, &slow_ref).await?;
        (s.phase == TagPhase::Pulling && s.progress > 0).then_some(s.progress)
    })
    .await;
    let status = d.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        proxy.wait_quiet(Duration::from_secs(2), Duration::from_secs(10)),
        "the cancelled pull stopped downloading"
    );
    let after = env.images.tag_status(&node, &slow_ref).await.unwrap();
    // A daemon stopped for its own rolling update leaves the pull to its successor: the tag is
    // not reported failed, and the progress seen so far is kept.
    assert!(
        after.phase == TagPhase::Pulling && after.progress >= before,
        "after SIGTERM the tag stays Pulling with at least {before}%: {after:?}"
    );
}

/// SIGTERM flushes the status: a result the daemon holds but has not written yet (its previous
/// status write is still held up by a slow API server) is in the NodeImage once it has exited.
#[tokio::test]
async fn sigterm_writes_the_last_result_before_the_daemon_exits() {
    let env = Env::on(Cluster::local());
    let first = env.push("lab/flush-first", "v1", Layer::file("f", "first"));
    let last = env.push("lab/flush-last", "v1", Layer::file("f", "last"));
    let node = env.cluster.name("n");
    let mut d = env.daemon(&node, 2).await;
    // Status writes take 4 s from now (less than the daemon's 5 s flush allowance), so the first
    // result's write is still on its way when the last result comes in.
    env.cluster
        .inject(json!({"latencyMs": 4000, "latencyPath": format!("/nodeimages/{node}/status")}))
        .await;
    env.images.want(&node, &first.reference, 1, json!({})).await;
    wait_for("a status write to be held up", MINUTE, || async {
        (env.cluster.stalled_writes().await? > 0).then_some(())
    })
    .await;
    env.images.want(&node, &last.reference, 1, json!({})).await;
    let both = "kruise_daemon_pulls_total{result=\"succeeded\",reason=\"pulled\"} 2";
    wait_for("the daemon to have pulled both", MINUTE, || async {
        d.metrics().await.contains(both).then_some(())
    })
    .await;
    assert!(
        env.cluster.stalled_writes().await.unwrap() > 0,
        "the held-up write ended before the last pull did, so no result waited to be written"
    );
    assert!(
        env.images
            .tag_status(&node, &last.reference)
            .await
            .is_none(),
        "the last result was written before SIGTERM"
    );

    d.send_sigterm();
    env.cluster.inject(json!({"latencyMs": 0})).await;
    let status = d.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    let st = env.images.tag_status(&node, &last.reference).await;
    assert_eq!(
        st.map(|s| s.phase),
        Some(TagPhase::Succeeded),
        "the result the daemon held at SIGTERM should be written before it exits:\n{}",
        d.log_text()
    );
}

#[tokio::test]
async fn without_a_runtime_the_daemon_waits_unready_and_says_why() {
    let env = Env::start().await;
    let node = env.cluster.name("n");
    env.images.create(&node).await;
    let empty = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--node-name",
        &node,
        "--host-run-dir",
        &empty.path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut d = Process::spawn(
        e2e::Binary::Daemon,
        env.cluster.kubeconfig(),
        &args,
        env.logs.path(),
        "daemon-no-runtime",
    );
    wait_for(
        "the daemon to report the missing runtime",
        MINUTE,
        || async {
            let log = d.log_text();
            (log.contains("no container runtime answered CRI v1")
                && log.contains("containerd/containerd.sock")
                && log.contains("--runtime-endpoint"))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        kruise_testlab::http_status(d.admin_port, "/readyz"),
        Some(503),
        "not ready without a runtime"
    );
    assert_eq!(
        kruise_testlab::http_status(d.admin_port, "/healthz"),
        Some(200),
        "but alive"
    );
    assert!(d.is_running());
    assert!(d.terminate(Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn metrics_count_pulls_by_result() {
    let env = Env::start().await;
    let img = env.push("lab/metered", "v1", Layer::file("f", "m"));
    let missing = format!("{}/lab/absent:v1", env.lab.registry.host());
    let node = env.cluster.name("n");
    let d = env.daemon(&node, 2).await;
    env.images.want(&node, &img.reference, 1, json!({})).await;
    env.images.want(&node, &missing, 1, json!({})).await;
    env.images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    env.images
        .wait_phase(&node, &missing, TagPhase::Failed, 1, MINUTE)
        .await;
    let metrics = wait_for("pull metrics", MINUTE, || async {
        let m = d.metrics().await;
        m.contains("kruise_daemon_status_writes_total{result=\"ok\"}")
            .then_some(m)
    })
    .await;
    assert!(
        metrics.contains("kruise_daemon_pulls_total{result=\"succeeded\",reason=\"pulled\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kruise_daemon_pulls_total{result=\"failed\",reason=\"not_found\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kruise_daemon_pull_duration_seconds_count{result=\"succeeded\"} 1"),
        "{metrics}"
    );
}

/// Under containerd the tag's progress climbs while the pull runs, read from containerd's content
/// store (OpenKruise's stays 0 until the end there), and is 100 with the result.
#[tokio::test]
async fn progress_climbs_while_pulling() {
    let env = Env::start().await;
    let img = env.push("lab/progress", "v1", Layer::random("p", 16 << 20, 91));
    let (_proxy, slow_ref) = env.slow(&img, 2 << 20);
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, 2).await;
    env.images.want(&node, &slow_ref, 1, json!({})).await;
    let midway = wait_for(
        "a progress between 0 and 100 while pulling",
        MINUTE,
        || async {
            let st = env.images.tag_status(&node, &slow_ref).await?;
            (st.phase == TagPhase::Pulling && st.progress > 0 && st.progress < 100)
                .then_some(st.progress)
        },
    )
    .await;
    let done = env
        .images
        .wait_phase(&node, &slow_ref, TagPhase::Succeeded, 1, MINUTE)
        .await;
    assert_eq!(done.progress, 100);
    eprintln!("progress seen midway: {midway}%");
}
