//! ImagePullJob and ImageListPullJob end to end: the real kruise-manager and one kruise-daemon
//! per simulated node (all on the lab's containerd), jobs created as `kubectl apply` would, and
//! the result checked where a user looks: job status, NodeImages, the runtime.

use std::time::Duration;

use e2e::node::{key_and_tag, NodeImages};
use e2e::{wait_for, Cluster, DaemonOptions, Process};
use kruise_api::{ImageListPullJob, ImagePullJob, TagPhase};
use kruise_testlab::{Lab, Layer, PushedImage};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(90);

struct Env {
    cluster: Cluster,
    lab: Lab,
    images: NodeImages,
    logs: tempfile::TempDir,
    daemons: Vec<Process>,
    manager: Option<Process>,
    ns: String,
}

impl Env {
    async fn start() -> Self {
        Self::on(Cluster::start().await).await
    }

    /// On the test API server whatever `E2E_KUBECONFIG` says: for tests that inject faults.
    async fn start_local() -> Self {
        Self::on(Cluster::local()).await
    }

    async fn on(cluster: Cluster) -> Self {
        let images = NodeImages::new(cluster.client.clone());
        let ns = cluster.name("e2e");
        cluster.create_namespace(&ns).await;
        cluster.create_namespace("kruise-daemon-config").await;
        let mut env = Self {
            cluster,
            lab: Lab::start().expect("containerd lab"),
            images,
            logs: tempfile::tempdir().unwrap(),
            daemons: vec![],
            manager: None,
            ns,
        };
        env.start_manager().await;
        env
    }

    async fn start_manager(&mut self) {
        let mut m = Process::manager(
            self.cluster.kubeconfig(),
            self.logs.path(),
            &format!("manager-{}", self.daemons.len()),
        );
        m.wait_ready(DEADLINE).await;
        self.manager = Some(m);
    }

    /// A Ready Node with `labels`, its NodeImage (made by the manager) and a daemon.
    async fn add_node(&mut self, prefix: &str, labels: Value) -> String {
        let name = self.cluster.name(prefix);
        self.cluster.create_node(&name, labels).await;
        wait_for(
            &format!("the manager to create NodeImage {name}"),
            DEADLINE,
            || async {
                self.images
                    .api
                    .get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .map(|_| ())
            },
        )
        .await;
        let opts = DaemonOptions {
            node: name.clone(),
            runtime_endpoint: self.lab.cri_endpoint(),
            max_concurrent_pulls: 2,
            image_check_interval: "24h".into(),
        };
        let mut d = Process::daemon(self.cluster.kubeconfig(), &opts, self.logs.path());
        d.wait_ready(DEADLINE).await;
        self.daemons.push(d);
        name
    }

    fn push(&self, repo: &str, seed: u64) -> PushedImage {
        self.lab
            .push(
                &self.lab.registry,
                repo,
                "latest",
                &[Layer::random("blob", 1 << 20, seed)],
            )
            .unwrap()
    }

    fn jobs(&self) -> Api<ImagePullJob> {
        Api::namespaced(self.cluster.client.clone(), &self.ns)
    }

    /// Creates a job from YAML-shaped JSON, as `kubectl apply` would (any served version).
    async fn apply_job(&self, manifest: Value) -> ImagePullJob {
        let obj: ImagePullJob = serde_json::from_value(manifest).unwrap();
        self.jobs()
            .create(&PostParams::default(), &obj)
            .await
            .expect("job created")
    }

    async fn wait_job(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&kruise_api::ImagePullJobStatus) -> bool,
    ) -> kruise_api::ImagePullJobStatus {
        wait_for(&format!("job {name}: {what}"), DEADLINE, || async {
            let j = self.jobs().get_opt(name).await.ok().flatten()?;
            j.status.filter(|s| pred(s))
        })
        .await
    }

    /// Nodes whose NodeImage spec lists `reference`.
    async fn nodes_with(&self, reference: &str) -> Vec<String> {
        let (key, tag) = key_and_tag(reference);
        let mut out: Vec<String> = self
            .images
            .api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|ni| {
                ni.spec
                    .images
                    .get(&key)
                    .is_some_and(|i| i.tags.iter().any(|t| t.tag == tag))
            })
            .map(|ni| ni.metadata.name.unwrap())
            .collect();
        out.sort();
        out
    }
}

fn manifest(version: &str, name: &str, image: &str, spec: Value) -> Value {
    let mut s = json!({"image": image});
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": format!("apps.kruise.io/{version}"), "kind": "ImagePullJob", "metadata": {"name": name}, "spec": s})
}

/// Mission pattern 1, as written (v1alpha1): base image on the whole cluster, forever; nodes added
/// later get it too.
#[tokio::test]
async fn base_image_job_covers_every_node_and_new_ones() {
    let mut env = Env::start().await;
    let img = env.push("xxx/base-image", 1);
    let a = env.add_node("a", json!({})).await;
    let b = env.add_node("b", json!({})).await;
    env.apply_job(manifest("v1alpha1", "base-image-job", &img.reference, json!({
        "parallelism": 10, "completionPolicy": {"type": "Never"}, "pullPolicy": {"backoffLimit": 3, "timeoutSeconds": 300},
    })))
    .await;
    let st = env
        .wait_job("base-image-job", "2 of 2 nodes succeeded", |s| {
            s.desired == 2 && s.succeeded == 2
        })
        .await;
    assert!(st.completion_time.is_none(), "a Never job never completes");
    for node in [&a, &b] {
        env.images
            .wait_phase(node, &img.reference, TagPhase::Succeeded, 0, DEADLINE)
            .await;
    }
    let c = env.add_node("c", json!({})).await;
    env.wait_job("base-image-job", "the new node succeeded too", |s| {
        s.desired == 3 && s.succeeded == 3
    })
    .await;
    env.images
        .wait_phase(&c, &img.reference, TagPhase::Succeeded, 0, DEADLINE)
        .await;
}

/// Mission pattern 2 (v1beta1 here): sidecar image on every node once; the job completes and,
/// with a short TTL, deletes itself and its tags leave the NodeImages.
#[tokio::test]
async fn sidecar_job_completes_then_goes_with_its_ttl() {
    let mut env = Env::start().await;
    let img = env.push("xxx/sidecar-image", 2);
    env.add_node("a", json!({})).await;
    env.add_node("b", json!({})).await;
    env.apply_job(manifest("v1beta1", "sidecar-image-job", &img.reference, json!({
        "parallelism": 20, "completionPolicy": {"type": "Always", "activeDeadlineSeconds": 1800, "ttlSecondsAfterFinished": 5},
        "pullPolicy": {"backoffLimit": 3, "timeoutSeconds": 300},
    })))
    .await;
    let st = env
        .wait_job("sidecar-image-job", "completed", |s| {
            s.completion_time.is_some()
        })
        .await;
    assert_eq!(
        (st.desired, st.succeeded, st.failed, st.active),
        (2, 2, 0, 0)
    );
    assert_eq!(st.message.as_deref(), Some("job has completed"));
    wait_for(
        "the job to delete itself after its TTL",
        DEADLINE,
        || async {
            env.jobs()
                .get_opt("sidecar-image-job")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    wait_for("its tags to leave the NodeImages", DEADLINE, || async {
        env.nodes_with(&img.reference)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Mission pattern 3: a resource pool by node label, forever.
#[tokio::test]
async fn serverless_job_pulls_only_on_its_pool() {
    let mut env = Env::start().await;
    let img = env.push("xxx/serverless-image", 3);
    let p1 = env
        .add_node("pool1", json!({"resource-pool": "serverless"}))
        .await;
    let p2 = env
        .add_node("pool2", json!({"resource-pool": "serverless"}))
        .await;
    env.add_node("other", json!({"resource-pool": "batch"}))
        .await;
    env.apply_job(manifest("v1alpha1", "serverless-job", &img.reference, json!({
        "parallelism": 10, "completionPolicy": {"type": "Never"}, "pullPolicy": {"backoffLimit": 3, "timeoutSeconds": 300},
        "selector": {"matchLabels": {"resource-pool": "serverless"}},
    })))
    .await;
    env.wait_job("serverless-job", "both pool nodes succeeded", |s| {
        s.desired == 2 && s.succeeded == 2
    })
    .await;
    let mut want = vec![p1, p2];
    want.sort();
    assert_eq!(
        env.nodes_with(&img.reference).await,
        want,
        "only the pool's NodeImages list the image"
    );
}

#[tokio::test]
async fn parallelism_is_never_exceeded() {
    let mut env = Env::start().await;
    let img = env
        .lab
        .push(
            &env.lab.registry,
            "lab/par",
            "v1",
            &[Layer::random("p", 6 << 20, 9)],
        )
        .unwrap();
    let proxy = env.lab.slow_proxy(&env.lab.registry, 4 << 20).unwrap();
    let slow = img
        .reference
        .replace(&env.lab.registry.host(), &proxy.host());
    for i in 0..4 {
        env.add_node(&format!("n{i}"), json!({})).await;
    }
    env.apply_job(manifest("v1beta1", "par", &slow, json!({"parallelism": 2})))
        .await;
    let max_active = std::sync::atomic::AtomicI32::new(0);
    wait_for("the job to complete", Duration::from_secs(120), || async {
        let st = env.jobs().get("par").await.ok()?.status?;
        max_active.fetch_max(st.active, std::sync::atomic::Ordering::SeqCst);
        assert!(st.active <= 2, "parallelism 2 exceeded: {st:?}");
        st.completion_time.is_some().then_some(())
    })
    .await;
    let st = env.jobs().get("par").await.unwrap().status.unwrap();
    assert_eq!((st.desired, st.succeeded), (4, 4));
    assert!(max_active.into_inner() >= 1);
}

#[tokio::test]
async fn two_jobs_share_a_tag_and_deleting_one_keeps_the_other() {
    let mut env = Env::start().await;
    let img = env.push("lab/shared", 4);
    let node = env.add_node("a", json!({})).await;
    env.apply_job(manifest(
        "v1beta1",
        "job1",
        &img.reference,
        json!({"completionPolicy": {"type": "Never"}}),
    ))
    .await;
    env.wait_job("job1", "succeeded", |s| s.succeeded == 1)
        .await;
    env.apply_job(manifest(
        "v1beta1",
        "job2",
        &img.reference,
        json!({"completionPolicy": {"type": "Never"}}),
    ))
    .await;
    env.wait_job("job2", "succeeded", |s| s.succeeded == 1)
        .await;
    let (key, tag) = key_and_tag(&img.reference);
    let owners = |ni: &kruise_api::NodeImage| -> Vec<String> {
        ni.spec
            .images
            .get(&key)
            .and_then(|i| i.tags.iter().find(|t| t.tag == tag))
            .map(|t| {
                t.owner_references
                    .iter()
                    .filter_map(|o| o.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let ni = env.images.api.get(&node).await.unwrap();
    assert_eq!(owners(&ni), ["job1", "job2"]);
    assert_eq!(
        ni.spec.images[&key].tags[0].version, 0,
        "job2 joined without a new pull round"
    );

    env.jobs()
        .delete("job1", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("job1 to leave the tag's owners", DEADLINE, || async {
        let ni = env.images.api.get(&node).await.ok()?;
        (owners(&ni) == ["job2"]).then_some(())
    })
    .await;
    env.jobs()
        .delete("job2", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the tag to be withdrawn", DEADLINE, || async {
        env.nodes_with(&img.reference)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn editing_a_job_moves_it_to_the_new_image() {
    let mut env = Env::start().await;
    let old = env.push("lab/edit-old", 5);
    let new = env.push("lab/edit-new", 6);
    let node = env.add_node("a", json!({})).await;
    env.apply_job(manifest(
        "v1beta1",
        "edit",
        &old.reference,
        json!({"completionPolicy": {"type": "Never"}}),
    ))
    .await;
    env.wait_job("edit", "old image pulled", |s| s.succeeded == 1)
        .await;
    env.jobs()
        .patch(
            "edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": new.reference}})),
        )
        .await
        .unwrap();
    env.images
        .wait_phase(&node, &new.reference, TagPhase::Succeeded, 0, DEADLINE)
        .await;
    wait_for("the old tag to be withdrawn", DEADLINE, || async {
        env.nodes_with(&old.reference)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_manager_restart_mid_fan_out_loses_nothing() {
    let mut env = Env::start().await;
    let img = env
        .lab
        .push(
            &env.lab.registry,
            "lab/restart",
            "v1",
            &[Layer::random("r", 4 << 20, 7)],
        )
        .unwrap();
    let proxy = env.lab.slow_proxy(&env.lab.registry, 4 << 20).unwrap();
    let slow = img
        .reference
        .replace(&env.lab.registry.host(), &proxy.host());
    for i in 0..3 {
        env.add_node(&format!("n{i}"), json!({})).await;
    }
    env.apply_job(manifest(
        "v1beta1",
        "restart",
        &slow,
        json!({"parallelism": 1}),
    ))
    .await;
    env.wait_job("restart", "one node pulling", |s| s.active == 1)
        .await;
    env.manager.as_mut().unwrap().kill();
    env.start_manager().await;
    let st = env
        .wait_job("restart", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.desired, st.succeeded, st.failed), (3, 3, 0));
    let (key, tag) = key_and_tag(&slow);
    for ni in env
        .images
        .api
        .list(&Default::default())
        .await
        .unwrap()
        .items
    {
        let t = ni.spec.images[&key]
            .tags
            .iter()
            .find(|t| t.tag == tag)
            .unwrap();
        assert_eq!(t.owner_references.len(), 1, "owned once, not twice");
        assert_eq!(t.version, 0, "no node was asked to pull twice");
    }
}

#[tokio::test]
async fn pull_secrets_are_synced_shared_and_removed() {
    let mut env = Env::start().await;
    let creds = env.lab.auth_registry.credentials().unwrap().clone();
    let img = env
        .lab
        .push(
            &env.lab.auth_registry,
            "lab/secret",
            "v1",
            &[Layer::random("s", 1 << 20, 8)],
        )
        .unwrap();
    env.add_node("a", json!({})).await;
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = json!({"auths": {env.lab.auth_registry.host(): {"auth": b64(&format!("{}:{}", creds.username, creds.password))}}}).to_string();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.cluster.client.clone(), &env.ns);
    let secret = serde_json::from_value(json!({"metadata": {"name": "reg"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(&config)}})).unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    env.apply_job(manifest(
        "v1beta1",
        "with-secret",
        &img.reference,
        json!({"pullSecrets": ["reg"], "completionPolicy": {"type": "Always"}}),
    ))
    .await;
    let st = env
        .wait_job("with-secret", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!(st.succeeded, 1, "{st:?}");
    let synced: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.cluster.client.clone(), "kruise-daemon-config");
    let copies: Vec<_> = synced
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("imagepulljobs.kruise.io/source-key"))
                == Some(&format!("{}/reg", env.ns))
        })
        .collect();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].data, secret_data(&secrets).await);
    // A job naming a secret that does not exist says so in its status.
    env.apply_job(manifest(
        "v1beta1",
        "missing-secret",
        &img.reference,
        json!({"pullSecrets": ["nope"]}),
    ))
    .await;
    let st = env
        .wait_job("missing-secret", "a message about the secret", |s| {
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("pull secret"))
        })
        .await;
    assert!(st
        .message
        .unwrap()
        .contains(&format!("{}/nope not found", env.ns)));
    env.jobs()
        .delete("with-secret", &DeleteParams::default())
        .await
        .unwrap();
    env.jobs()
        .delete("missing-secret", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the synced copy to be removed with the last job",
        DEADLINE,
        || async {
            let left = synced
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|s| {
                    s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("imagepulljobs.kruise.io/source-key"))
                        .is_some()
                })
                .count();
            (left == 0).then_some(())
        },
    )
    .await;
}

async fn secret_data(
    api: &Api<k8s_openapi::api::core::v1::Secret>,
) -> Option<std::collections::BTreeMap<String, k8s_openapi::ByteString>> {
    api.get("reg").await.unwrap().data
}

#[tokio::test]
async fn an_image_list_pull_job_makes_one_job_per_image() {
    let mut env = Env::start().await;
    let a = env.push("lab/list-a", 11);
    let b = env.push("lab/list-b", 12);
    env.add_node("n", json!({})).await;
    let lists: Api<ImageListPullJob> = Api::namespaced(env.cluster.client.clone(), &env.ns);
    let list: ImageListPullJob = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImageListPullJob", "metadata": {"name": "list"},
        "spec": {"images": [a.reference, b.reference], "parallelism": 2, "completionPolicy": {"type": "Always", "ttlSecondsAfterFinished": 5}},
    }))
    .unwrap();
    lists.create(&PostParams::default(), &list).await.unwrap();
    let st = wait_for("the list job to complete", DEADLINE, || async {
        lists
            .get_opt("list")
            .await
            .ok()
            .flatten()?
            .status
            .filter(|s| s.completion_time.is_some())
    })
    .await;
    assert_eq!((st.desired, st.completed, st.succeeded), (2, 2, 2));
    wait_for(
        "the list job and its children to go after its TTL",
        DEADLINE,
        || async {
            let gone = lists.get_opt("list").await.ok()?.is_none();
            let children = env.jobs().list(&Default::default()).await.ok()?.items.len();
            (gone && children == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_manager_reports_metrics_and_stops_cleanly() {
    let mut env = Env::start().await;
    let img = env.push("lab/metrics", 13);
    env.add_node("a", json!({})).await;
    env.apply_job(manifest("v1beta1", "m", &img.reference, json!({})))
        .await;
    env.wait_job("m", "completed", |s| s.completion_time.is_some())
        .await;
    let manager = env.manager.as_mut().unwrap();
    let metrics = manager.metrics().await;
    for series in [
        "kruise_manager_reconciles_total",
        "kruise_manager_reconcile_duration_seconds",
        "kruise_manager_writes_total{kind=\"nodeimage\",result=\"ok\"}",
        "kruise_manager_imagepulljobs 1",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(manager.terminate(Duration::from_secs(10)).await.success());
}

/// A stalled API server must not hold a stopping manager past its grace period: the pod would
/// be SIGKILLed mid-write instead of stopping cleanly.
#[tokio::test]
async fn the_manager_stops_within_its_grace_while_writes_hang() {
    let mut env = Env::start_local().await;
    env.add_node("a", json!({})).await;
    env.cluster
        .inject(json!({"latencyMs": 600_000, "latencyPath": "/nodeimages"}))
        .await;
    env.apply_job(manifest("v1beta1", "stall", "lab/stall:1", json!({})))
        .await;
    wait_for(
        "the manager's NodeImage write to hang",
        DEADLINE,
        || async { (env.cluster.stalled_writes().await? > 0).then_some(()) },
    )
    .await;
    let manager = env.manager.as_mut().unwrap();
    let status = manager.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    let log = manager.log_text();
    assert!(
        log.contains("stopping anyway"),
        "the log says the round was cut short:\n{log}"
    );
}

/// A leader whose lease renewals hang must stop writing before its lease can expire for the
/// others, or two managers would write at once.
#[tokio::test]
async fn a_leader_cut_off_from_its_lease_steps_down_in_time() {
    let mut env = Env::start_local().await;
    env.cluster
        .inject(json!({"latencyMs": 600_000, "latencyPath": "/leases"}))
        .await;
    let manager = env.manager.as_mut().unwrap();
    // The test lease lasts 3s; stepping down comes at 2/3 of it after the last renewal.
    let exited = wait_for("the leader to step down", DEADLINE, || {
        std::future::ready(manager.exit_status())
    })
    .await;
    assert!(
        !exited.success(),
        "a deposed leader exits non-zero so it restarts"
    );
    let log = manager.log_text();
    assert!(
        log.contains("could not renew the lease in time; stepping down"),
        "{log}"
    );
}

#[tokio::test]
async fn a_job_with_no_matching_node_waits_and_a_missing_crd_is_explained() {
    let mut env = Env::start().await;
    env.add_node("a", json!({"pool": "x"})).await;
    env.apply_job(manifest(
        "v1beta1",
        "none",
        "lab/none:1",
        json!({"selector": {"matchLabels": {"pool": "nowhere"}}}),
    ))
    .await;
    let st = env
        .wait_job("none", "a status", |s| s.start_time.is_some())
        .await;
    assert_eq!(st.desired, 0);
    assert!(
        st.completion_time.is_none(),
        "not completed with zero nodes (OpenKruise completes at once)"
    );
    assert_eq!(
        st.message.as_deref(),
        Some("job is running, no node matches it yet")
    );
}

/// The README's first command: the demo runs the whole system and the job succeeds.
#[test]
fn the_local_demo_runs_end_to_end() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kruise-demo"))
        .arg("--exit-when-done")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("SUCCEED 1") && stdout.contains("is in containerd as sha256:"),
        "{stdout}"
    );
}

/// Two replicas: one leads and writes; when it dies the other takes over and finishes the work.
#[tokio::test]
async fn a_standby_manager_takes_over_from_a_dead_leader() {
    let mut env = Env::start().await;
    let mut standby =
        Process::manager(env.cluster.kubeconfig(), env.logs.path(), "manager-standby");
    standby.wait_ready(DEADLINE).await;
    let img = env.push("lab/failover", 14);
    env.add_node("a", json!({})).await;
    env.apply_job(manifest("v1beta1", "first", &img.reference, json!({})))
        .await;
    env.wait_job("first", "completed", |s| s.completion_time.is_some())
        .await;
    assert!(
        !standby.log_text().contains("became the leader"),
        "only one leader"
    );
    env.manager.as_mut().unwrap().kill();
    env.apply_job(manifest("v1beta1", "second", &img.reference, json!({})))
        .await;
    env.wait_job("second", "completed by the new leader", |s| {
        s.completion_time.is_some()
    })
    .await;
    assert!(standby.log_text().contains("became the leader"));
}

/// A NodeImage no daemon serves, as OpenKruise's e2e tests make one: the manager keeps it even
/// though no Node has its name.
async fn fake_node_image(env: &Env) -> String {
    let name = env.cluster.name("fake");
    let mut ni = kruise_api::NodeImage::new(&name, Default::default());
    ni.metadata.labels = Some(
        [(
            "apps.kruise.io/fake-nodeimage".to_string(),
            "true".to_string(),
        )]
        .into(),
    );
    env.images
        .api
        .create(&PostParams::default(), &ni)
        .await
        .expect("fake NodeImage created");
    name
}

/// Fails `reference` on the NodeImage `node` as its daemon would, once the manager put it there.
async fn fail_on(env: &Env, node: &str, reference: &str) {
    let (key, tag) = key_and_tag(reference);
    let version = wait_for("the tag on the fake NodeImage", DEADLINE, || async {
        let ni = env.images.api.get(node).await.ok()?;
        ni.spec
            .images
            .get(&key)?
            .tags
            .iter()
            .find(|t| t.tag == tag)
            .map(|t| t.version)
    })
    .await;
    let failed = json!({"status": {"desired": 1, "failed": 1, "imageStatuses": {key.clone(): {"tags": [{
        "tag": tag, "phase": "Failed", "version": version, "completionTime": "2026-01-01T00:00:00Z", "message": "forced by the test"
    }]}}}});
    env.images
        .api
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&failed))
        .await
        .unwrap();
}

/// OpenKruise §10 scenario 6: a Never job over all nodes counts the fake NodeImage as desired
/// and never completes, while the real node succeeds.
#[tokio::test]
async fn a_never_job_counts_a_node_image_no_daemon_serves() {
    let mut env = Env::start().await;
    let img = env.push("lab/fake-never", 15);
    env.add_node("real", json!({})).await;
    let fake = fake_node_image(&env).await;
    env.apply_job(manifest(
        "v1beta1",
        "never-all",
        &img.reference,
        json!({"parallelism": 5, "completionPolicy": {"type": "Never"}}),
    ))
    .await;
    let st = env
        .wait_job("never-all", "the real node succeeded", |s| {
            s.desired == 2 && s.succeeded == 1
        })
        .await;
    assert!(st.completion_time.is_none());
    assert!(
        env.nodes_with(&img.reference).await.contains(&fake),
        "the fake NodeImage got the tag too"
    );
    assert!(
        env.images.api.get_opt(&fake).await.unwrap().is_some(),
        "the manager keeps a fake NodeImage without a Node"
    );
}

/// OpenKruise §10 scenario 10: an Always list job over all nodes; the fake node's pull is failed
/// by hand; the list job completes with one failed image status.
#[tokio::test]
async fn a_list_job_completes_with_a_failed_node() {
    let mut env = Env::start().await;
    let img = env.push("lab/fake-list", 16);
    env.add_node("real", json!({})).await;
    let fake = fake_node_image(&env).await;
    let lists: Api<ImageListPullJob> = Api::namespaced(env.cluster.client.clone(), &env.ns);
    let list: ImageListPullJob = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImageListPullJob", "metadata": {"name": "fake-list"},
        "spec": {"images": [img.reference], "parallelism": 5, "completionPolicy": {"type": "Always"}},
    }))
    .unwrap();
    lists.create(&PostParams::default(), &list).await.unwrap();
    fail_on(&env, &fake, &img.reference).await;
    let st = wait_for("the list job to complete", DEADLINE, || async {
        lists
            .get_opt("fake-list")
            .await
            .ok()
            .flatten()?
            .status
            .filter(|s| s.completion_time.is_some())
    })
    .await;
    assert_eq!((st.desired, st.completed, st.succeeded), (1, 1, 0));
    assert_eq!(st.failed_image_statuses.len(), 1);
    assert_eq!(
        st.failed_image_statuses[0].name.as_deref(),
        Some(img.reference.as_str())
    );
    assert!(st.failed_image_statuses[0]
        .message
        .as_deref()
        .unwrap()
        .contains(&fake));
}

/// OpenKruise §10 scenario 11: a Never list job over all nodes including a fake NodeImage whose
/// pull is failed by hand: the child completes (every node done) with one failed image status,
/// and the list job, being Never, counts it completed without finishing itself.
#[tokio::test]
async fn a_never_list_job_counts_a_completed_child_with_a_failure() {
    let mut env = Env::start().await;
    let img = env.push("lab/fake-never-list", 17);
    env.add_node("real", json!({})).await;
    let fake = fake_node_image(&env).await;
    let lists: Api<ImageListPullJob> = Api::namespaced(env.cluster.client.clone(), &env.ns);
    let list: ImageListPullJob = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImageListPullJob", "metadata": {"name": "never-list"},
        "spec": {"images": [img.reference], "parallelism": 5, "completionPolicy": {"type": "Never"}},
    }))
    .unwrap();
    lists.create(&PostParams::default(), &list).await.unwrap();
    fail_on(&env, &fake, &img.reference).await;
    let st = wait_for(
        "the child to count as completed with one failure",
        DEADLINE,
        || async {
            lists
                .get_opt("never-list")
                .await
                .ok()
                .flatten()?
                .status
                .filter(|s| s.completed == 1 && s.failed_image_statuses.len() == 1)
        },
    )
    .await;
    assert!(
        st.completion_time.is_none(),
        "a Never list job never completes"
    );
    assert_eq!((st.desired, st.succeeded), (1, 0));
}
