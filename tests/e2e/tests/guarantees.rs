//! The node guarantees on real containerd: pins against the kubelet's image GC (containerd 1.7
//! from Debian trixie, which reports them; 1.6 says it does not), a digest pull that pods find
//! under its tag's name and that holds when the tag moves, and disk-space admission on a small
//! image filesystem. The test stands in for the manager by writing NodeImage entries.

use std::time::Duration;

use e2e::node::{key_and_tag, NodeImages};
use e2e::{wait_for, Cluster, DaemonOptions, Process};
use kruise_api::TagPhase;
use kruise_testlab::{ContainerdBinary, ContainerdOptions, Lab, Layer};
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

struct Env {
    cluster: Cluster,
    lab: Lab,
    images: NodeImages,
    logs: tempfile::TempDir,
}

impl Env {
    async fn start(options: ContainerdOptions) -> Self {
        let cluster = Cluster::start().await;
        let images = cluster.node_images();
        Self {
            cluster,
            lab: Lab::start_with(options).expect("containerd lab"),
            images,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    async fn pinning() -> Self {
        Self::start(ContainerdOptions {
            binary: ContainerdBinary::Pinning,
            ..Default::default()
        })
        .await
    }

    async fn daemon(&self, node: &str, extra: &[&str]) -> Process {
        if self.images.api.get_opt(node).await.unwrap().is_none() {
            self.images.create(node).await;
        }
        let opts = DaemonOptions {
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ..DaemonOptions::local(node, self.lab.cri_endpoint())
        };
        let mut d = Process::daemon(self.cluster.kubeconfig(), &opts, self.logs.path());
        d.wait_ready(MINUTE).await;
        d
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

    async fn pinned(&self, reference: &str) -> Option<bool> {
        let image = self.cri().await.image_status(reference).await.unwrap()?;
        Some(image.pinned)
    }

    /// Waits until CRI reports `reference` pinned as `want`.
    async fn wait_pinned(&self, reference: &str, want: bool) {
        wait_for(
            &format!("{reference} pinned={want} in CRI"),
            MINUTE,
            || async { (self.pinned(reference).await == Some(want)).then_some(()) },
        )
        .await;
    }

    fn label(&self, reference: &str, label: &str) {
        let out = self
            .lab
            .containerd
            .ctr()
            .args(["-n", "k8s.io", "images", "label", reference, label])
            .output()
            .expect("ctr runs");
        assert!(out.status.success(), "ctr images label: {out:?}");
    }
}

#[tokio::test]
async fn pins_follow_the_tags_survive_a_restart_and_leave_others_alone() {
    let env = Env::pinning().await;
    let push = |repo: &str, seed| {
        let layer = Layer::random("a.bin", 1 << 20, seed);
        env.lab
            .push(&env.lab.registry, repo, "v1", &[layer])
            .unwrap()
    };
    let (kept, dropped, other) = (
        push("lab/kept", 1),
        push("lab/dropped", 2),
        push("lab/theirs", 3),
    );
    let node = env.cluster.name("n");
    let mut d = env.daemon(&node, &[]).await;

    // Someone else's pin (the cluster's own configuration, say) on another image.
    env.images.want(&node, &other.reference, 1, json!({})).await;
    env.images
        .wait_phase(&node, &other.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    env.images
        .set_image(&node, &other.reference, json!(null))
        .await;
    env.label(&other.reference, "io.cri-containerd.pinned=pinned");
    env.wait_pinned(&other.reference, true).await;

    // Asked to pin: pulled, pinned in the runtime, shown pinned in the status.
    for img in [&kept, &dropped] {
        env.images
            .want(&node, &img.reference, 1, json!({"pin": true}))
            .await;
        let done = env
            .images
            .wait_phase(&node, &img.reference, TagPhase::Succeeded, 1, MINUTE)
            .await;
        assert!(done.pinned, "status says pinned: {done:?}");
        assert!(done.message.is_none(), "{done:?}");
        assert_eq!(env.pinned(&img.reference).await, Some(true));
    }
    wait_for("the pinned-images gauge", MINUTE, || async {
        d.metrics()
            .await
            .contains("kruise_daemon_pinned_images 2")
            .then_some(())
    })
    .await;

    // One tag withdrawn while the daemon is down: once back, it unpins that one (it knows the
    // pin was its own) and keeps the other.
    d.terminate(MINUTE).await;
    env.images
        .set_image(&node, &dropped.reference, json!(null))
        .await;
    let _d = env.daemon(&node, &[]).await;
    env.wait_pinned(&dropped.reference, false).await;
    assert_eq!(env.pinned(&kept.reference).await, Some(true));
    // Withdrawn while it runs: unpinned at once.
    env.images
        .set_image(&node, &kept.reference, json!(null))
        .await;
    env.wait_pinned(&kept.reference, false).await;
    // The pin it did not make is still there.
    assert_eq!(env.pinned(&other.reference).await, Some(true));
}

#[tokio::test]
async fn a_digest_pull_carries_its_tag_and_holds_when_the_tag_moves() {
    let env = Env::pinning().await;
    let first = env
        .lab
        .push(
            &env.lab.registry,
            "lab/moving",
            "v1",
            &[Layer::random("a.bin", 1 << 20, 3)],
        )
        .unwrap();
    // The tag moves after the job resolved it.
    let moved = env
        .lab
        .push(
            &env.lab.registry,
            "lab/moving",
            "v1",
            &[Layer::random("a.bin", 1 << 20, 4)],
        )
        .unwrap();
    assert_ne!(first.manifest_digest, moved.manifest_digest);
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, &[]).await;
    env.images
        .want(
            &node,
            &first.reference,
            1,
            json!({"digest": first.manifest_digest}),
        )
        .await;
    let done = env
        .images
        .wait_phase(&node, &first.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    let (key, _) = key_and_tag(&first.reference);
    assert_eq!(
        done.image_id,
        Some(format!("{key}@{}", first.config_digest))
    );
    // What the kubelet asks for a pod written `name:tag`: present, and the job's image.
    let image = env
        .cri()
        .await
        .image_status(&first.reference)
        .await
        .unwrap()
        .expect("name:tag is present after the digest pull");
    assert_eq!(
        image.id, first.config_digest,
        "the first digest, not the moved tag"
    );
    assert!(
        image.repo_tags.iter().any(|t| t == &first.reference),
        "{image:?}"
    );
}

#[tokio::test]
async fn an_old_containerd_pulls_and_says_the_image_is_not_protected() {
    let env = Env::start(ContainerdOptions::default()).await;
    let img = env
        .lab
        .push(
            &env.lab.registry,
            "lab/old",
            "v1",
            &[Layer::random("a.bin", 1 << 20, 5)],
        )
        .unwrap();
    let node = env.cluster.name("n");
    let _d = env.daemon(&node, &[]).await;
    env.images
        .want(&node, &img.reference, 1, json!({"pin": true}))
        .await;
    let done = env
        .images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    assert!(!done.pinned);
    let message = done.message.unwrap_or_default();
    assert!(
        message.contains("not protected") && message.contains("1.7.10"),
        "{message}"
    );
}

#[tokio::test]
async fn a_pull_that_would_fill_the_image_filesystem_waits_until_space_frees() {
    let env = Env::start(ContainerdOptions {
        image_fs_bytes: Some(64 << 20),
        ..Default::default()
    })
    .await;
    let img = env
        .lab
        .push(
            &env.lab.registry,
            "lab/big",
            "v1",
            &[Layer::random("a.bin", 12 << 20, 6)],
        )
        .unwrap();
    let fs = env
        .lab
        .containerd
        .image_fs()
        .expect("a small image filesystem")
        .to_path_buf();
    // Ballast: the filesystem is 60% full, and 12 MiB more would pass the 70% limit.
    let ballast = fs.join("ballast");
    std::fs::write(&ballast, vec![1u8; 38 << 20]).unwrap();
    let node = env.cluster.name("n");
    let _d = env
        .daemon(
            &node,
            &[
                "--image-fs-path",
                fs.to_str().unwrap(),
                "--image-fs-max-percent",
                "70",
                "--image-fs-recheck-interval",
                "1s",
            ],
        )
        .await;
    env.images.want(&node, &img.reference, 1, json!({})).await;
    let waiting = wait_for("the tag waiting for disk space", MINUTE, || async {
        let st = env.images.tag_status(&node, &img.reference).await?;
        st.message
            .filter(|m| m.contains("waiting for disk space"))
            .map(|m| (st.phase, m))
    })
    .await;
    assert_eq!(waiting.0, TagPhase::Waiting);
    assert!(waiting.1.contains("needs 12.0 MiB"), "{}", waiting.1);
    assert!(waiting.1.contains("under the 70% limit"), "{}", waiting.1);
    assert!(env
        .cri()
        .await
        .image_status(&img.reference)
        .await
        .unwrap()
        .is_none());
    // Space frees up: the pull goes ahead.
    std::fs::remove_file(&ballast).unwrap();
    let done = env
        .images
        .wait_phase(&node, &img.reference, TagPhase::Succeeded, 1, MINUTE)
        .await;
    assert!(done.message.is_none(), "{done:?}");
}

/// The manager's side: the job's tag is resolved once and shown; every node pulls that digest
/// even though the tag moves in the registry while the job rolls out (parallelism 1); a `Never`
/// job asks its nodes to pin; `kubectl get ipj` shows the digest.
#[tokio::test]
async fn a_job_resolves_its_tag_once_and_every_node_ends_on_that_digest() {
    let mut env = e2e::System::start().await;
    let first = env.push("lab/rolling", 11);
    let a = env.add_node("a", json!({})).await;
    let b = env.add_node("b", json!({})).await;
    env.apply_job(e2e::manifest(
        "v1beta1",
        "rolling",
        &first.reference,
        json!({
            "parallelism": 1, "completionPolicy": {"type": "Never"},
        }),
    ))
    .await;
    let st = env
        .wait_job("rolling", "the digest resolved", |s| s.digest.is_some())
        .await;
    assert_eq!(st.digest.as_deref(), Some(first.manifest_digest.as_str()));
    assert_eq!(
        st.short_digest,
        Some(kruise_api::short_digest(&first.manifest_digest))
    );
    // The tag moves while the first node pulls.
    let moved = env.push("lab/rolling", 12);
    assert_ne!(moved.manifest_digest, first.manifest_digest);
    env.wait_job("rolling", "2 of 2 nodes succeeded", |s| s.succeeded == 2)
        .await;
    for node in [&a, &b] {
        let spec = env.images.tag_spec(node, &first.reference).await.unwrap();
        assert_eq!(
            spec.digest.as_deref(),
            Some(first.manifest_digest.as_str()),
            "{node}"
        );
        assert!(spec.pin, "a Never job pins: {node}");
        let st = env.images.tag_status(node, &first.reference).await.unwrap();
        assert_eq!(
            st.digest.as_deref(),
            Some(first.manifest_digest.as_str()),
            "{node}"
        );
        let (key, _) = key_and_tag(&first.reference);
        assert_eq!(
            st.image_id,
            Some(format!("{key}@{}", first.config_digest)),
            "{node}"
        );
    }
    let out = std::process::Command::new("kubectl")
        .args(["--kubeconfig"])
        .arg(env.cluster.kubeconfig())
        .args(["get", "ipj", "rolling", "-n", &env.ns])
        .output()
        .expect("kubectl runs (bash .ci/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.lines().next().unwrap_or_default().contains("DIGEST"),
        "{text}"
    );
    assert!(
        text.contains(&kruise_api::short_digest(&first.manifest_digest)),
        "{text}"
    );
}
