//! A small Kubernetes API server for tests and the local demo. It is a stand-in, not a lenient
//! one: objects are checked as kube-apiserver checks them (CRD schemas with defaults and CEL rules,
//! typed decoding of built-in kinds, metadata rules, `409 Conflict` on a stale `resourceVersion`,
//! `410 Gone` for a watch from too old a version, finalizers, garbage collection by owner), and
//! what the binaries get away with here they must get away with on a real cluster.
//!
//! Also as kube-apiserver: field validation (`fieldValidation`), `dryRun`, JSON and YAML bodies,
//! protobuf bodies of every built-in kind it serves (415 for other kinds), one event store
//! served as `events.k8s.io/v1` and core `v1`, service-account tokens (TokenRequest on
//! `serviceaccounts/{name}/token`, TokenReview on `authentication.k8s.io/v1 tokenreviews`), and
//! `apiserver_request_total` on `/metrics`.
//!
//! Serves plain HTTP on loopback without authentication (the tokens it issues are for workloads
//! to show each other, reviewed through the API); writes a kubeconfig that kube-rs and kubectl
//! use. Faults (dropped watches, failing writes, latency), request counts and the token clock
//! (`POST /_test/clock {"advanceSeconds": N}`, for token expiry) are under `/_test/`.

mod body;
mod builtin;
mod catalog;
mod discovery;
mod errors;
mod events_view;
mod faults;
mod fieldvalidation;
mod gc;
mod http;
mod list;
mod meta;
mod metrics;
mod patch;
mod protobuf;
mod selector;
mod store;
mod table;
mod tokens;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use faults::FaultRequest;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How often background garbage collection looks for objects whose owners are gone.
const GC_EVERY: Duration = Duration::from_millis(500);

/// A running server; stopped when dropped.
pub struct TestApiServer {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    shutdown: CancellationToken,
    _dir: Option<tempfile_lite::TempDir>,
}

impl TestApiServer {
    /// Starts on `addr` (port 0 picks a free port), with the CRDs found in `crd_dirs` installed,
    /// and writes a kubeconfig (to `kubeconfig`, or into a temporary directory).
    pub async fn start(
        addr: SocketAddr,
        crd_dirs: &[&Path],
        kubeconfig: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let store = store::Store::new();
        for dir in crd_dirs {
            install_crds(&store, dir)?;
        }
        // As a real server's watch cache starts from what it holds at start, watches from
        // before then (resourceVersion "1") are too old.
        store.compact();
        let app = http::App {
            store: store.clone(),
            faults: Arc::new(faults::Faults::default()),
            metrics: Arc::new(metrics::Metrics::default()),
            tokens: Arc::new(tokens::Tokens::default()),
        };
        let router = axum::Router::new().fallback(http::handle).with_state(app);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(GC_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => store.collect_garbage(),
                }
            }
        });
        let (dir, kubeconfig) = match kubeconfig {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let d = tempfile_lite::TempDir::new("kruise-apiserver")?;
                let p = d.path().join("kubeconfig");
                (Some(d), p)
            }
        };
        std::fs::write(&kubeconfig, kubeconfig_yaml(addr))?;
        Ok(Self {
            addr,
            kubeconfig,
            shutdown,
            _dir: dir,
        })
    }

    /// Like [`start`](Self::start), on a thread and runtime of its own: a caller that blocks its
    /// runtime (a test waiting on a child process, pushing an image) cannot starve the server,
    /// and so cannot stall the binaries talking to it. Stops when the handle drops.
    pub fn start_detached(
        addr: SocketAddr,
        crd_dirs: &[&Path],
        kubeconfig: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let dirs: Vec<PathBuf> = crd_dirs.iter().map(|d| d.to_path_buf()).collect();
        let kubeconfig = kubeconfig.map(Path::to_path_buf);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => return drop(started_tx.send(Err(e.into()))),
                };
                runtime.block_on(async move {
                    let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
                    match Self::start(addr, &dirs, kubeconfig.as_deref()).await {
                        Ok(server) => {
                            let stopped = server.shutdown.clone();
                            if started_tx.send(Ok(server)).is_ok() {
                                stopped.cancelled().await;
                            }
                        }
                        Err(e) => drop(started_tx.send(Err(e))),
                    }
                });
            })?;
        started_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the test API server's thread ended before starting"))?
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A kubeconfig for `http://ADDR` with one context, `kruise-test`.
pub fn kubeconfig_yaml(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kruise-test\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: kruise-test\n  context:\n    cluster: kruise-test\n    user: kruise-test\n    namespace: default\ncurrent-context: kruise-test\nusers:\n- name: kruise-test\n  user: {{}}\n"
    )
}

fn install_crds(store: &store::Store, dir: &Path) -> anyhow::Result<()> {
    let info = store
        .lock()
        .catalog
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("built in");
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for path in files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
    {
        let text = std::fs::read_to_string(&path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let crd: Value = serde::Deserialize::deserialize(doc)?;
            if crd.is_null() {
                continue;
            }
            store
                .create(&info, "v1", "", crd)
                .map_err(|e| anyhow::anyhow!("installing {}: {}", path.display(), e.message))?;
        }
    }
    Ok(())
}

/// A temporary directory without another dependency.
mod tempfile_lite {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> std::io::Result<Self> {
            let p =
                std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p)?;
            Ok(Self(p))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
