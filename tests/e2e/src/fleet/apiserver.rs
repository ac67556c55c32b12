//! The test API server as a process of its own, for benchmarks: its CPU and memory apart from
//! the simulator's, its `/metrics` read as a real kube-apiserver's would be.

use std::time::{Duration, Instant};

/// A `kruise-test-apiserver` process, stopped on drop.
pub struct ApiServer {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl ApiServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = crate::Binary::Manager
            .path()
            .with_file_name("kruise-test-apiserver");
        let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
        let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
        let child = std::process::Command::new(&bin)
            .arg("--crd-dir")
            .arg(crds)
            .arg("--kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            .args(["--log-level", "warn"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {}: {e} (scripts/bench builds it)", bin.display())
            });
        let kc = dir.path().join("kubeconfig");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&kc).map_or(true, |m| m.len() == 0) {
            assert!(
                Instant::now() < deadline,
                "the test API server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&kc).unwrap();
        let url = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .expect("a server in the kubeconfig")
            .trim()
            .to_string();
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    /// A client of this server, with `namespaces` made (and no cleanup: the server goes whole).
    pub async fn cluster(&self, namespaces: &[&str]) -> crate::Cluster {
        let cluster = crate::Cluster::from_kubeconfig(self.kubeconfig())
            .await
            .without_cleanup();
        for ns in namespaces {
            cluster.shared_namespace(ns).await;
        }
        cluster
    }

    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self._dir.path().join("kubeconfig")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/metrics` of the server.
    pub async fn metrics(&self) -> String {
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/');
        let addr = addr.parse().expect("the kubeconfig names host:port");
        crate::cluster::raw_http(addr, "GET", "/metrics", None).await
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
