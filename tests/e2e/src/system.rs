//! The whole system as a user runs it, for job tests: an API server, containerd and registries
//! on loopback, the real kruise-manager, and one real kruise-daemon per Node a test adds. Jobs
//! are created as `kubectl apply` would create them, and results are read where a user looks:
//! job status, NodeImages, the runtime.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kruise_api::{ImageListPullJob, ImageListPullJobStatus, ImagePullJob};
use kruise_testlab::{Lab, Layer, PushedImage};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::node::{key_and_tag, NodeImages};
use crate::{wait_for, Cluster, DaemonOptions, Process};

/// How long any one wait in a job test may take.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// The label OpenKruise's e2e tests put on a NodeImage no daemon serves.
pub const FAKE_NODE_IMAGE_LABEL: &str = "apps.kruise.io/fake-nodeimage";

/// Dropping it stops the binaries, the lab and (locally) the API server.
pub struct System {
    // Fields drop in order: the binaries first (printing their logs if the test failed), the
    // log directory last.
    pub manager: Option<Process>,
    pub daemons: Vec<Process>,
    /// containerd instances of nodes that have their own (peer tests), stopped after the daemons.
    pub runtimes: Vec<kruise_testlab::Containerd>,
    pub cluster: Cluster,
    pub lab: Lab,
    pub images: NodeImages,
    pub ns: String,
    pub logs: tempfile::TempDir,
}

impl System {
    pub async fn start() -> Self {
        Self::on(Cluster::start().await).await
    }

    /// On the test API server whatever `E2E_KUBECONFIG` says: for tests that inject faults.
    pub async fn start_local() -> Self {
        Self::on(Cluster::local()).await
    }

    pub async fn on(cluster: Cluster) -> Self {
        let mut env = Self::without_manager(cluster).await;
        env.start_manager().await;
        env
    }

    /// Everything but the manager, which the test starts when it is ready for it.
    pub async fn without_manager(cluster: Cluster) -> Self {
        let images = cluster.node_images();
        let ns = cluster.name("e2e");
        cluster.create_namespace(&ns).await;
        cluster.shared_namespace("kruise-daemon-config").await;
        Self {
            cluster,
            lab: Lab::start().expect("containerd lab"),
            images,
            logs: tempfile::tempdir().unwrap(),
            daemons: vec![],
            runtimes: vec![],
            manager: None,
            ns,
        }
    }

    pub async fn start_manager(&mut self) {
        let mut m = self.manager_process(&format!("manager-{}", self.daemons.len()), &[]);
        m.wait_ready(DEADLINE).await;
        self.manager = Some(m);
    }

    /// A kruise-manager for this test, not waited for: its own Lease, scoped to this test's
    /// nodes (by label) and namespace, so tests sharing a cluster never manage each other's
    /// NodeImages or jobs.
    pub fn manager_process(&self, label: &str, extra: &[&str]) -> Process {
        self.manager_process_with_env(label, extra, &[])
    }

    /// [`System::manager_process`] with more environment variables (`FAILPOINTS`).
    pub fn manager_process_with_env(
        &self,
        label: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Process {
        let lease = self.cluster.name("kruise-manager");
        let selector = self.cluster.selector();
        let mut args = vec![
            "--leader-election-id",
            lease.as_str(),
            "--node-selector",
            selector.as_str(),
            "--job-namespace",
            self.ns.as_str(),
        ];
        args.extend_from_slice(extra);
        let (kubeconfig, logs) = (self.cluster.kubeconfig(), self.logs.path());
        Process::manager_with_env(kubeconfig, logs, label, &args, env)
    }

    /// A Ready Node with `labels`, its NodeImage (made by the manager) and a daemon.
    pub async fn add_node(&mut self, prefix: &str, labels: Value) -> String {
        let name = self.add_node_without_daemon(prefix, labels).await;
        let opts = DaemonOptions::local(&name, self.lab.cri_endpoint());
        let mut d = Process::daemon(self.cluster.kubeconfig(), &opts, self.logs.path());
        d.wait_ready(DEADLINE).await;
        self.daemons.push(d);
        name
    }

    /// A Ready Node with `labels`, once the manager made its NodeImage; no daemon serves it.
    pub async fn add_node_without_daemon(&self, prefix: &str, labels: Value) -> String {
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
        name
    }

    pub fn push(&self, repo: &str, seed: u64) -> PushedImage {
        self.lab
            .push(
                &self.lab.registry,
                repo,
                "latest",
                &[Layer::random("blob", 1 << 20, seed)],
            )
            .unwrap()
    }

    pub fn jobs(&self) -> Api<ImagePullJob> {
        Api::namespaced(self.cluster.client.clone(), &self.ns)
    }

    /// Creates a job from YAML-shaped JSON, as `kubectl apply` would (any served version).
    pub async fn apply_job(&self, manifest: Value) -> ImagePullJob {
        let obj: ImagePullJob = serde_json::from_value(manifest).unwrap();
        self.jobs()
            .create(&PostParams::default(), &obj)
            .await
            .expect("job created")
    }

    pub async fn wait_job(
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

    /// This test's nodes whose NodeImage spec lists `reference`.
    pub async fn nodes_with(&self, reference: &str) -> Vec<String> {
        let (key, tag) = key_and_tag(reference);
        let mut out: Vec<String> = self
            .images
            .api
            .list(&kube::api::ListParams::default().labels(&self.cluster.selector()))
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

    /// A NodeImage no daemon serves, as OpenKruise's e2e tests make one (labelled
    /// [`FAKE_NODE_IMAGE_LABEL`]): the manager keeps it even though no Node has its name.
    pub async fn fake_node_image(&self) -> String {
        let name = self.cluster.name("fake");
        let mut ni = kruise_api::NodeImage::new(&name, Default::default());
        let labels = self
            .cluster
            .labelled(json!({FAKE_NODE_IMAGE_LABEL: "true"}));
        ni.metadata.labels = Some(serde_json::from_value(labels).unwrap());
        self.images
            .api
            .create(&PostParams::default(), &ni)
            .await
            .expect("fake NodeImage created");
        name
    }

    /// Fails `reference` on the NodeImage `node` as its daemon would, once the manager put it
    /// there.
    pub async fn fail_on(&self, node: &str, reference: &str) {
        let (key, tag) = key_and_tag(reference);
        let version = wait_for("the tag on the fake NodeImage", DEADLINE, || async {
            Some(self.images.tag_spec(node, reference).await?.version)
        })
        .await;
        let failed = json!({"status": {"desired": 1, "failed": 1, "imageStatuses": {key.clone(): {"tags": [{
            "tag": tag, "phase": "Failed", "version": version, "completionTime": "2026-01-01T00:00:00Z", "message": "forced by the test"
        }]}}}});
        self.images
            .api
            .patch_status(node, &PatchParams::default(), &Patch::Merge(&failed))
            .await
            .unwrap();
    }

    pub fn lists(&self) -> Api<ImageListPullJob> {
        Api::namespaced(self.cluster.client.clone(), &self.ns)
    }

    /// Creates an ImageListPullJob (v1beta1) named `name` for `images`, with `spec` merged in.
    pub async fn apply_list(&self, name: &str, images: &[&str], spec: Value) {
        self.try_apply_list(name, images, spec)
            .await
            .expect("list job created");
    }

    /// As [`apply_list`](Self::apply_list), returning the API server's refusal as text.
    pub async fn try_apply_list(
        &self,
        name: &str,
        images: &[&str],
        spec: Value,
    ) -> Result<(), String> {
        let mut s = json!({"images": images});
        s.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let list: ImageListPullJob = serde_json::from_value(json!({
            "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImageListPullJob",
            "metadata": {"name": name}, "spec": s,
        }))
        .unwrap();
        self.lists()
            .create(&PostParams::default(), &list)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub async fn wait_list(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&ImageListPullJobStatus) -> bool,
    ) -> ImageListPullJobStatus {
        wait_for(&format!("list job {name}: {what}"), DEADLINE, || async {
            let l = self.lists().get_opt(name).await.ok().flatten()?;
            l.status.filter(|s| pred(s))
        })
        .await
    }

    /// Waits until `what` holds for the job `name` being gone.
    pub async fn wait_job_gone(&self, name: &str, what: &str) {
        wait_for(&format!("job {name}: {what}"), DEADLINE, || async {
            self.jobs()
                .get_opt(name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await
    }

    /// Waits until no NodeImage lists `reference`; a timeout names the NodeImages still listing
    /// it, with their entries.
    pub async fn wait_withdrawn(&self, reference: &str) {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = self.nodes_with(reference).await;
            if left.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= until {
                let (key, _) = key_and_tag(reference);
                let mut entries = Vec::new();
                for node in &left {
                    let ni = self.images.api.get(node).await.unwrap();
                    entries.push(format!("{node}: {:?}", ni.spec.images.get(&key)));
                }
                panic!(
                    "timed out after {DEADLINE:?} waiting for {reference} to leave every NodeImage; still in:\n{}",
                    entries.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A pull Secret `name` in the test namespace for the lab's private registry, as
    /// `kubernetes.io/dockerconfigjson` or (`legacy`) `kubernetes.io/dockercfg`.
    pub async fn registry_secret(&self, name: &str, legacy: bool) -> Secret {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let registry = &self.lab.auth_registry;
        let creds = registry
            .credentials()
            .expect("the private registry has credentials");
        let entry = json!({registry.host(): {"auth": b64(&format!("{}:{}", creds.username, creds.password))}});
        let (type_, key, config) = if legacy {
            ("kubernetes.io/dockercfg", ".dockercfg", entry)
        } else {
            (
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                json!({"auths": entry}),
            )
        };
        let secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "type": type_, "data": {key: b64(&config.to_string())},
        }))
        .unwrap();
        self.secrets()
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret created")
    }

    /// Secrets in the test namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), &self.ns)
    }

    /// The manager's copies of the test namespace's Secret `name` in `kruise-daemon-config`.
    pub async fn synced_copies(&self, name: &str) -> Vec<Secret> {
        let source = format!("{}/{name}", self.ns);
        let synced: Api<Secret> =
            Api::namespaced(self.cluster.client.clone(), "kruise-daemon-config");
        synced
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|s| s.annotations().get("imagepulljobs.kruise.io/source-key") == Some(&source))
            .collect()
    }

    /// Pushes a 1 MiB image to the lab's private registry.
    pub fn push_private(&self, repo: &str, seed: u64) -> PushedImage {
        self.lab
            .push(
                &self.lab.auth_registry,
                repo,
                "v1",
                &[Layer::random("private", 1 << 20, seed)],
            )
            .unwrap()
    }
}

/// An ImagePullJob manifest of API `version` for `image`, with `spec` merged in.
pub fn manifest(version: &str, name: &str, image: &str, spec: Value) -> Value {
    let mut s = json!({"image": image});
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": format!("apps.kruise.io/{version}"), "kind": "ImagePullJob", "metadata": {"name": name}, "spec": s})
}
