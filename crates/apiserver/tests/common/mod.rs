//! Where a test runs: a test API server of its own (default), or the cluster of `E2E_KUBECONFIG`,
//! shared with other tests and other users at once. Either way a test works in a namespace of its
//! own (`apitest-<id>`), labels everything it creates `e2e.kruise.io/test=<id>` (cluster-scoped
//! objects get unique names too), never assumes a list holds only its objects, and deletes what
//! it made in `finish`; the label lets CI sweep what a failed test left.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kruise_api::NodeImage;
use kruise_test_apiserver::TestApiServer;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

pub const TEST_LABEL: &str = "e2e.kruise.io/test";

pub struct Env {
    pub client: Client,
    /// What `client` was made from.
    config: kube::Config,
    /// Random hex: the label value and the suffix of this test's names.
    pub id: String,
    /// This test's namespace, created labelled.
    pub namespace: String,
    server: Option<TestApiServer>,
}

impl Env {
    /// The cluster of `E2E_KUBECONFIG` (its CRDs installed from `config/crd`), or a test API
    /// server of this test's own.
    pub async fn connect() -> Self {
        match std::env::var("E2E_KUBECONFIG") {
            Ok(path) => {
                let kubeconfig =
                    kube::config::Kubeconfig::read_from(&path).expect("E2E_KUBECONFIG is readable");
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .expect("E2E_KUBECONFIG is valid");
                Self::with(config, None).await
            }
            Err(_) => Self::local().await,
        }
    }

    /// Always a test API server of this test's own, even with `E2E_KUBECONFIG` set: for tests
    /// of what only that server has (`/_test/` faults and request records, compaction).
    pub async fn local() -> Self {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
        let server = TestApiServer::start("127.0.0.1:0".parse().unwrap(), &[&crds], None)
            .await
            .expect("test API server starts");
        Self::with(
            kube::Config::new(server.url().parse().unwrap()),
            Some(server),
        )
        .await
    }

    async fn with(config: kube::Config, server: Option<TestApiServer>) -> Self {
        let client = Client::try_from(config.clone()).expect("client");
        let id = format!("{:08x}", uuid::Uuid::new_v4().as_u128() as u32);
        let namespace = format!("apitest-{id}");
        let env = Self {
            client,
            config,
            id,
            namespace,
            server,
        };
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": env.namespace, "labels": env.labels()}}),
        )
        .unwrap();
        Api::<Namespace>::all(env.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("the test's namespace is created");
        env
    }

    /// A client that answers a 429, 503 or 504 at once, where kube-rs would retry it for minutes.
    pub fn client_without_retries(&self) -> Client {
        let mut config = self.config.clone();
        config.default_retry = false;
        Client::try_from(config).expect("client")
    }

    /// The kubeconfig that reaches this test's server, for programs such as kubectl.
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        match &self.server {
            Some(server) => server.kubeconfig().to_path_buf(),
            None => std::env::var("E2E_KUBECONFIG")
                .expect("a shared cluster comes from E2E_KUBECONFIG")
                .into(),
        }
    }

    /// Whether this test runs on a test API server of its own.
    pub fn is_local(&self) -> bool {
        self.server.is_some()
    }

    /// The local test API server; only for tests started with [`local`](Self::local).
    pub fn server(&self) -> &TestApiServer {
        self.server
            .as_ref()
            .expect("a test of the test server's controls starts with Env::local")
    }

    /// `prefix-<id>`: a name no other test uses.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.id)
    }

    /// `{"e2e.kruise.io/test": "<id>"}`.
    pub fn labels(&self) -> Value {
        json!({ TEST_LABEL: self.id })
    }

    /// `e2e.kruise.io/test=<id>`.
    pub fn selector(&self) -> String {
        format!("{TEST_LABEL}={}", self.id)
    }

    /// Deletes the namespace and the labelled cluster-scoped objects. Called at the end of a
    /// test; one that fails first leaves them for the label's sweep.
    pub async fn finish(self) {
        let labelled = ListParams::default().labels(&self.selector());
        let _ = Api::<NodeImage>::all(self.client.clone())
            .delete_collection(&DeleteParams::default(), &labelled)
            .await;
        let _ = Api::<Node>::all(self.client.clone())
            .delete_collection(&DeleteParams::default(), &labelled)
            .await;
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }

    /// A request as written, for what kube-rs does not send or show: raw bodies, content types,
    /// query parameters, `Warning` headers.
    pub async fn send(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let mut req = http::Request::builder().method(method).uri(path);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let req = req.body(kube::client::Body::from(body.to_vec())).unwrap();
        let resp = self.client.send(req).await.expect("the server answers");
        let status = resp.status().as_u16();
        let warnings = resp
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let bytes = resp.into_body().collect_bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            warnings,
            body,
        }
    }

    /// `GET /_test/...` or `POST /_test/...` on the local server.
    pub async fn test_control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let _ = self.server();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let reply = self
            .send(method, path, "application/json", body.as_bytes())
            .await;
        assert_eq!(reply.status, 200, "{path}: {:?}", reply.body);
        reply.body
    }
}

/// What [`Env::send`] got back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `Warning` header values, as sent (`299 - "…"`).
    pub warnings: Vec<String>,
    /// JSON, or the text as a JSON string.
    pub body: Value,
}

impl Reply {
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

pub fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `f` until it gives a value; a real cluster's controllers (garbage collection, namespace
/// deletion) take longer than the test server's.
pub async fn wait_for<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
