//! The API server the binaries talk to: the project's test API server (default), or the cluster
//! of `E2E_KUBECONFIG`, which other tests and other users share. Everything a test creates carries
//! the label `e2e.kruise.io/test=<its id>` (the NodeImages the manager makes for its Nodes too, as
//! they mirror the Nodes' labels), its managers are scoped to that label and to its namespace, and
//! a process started when the handle drops deletes it all, even after a panic, without blocking
//! the test's runtime.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Node};
use kruise_test_apiserver::TestApiServer;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

pub struct Cluster {
    pub client: Client,
    kubeconfig: PathBuf,
    server: Option<TestApiServer>,
    /// A short random suffix for this test's object names.
    pub id: String,
    cleanup: bool,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The label on everything a test creates; its value is the test's id.
pub const TEST_LABEL: &str = "e2e.kruise.io/test";

fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

impl Cluster {
    /// The test API server with the project's CRDs, or the cluster in `E2E_KUBECONFIG` (whose
    /// CRDs must be installed: `kubectl apply -f config/crd/`).
    pub async fn start() -> Self {
        match std::env::var("E2E_KUBECONFIG") {
            Ok(path) => Self::from_kubeconfig(PathBuf::from(path)).await,
            Err(_) => Self::local_with_id(unique_id()),
        }
    }

    /// The cluster of `kubeconfig` (shared: what the test makes is cleaned up after it).
    pub async fn from_kubeconfig(kubeconfig: PathBuf) -> Self {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap_or_else(|e| {
            panic!("{} is not a readable kubeconfig: {e}", kubeconfig.display())
        });
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{} is not a valid kubeconfig: {e}", kubeconfig.display()));
        let client = Client::try_from(config).expect("client");
        Self {
            client,
            kubeconfig,
            server: None,
            id: unique_id(),
            cleanup: true,
        }
    }

    /// No cleanup process when the handle drops (a benchmark's own server, stopped after it).
    pub fn without_cleanup(mut self) -> Self {
        self.cleanup = false;
        self
    }

    /// Always the project's test API server, even with `E2E_KUBECONFIG` set: for tests of how
    /// the binaries ride out faults that only the test server can inject (`inject`).
    pub fn local() -> Self {
        Self::local_with_id(unique_id())
    }

    fn local_with_id(id: String) -> Self {
        let crds = repo_root().join("config/crd");
        let server = TestApiServer::start_detached("127.0.0.1:0".parse().unwrap(), &[&crds], None)
            .expect("test API server starts");
        let client =
            Client::try_from(kube::Config::new(server.url().parse().unwrap())).expect("client");
        let kubeconfig = server.kubeconfig().to_path_buf();
        Self {
            client,
            kubeconfig,
            server: Some(server),
            id,
            cleanup: false,
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The test API server, when not running against a real cluster.
    pub fn test_server(&self) -> Option<&TestApiServer> {
        self.server.as_ref()
    }

    /// A unique name for this test: `prefix-<id>`.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.id)
    }

    /// `e2e.kruise.io/test=<id>`: what this test's managers manage, and what its cleanup deletes.
    pub fn selector(&self) -> String {
        format!("{TEST_LABEL}={}", self.id)
    }

    /// `labels` with this test's label added.
    pub fn labelled(&self, labels: serde_json::Value) -> serde_json::Value {
        let mut labels = if labels.is_object() {
            labels
        } else {
            json!({})
        };
        labels[TEST_LABEL] = json!(self.id);
        labels
    }

    /// NodeImages, created with this test's label.
    pub fn node_images(&self) -> crate::node::NodeImages {
        crate::node::NodeImages::labelled(self.client.clone(), self.labelled(json!({})))
    }

    /// Creates a Ready Node object (no kubelet behind it), labelled with this test's label.
    pub async fn create_node(&self, name: &str, labels: serde_json::Value) -> Node {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": self.labelled(labels)},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "KubeletReady", "message": "e2e"}]},
        }))
        .unwrap();
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node created")
    }

    /// Creates the Ready Node `name`, or relabels it if an earlier run left it.
    pub async fn apply_node(&self, name: &str, labels: serde_json::Value) -> Node {
        let nodes: Api<Node> = Api::all(self.client.clone());
        if nodes.get_opt(name).await.ok().flatten().is_some() {
            let patch = json!({"metadata": {"labels": self.labelled(labels)}});
            return nodes
                .patch(
                    name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .expect("node relabelled");
        }
        self.create_node(name, labels).await
    }

    /// Creates this test's namespace `name`, labelled with its label (deleted with it).
    pub async fn create_namespace(&self, name: &str) {
        self.namespace(name, self.labelled(json!({}))).await
    }

    /// Makes sure a namespace tests share exists (`kruise-daemon-config`); never deleted by them.
    pub async fn shared_namespace(&self, name: &str) {
        self.namespace(name, json!({})).await
    }

    async fn namespace(&self, name: &str, labels: serde_json::Value) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating namespace {name}: {e}"),
        }
    }

    /// `GET /_test/requests` on the test API server: every request so far, by verb, resource,
    /// subresource, User-Agent and namespace. `None` on a real cluster.
    pub async fn requests(&self) -> Option<serde_json::Value> {
        let server = self.server.as_ref()?;
        let body = raw_http(server.addr(), "GET", "/_test/requests", None).await;
        Some(serde_json::from_str(&body).expect("request records are JSON"))
    }

    /// Writes the test API server is holding back under an injected latency right now; `None` on
    /// a real cluster.
    pub async fn stalled_writes(&self) -> Option<u64> {
        let server = self.server.as_ref()?;
        let body = raw_http(server.addr(), "GET", "/_test/requests", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("request counts are JSON");
        v["stalledWrites"].as_u64()
    }

    /// Injects faults on the test API server (see `FaultRequest`); such tests use
    /// [`Cluster::local`], so a real cluster here is a mistake in the test.
    pub async fn inject(&self, faults: serde_json::Value) {
        let server = self
            .server
            .as_ref()
            .expect("faults need the test API server: start the cluster with Cluster::local()");
        raw_http(server.addr(), "POST", "/_test/faults", Some(faults)).await;
    }
}

impl Drop for Cluster {
    /// On a shared cluster, starts `kruise-e2e-cleanup` for this test's objects and does not wait
    /// for it: a drop must not block the runtime the cleanup would need, and the process outlives
    /// the test's (in its own session, so a test runner killing the test's process group leaves it
    /// alone). Its log goes to the temporary directory.
    fn drop(&mut self) {
        if self.server.is_some() || !self.cleanup {
            return; // the whole server goes
        }
        let log = std::env::temp_dir().join(format!("kruise-e2e-cleanup-{}.log", self.id));
        let Ok(out) = std::fs::File::create(&log) else {
            return;
        };
        let spawned = std::process::Command::new("setsid")
            .arg(crate::Binary::Cleanup.path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--selector")
            .arg(self.selector())
            .arg("--lease")
            .arg(format!("default/{}", self.name("kruise-manager")))
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn();
        if let Err(e) = spawned {
            eprintln!(
                "starting kruise-e2e-cleanup for test {}: {e}; delete objects labelled {} by hand",
                self.id,
                self.selector()
            );
        }
    }
}

pub(crate) async fn raw_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("test API server reachable");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
