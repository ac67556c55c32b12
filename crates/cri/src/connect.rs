//! A tonic channel over a unix socket. The URI tonic needs is a placeholder; every connection
//! dials the socket path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Largest message accepted from the runtime: `ListImages` on a node with thousands of images.
pub const MAX_DECODE_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The socket path of a CRI endpoint: `unix:///run/containerd/containerd.sock` or a bare path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if endpoint.contains("://") && !endpoint.starts_with("unix://") {
        return Err(format!(
            "runtime endpoint {endpoint:?} is not a unix socket; use unix:///path/to/cri.sock"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "runtime endpoint {endpoint:?} must be an absolute socket path"
        ));
    }
    Ok(PathBuf::from(path))
}

/// Connects to the socket now, failing if nothing listens there within `connect_timeout`.
pub async fn connect(
    path: &Path,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    endpoint(connect_timeout)
        .connect_with_connector(tower::service_fn(move |_| dial(path.clone())))
        .await
}

/// A channel that dials on first use and redials after the runtime restarts; for a daemon that
/// may start before the runtime does.
pub fn connect_lazy(path: &Path, connect_timeout: Duration) -> Channel {
    let path = path.to_path_buf();
    endpoint(connect_timeout)
        .connect_with_connector_lazy(tower::service_fn(move |_| dial(path.clone())))
}

fn endpoint(connect_timeout: Duration) -> Endpoint {
    Endpoint::from_static("http://[::]:50051").connect_timeout(connect_timeout)
}

async fn dial(path: PathBuf) -> std::io::Result<TokioIo<UnixStream>> {
    Ok(TokioIo::new(UnixStream::connect(path).await?))
}
