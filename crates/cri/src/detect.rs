//! Which container runtime does this node run? Either the operator says (`--runtime-endpoint`),
//! or the daemon probes the sockets OpenKruise probes, in OpenKruise's order, under the host's
//! run directory (the daemon mounts the host's `/var/run` at `/hostvarrun`). A socket counts only
//! if it answers CRI v1 (`Version` and `ImageFsInfo`), not merely because the file exists.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::client::{CriClient, RuntimeVersion};
use crate::connect::{connect, socket_path};

/// Sockets probed under the host run directory, in order (OpenKruise's `factory_unix.go`); the
/// second of each pair is where k3s and some distributions put it.
pub const CANDIDATE_SOCKETS: [(&str, RuntimeKind); 6] = [
    ("containerd.sock", RuntimeKind::Containerd),
    ("containerd/containerd.sock", RuntimeKind::Containerd),
    ("crio.sock", RuntimeKind::CriO),
    ("crio/crio.sock", RuntimeKind::CriO),
    ("cri-dockerd.sock", RuntimeKind::CriDockerd),
    ("cri-dockerd/cri-dockerd.sock", RuntimeKind::CriDockerd),
];

/// How long one candidate may take to answer before the next is tried.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Containerd,
    CriO,
    CriDockerd,
    /// An explicit endpoint; the runtime's own name is in the version.
    Custom,
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeKind::Containerd => "containerd",
            RuntimeKind::CriO => "cri-o",
            RuntimeKind::CriDockerd => "cri-dockerd",
            RuntimeKind::Custom => "cri",
        })
    }
}

/// A runtime that answered, with a client on it.
#[derive(Debug, Clone)]
pub struct DetectedRuntime {
    pub kind: RuntimeKind,
    pub endpoint: String,
    pub version: RuntimeVersion,
    pub client: CriClient,
}

/// No runtime answered; says what was tried and why each failed.
#[derive(Debug, thiserror::Error)]
pub struct DetectError {
    pub tried: Vec<(String, String)>,
    pub hint: String,
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no container runtime answered CRI v1; tried:")?;
        for (endpoint, why) in &self.tried {
            write!(f, " {endpoint} ({why});")?;
        }
        write!(f, " {}", self.hint)
    }
}

/// Uses `explicit` if given, else probes [`CANDIDATE_SOCKETS`] under `host_run_dir`.
pub async fn detect(
    explicit: Option<&str>,
    host_run_dir: &Path,
) -> Result<DetectedRuntime, DetectError> {
    if let Some(endpoint) = explicit {
        let path = socket_path(endpoint).map_err(|why| DetectError {
            tried: vec![(endpoint.to_string(), why)],
            hint: "fix --runtime-endpoint (Helm value daemon.runtimeEndpoint), e.g. unix:///hostvarrun/containerd/containerd.sock".into(),
        })?;
        return probe(&path, RuntimeKind::Custom)
            .await
            .map_err(|why| DetectError {
                tried: vec![(endpoint.to_string(), why)],
                hint: "check that the runtime runs and that --runtime-endpoint (Helm value \
                       daemon.runtimeEndpoint) names its CRI socket as the daemon sees it"
                    .into(),
            });
    }
    let mut tried = Vec::new();
    for (relative, kind) in CANDIDATE_SOCKETS {
        let path = host_run_dir.join(relative);
        if !path.exists() {
            tried.push((path.display().to_string(), "no such file".to_string()));
            continue;
        }
        match probe(&path, kind).await {
            Ok(found) => return Ok(found),
            Err(why) => tried.push((path.display().to_string(), why)),
        }
    }
    Err(DetectError {
        tried,
        hint: format!(
            "mount the host directory holding the runtime's socket at {} (Helm value \
             daemon.socketLocation, default /var/run), or name the socket with \
             --runtime-endpoint=unix:///path/to/cri.sock (Helm value daemon.runtimeEndpoint)",
            host_run_dir.display()
        ),
    })
}

async fn probe(path: &Path, kind: RuntimeKind) -> Result<DetectedRuntime, String> {
    let endpoint = format!("unix://{}", path.display());
    let channel = tokio::time::timeout(PROBE_TIMEOUT, connect(path, PROBE_TIMEOUT))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect failed: {}", source_chain(&e)))?;
    let client = CriClient::new(channel, endpoint.clone()).with_metadata_timeout(PROBE_TIMEOUT);
    let version = client
        .version()
        .await
        .map_err(|e| format!("Version failed: {e}"))?;
    // The image API is what the daemon needs; a runtime whose CRI plugin failed to load answers
    // Version on some versions but not ImageService.
    client
        .image_fs_info()
        .await
        .map_err(|e| format!("ImageFsInfo failed: {e}"))?;
    Ok(DetectedRuntime {
        kind,
        endpoint,
        version,
        client: client.with_metadata_timeout(crate::client::DEFAULT_METADATA_TIMEOUT),
    })
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
