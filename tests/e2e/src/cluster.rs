//! The API server the binaries talk to: the project's test API server (default), or the cluster
//! of `E2E_KUBECONFIG`. Objects a test creates through [`Cluster`] helpers are deleted when it
//! drops; names are unique per test so tests can share a real cluster.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Node};
use kruise_test_apiserver::TestApiServer;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

pub struct Cluster {
    pub client: Client,
    kubeconfig: PathBuf,
    server: Option<TestApiServer>,
    created_nodes: std::sync::Mutex<Vec<String>>,
    created_namespaces: std::sync::Mutex<Vec<String>>,
    /// A short random suffix for this test's object names.
    pub id: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unique_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            ^ std::process::id()
    )
}

impl Cluster {
    /// The test API server with the project's CRDs, or the cluster in `E2E_KUBECONFIG` (whose
    /// CRDs must be installed: `kubectl apply -f config/crd/`).
    pub async fn start() -> Self {
        let id = unique_id();
        if let Ok(path) = std::env::var("E2E_KUBECONFIG") {
            let kubeconfig = PathBuf::from(path);
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig)
                .expect("E2E_KUBECONFIG is readable");
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("E2E_KUBECONFIG is valid");
            let client = Client::try_from(config).expect("client");
            return Self {
                client,
                kubeconfig,
                server: None,
                created_nodes: Default::default(),
                created_namespaces: Default::default(),
                id,
            };
        }
        Self::local_with_id(id)
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
            created_nodes: Default::default(),
            created_namespaces: Default::default(),
            id,
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

    /// Creates a Ready Node object (no kubelet behind it), deleted with the cluster handle.
    pub async fn create_node(&self, name: &str, labels: serde_json::Value) -> Node {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "KubeletReady", "message": "e2e"}]},
        }))
        .unwrap();
        let created = nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node created");
        self.created_nodes.lock().unwrap().push(name.to_string());
        created
    }

    pub async fn create_namespace(&self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => self
                .created_namespaces
                .lock()
                .unwrap()
                .push(name.to_string()),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating namespace {name}: {e}"),
        }
    }

    /// `GET /_test/requests` on the test API server: count of requests by verb, resource and
    /// subresource. `None` on a real cluster.
    pub async fn request_count(
        &self,
        verb: &str,
        resource: &str,
        subresource: &str,
    ) -> Option<u64> {
        let server = self.server.as_ref()?;
        let body = raw_http(server.addr(), "GET", "/_test/requests", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("request counts are JSON");
        Some(
            v["requests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["verb"] == verb
                        && r["resource"] == resource
                        && r["subresource"] == subresource
                })
                .map(|r| r["count"].as_u64().unwrap_or(0))
                .sum(),
        )
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
    fn drop(&mut self) {
        if self.server.is_some() {
            return; // the whole server goes
        }
        let client = self.client.clone();
        let nodes = std::mem::take(&mut *self.created_nodes.lock().unwrap());
        let namespaces = std::mem::take(&mut *self.created_namespaces.lock().unwrap());
        let cleanup = async move {
            let api: Api<Node> = Api::all(client.clone());
            for n in nodes {
                let _ = api.delete(&n, &DeleteParams::default()).await;
            }
            let api: Api<Namespace> = Api::all(client);
            for n in namespaces {
                let _ = api.delete(&n, &DeleteParams::default()).await;
            }
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let _ = std::thread::spawn(move || handle.block_on(cleanup)).join();
        }
    }
}

async fn raw_http(
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
