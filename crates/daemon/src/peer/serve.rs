//! The blob endpoint other daemons copy from: `GET /blobs/sha256:<hex>` with a daemon's bearer
//! token. It serves a blob only when it belongs to an image the node's status reports
//! Succeeded, read from containerd's content store; any other digest is a 404 with the same
//! words whether or not the node has it, so nothing about what the node holds leaks. At most
//! `--peer-max-uploads` blobs go out at once (a caller waits up to 5 s for a turn, then gets 429
//! and tries its next source) and, with `--peer-upload-bytes-per-second`, no faster than that
//! in all, so the node's own workloads keep their network.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use kruise_cri::BlobFeed;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::auth::{Authenticator, Refusal};
use super::Holdings;
use crate::metrics::Metrics;

/// How long a caller waits for an upload slot before it is told to go elsewhere.
const SLOT_WAIT: Duration = Duration::from_secs(5);

/// Everything a request reads.
pub struct BlobServer {
    pub auth: Authenticator,
    pub feed: BlobFeed,
    pub holdings: watch::Receiver<Holdings>,
    pub uploads: Arc<Semaphore>,
    /// Bytes per second for all uploads together; `None`: no limit.
    pub rate: Option<Pacer>,
    pub metrics: Arc<Metrics>,
    /// The blobs of each image held, by its manifest digest (read once from the store).
    blobs_of: Mutex<HashMap<String, Arc<HashSet<String>>>>,
}

impl BlobServer {
    pub fn new(
        auth: Authenticator,
        feed: BlobFeed,
        holdings: watch::Receiver<Holdings>,
        max_uploads: usize,
        bytes_per_second: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            auth,
            feed,
            holdings,
            uploads: Arc::new(Semaphore::new(max_uploads.max(1))),
            rate: (bytes_per_second > 0).then(|| Pacer::new(bytes_per_second)),
            metrics,
            blobs_of: Mutex::new(HashMap::new()),
        }
    }

    /// Binds `addr` (an error at start-up when taken) and serves until `stop`.
    pub async fn serve(
        self: Arc<Self>,
        addr: SocketAddr,
        stop: CancellationToken,
    ) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("binding the peer blob server to {addr} (--peer-port): {e}")
        })?;
        let local = listener.local_addr()?;
        let app = Router::new()
            .route("/blobs/{digest}", get(blob))
            .with_state(self);
        let served = async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "the peer blob server failed");
            }
        };
        Ok((local, served))
    }

    /// Whether `digest` belongs to an image the node reports Succeeded; `Err` only when it was
    /// found in none and some image could not be read.
    async fn held(&self, digest: &str) -> Result<bool, String> {
        let mut unreadable = None;
        let roots = self.holdings.borrow().clone();
        {
            let mut known = self.blobs_of.lock().expect("not poisoned");
            known.retain(|root, _| roots.contains(root));
            if known.values().any(|b| b.contains(digest)) {
                return Ok(true);
            }
        }
        for root in roots.iter() {
            if self
                .blobs_of
                .lock()
                .expect("not poisoned")
                .contains_key(root)
            {
                continue;
            }
            let blobs = match self.feed.image_blobs(root).await {
                Ok(b) => Arc::new(b.into_iter().collect::<HashSet<_>>()),
                // Reported Succeeded but gone from the store (removed by hand): not served.
                Err(e) if e.kind == kruise_cri::CriErrorKind::NotFound => continue,
                // One image that cannot be read does not keep the others from being served.
                Err(e) => {
                    tracing::warn!(error = %e, %root, "reading an image's blobs to serve peers");
                    unreadable = Some(e.to_string());
                    continue;
                }
            };
            let found = blobs.contains(digest);
            self.blobs_of
                .lock()
                .expect("not poisoned")
                .insert(root.clone(), blobs);
            if found {
                return Ok(true);
            }
        }
        unreadable.map_or(Ok(false), Err)
    }

    fn answer(&self, result: &str, status: StatusCode, message: String) -> Response {
        self.metrics.peer_requests(result);
        (status, message).into_response()
    }
}

async fn blob(
    State(s): State<Arc<BlobServer>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match s.auth.check(authorization).await {
        Ok(c) => c,
        Err(r) => return refused(&s, r),
    };
    if !kruise_api::imageref::is_sha256_digest(&digest) {
        let msg = format!("{digest:?} is not a sha256:<64 hex> digest");
        return s.answer("bad_request", StatusCode::BAD_REQUEST, msg);
    }
    match s.held(&digest).await {
        Ok(true) => {}
        Ok(false) => {
            let msg = format!("{digest} is not served by this node");
            return s.answer("not_found", StatusCode::NOT_FOUND, msg);
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading containerd's content store to serve a peer");
            let msg = "the node's content store did not answer".to_string();
            return s.answer("error", StatusCode::SERVICE_UNAVAILABLE, msg);
        }
    }
    let Ok(Ok(slot)) = tokio::time::timeout(SLOT_WAIT, s.uploads.clone().acquire_owned()).await
    else {
        let msg = "this node is serving as many peers as it may; try another source".to_string();
        return s.answer("busy", StatusCode::TOO_MANY_REQUESTS, msg);
    };
    let from = caller.node.unwrap_or(caller.user);
    send(s, digest, slot, from).await
}

/// The blob's bytes, paced, holding the upload slot until the body is sent or dropped.
async fn send(
    s: Arc<BlobServer>,
    digest: String,
    slot: tokio::sync::OwnedSemaphorePermit,
    from: String,
) -> Response {
    let stream = match s.feed.read(&digest).await {
        Ok(st) => st,
        Err(e) => {
            tracing::warn!(error = %e, %digest, "reading a blob to serve a peer");
            let msg = format!("{digest} could not be read from the node's content store");
            return s.answer("error", StatusCode::SERVICE_UNAVAILABLE, msg);
        }
    };
    tracing::debug!(%digest, peer = %from, "serving a blob");
    s.metrics.peer_requests("served");
    let server = s.clone();
    let body = stream.then(move |chunk| {
        // The upload slot is held as long as the body is being sent.
        let _ = &slot;
        let server = server.clone();
        async move {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Some(p) = &server.rate {
                p.wait(chunk.len() as u64).await;
            }
            server.metrics.peer_served_bytes.inc_by(chunk.len() as u64);
            Ok::<_, std::io::Error>(chunk)
        }
    });
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        [("docker-content-digest", digest)],
        Body::from_stream(body),
    )
        .into_response()
}

fn refused(s: &BlobServer, r: Refusal) -> Response {
    let (result, status) = match &r {
        Refusal::Unauthenticated(_) => ("unauthenticated", StatusCode::UNAUTHORIZED),
        Refusal::Forbidden(_) => ("forbidden", StatusCode::FORBIDDEN),
        Refusal::Unavailable(_) => ("error", StatusCode::SERVICE_UNAVAILABLE),
    };
    if status == StatusCode::FORBIDDEN {
        tracing::warn!(reason = %r, "refused a blob request");
    }
    s.answer(result, status, r.to_string())
}

/// Paces all uploads together to a byte rate: each chunk waits for its share of the time.
pub struct Pacer {
    bytes_per_second: u64,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    pub async fn wait(&self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let start = {
            let mut next = self.next.lock().expect("not poisoned");
            let start = (*next).max(tokio::time::Instant::now());
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}
