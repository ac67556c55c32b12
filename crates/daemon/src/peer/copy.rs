//! Copying an image's missing blobs from the peers a tag names, into containerd's content store,
//! before CRI's pull. Each blob is tried from each source in turn: a source that refuses, fails,
//! stalls (no byte for 10 s), is slower than `--peer-min-bytes-per-second` after its first 5 s,
//! or sends bytes that do not hash to the digest is dropped for that blob (a source that cannot
//! be reached at all, for the rest of the copy), and the registry gets what no peer delivered.
//! Copied blobs carry the `containerd.io/distribution.source.<host>` label a registry pull
//! would set, and stay under a lease until CRI's pull has referenced them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kruise_api::PeerSource;
use kruise_cri::feed::Written;
use kruise_cri::{BlobFeed, FeedError, Lease};

use crate::metrics::Metrics;

/// No byte from a source for this long: it stalled.
const STALL: Duration = Duration::from_secs(10);
/// A source's rate is judged only after this long (TCP and the first read need a moment).
const RATE_GRACE: Duration = Duration::from_secs(5);
/// How long blobs copied stay leased at most when the daemon never gets to release them.
pub const LEASE_TTL: Duration = Duration::from_secs(3600);

/// What one copy did, for the tag's status and to end its lease after the pull.
#[derive(Debug, Default)]
pub struct PeerCopy {
    /// Bytes copied from each peer node.
    pub from_peers: BTreeMap<String, u64>,
    /// Bytes the node still lacked for CRI's pull to fetch from the registry, when known.
    pub registry_bytes: Option<u64>,
    pub lease: Option<Lease>,
}

/// How this daemon reaches its peers.
pub struct PeerClient {
    pub http: reqwest::Client,
    /// The projected service-account token presented to peers (read anew for each copy: the
    /// kubelet rotates it).
    pub token_file: PathBuf,
    /// A source slower than this after [`RATE_GRACE`] is dropped.
    pub min_rate: u64,
}

impl PeerClient {
    pub fn new(token_file: PathBuf, min_rate: u64) -> Self {
        // A peer that accepts and then says nothing is as stalled as one that stops mid-blob.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(STALL)
            .build()
            .expect("a plain HTTP client builds");
        Self {
            http,
            token_file,
            min_rate,
        }
    }

    /// Copies what the store lacks of `blobs` (digest, size) from `sources`, labelled `labels`.
    pub async fn copy(
        &self,
        feed: &BlobFeed,
        blobs: &[(String, u64)],
        sources: &[PeerSource],
        labels: &HashMap<String, String>,
        metrics: &Metrics,
    ) -> PeerCopy {
        let mut out = PeerCopy::default();
        let token = match tokio::fs::read_to_string(&self.token_file).await {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                tracing::warn!(file = %self.token_file.display(), error = %e, "no peer token (--peer-token-file); pulling from the registry");
                return out;
            }
        };
        let mut unreachable: HashSet<String> = HashSet::new();
        for (digest, size) in blobs {
            match feed.has(digest).await {
                Ok(false) => {}
                Ok(true) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "containerd's content store; pulling from the registry");
                    return out;
                }
            }
            let Some(lease) = self.lease(feed, &mut out).await else {
                return out;
            };
            let blob = Blob {
                digest,
                size: *size,
                labels,
                token: &token,
            };
            let delivered = self
                .first_delivery(feed, &lease, &blob, sources, &mut unreachable, metrics)
                .await;
            match delivered {
                Ok(Some((node, Written::Committed))) => {
                    *out.from_peers.entry(node).or_default() += size;
                    metrics.peer_copied_bytes.inc_by(*size);
                }
                // Stored by another writer meanwhile, or no source delivered: the registry has
                // the rest.
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "writing a peer's blob into containerd; pulling the rest from the registry");
                    return out;
                }
            }
        }
        out
    }

    /// The blob from the first source that delivers it: the node and how it was written, or
    /// `None` when none did; `Err` when containerd itself failed.
    async fn first_delivery(
        &self,
        feed: &BlobFeed,
        lease: &Lease,
        blob: &Blob<'_>,
        sources: &[PeerSource],
        unreachable: &mut HashSet<String>,
        metrics: &Metrics,
    ) -> Result<Option<(String, Written)>, String> {
        for source in sources {
            if unreachable.contains(&source.node) {
                continue;
            }
            match self.one(feed, lease, source, blob).await {
                Ok(written) => {
                    metrics.peer_copies("copied");
                    return Ok(Some((source.node.clone(), written)));
                }
                Err(Failure::Runtime(e)) => return Err(e),
                Err(Failure::Source {
                    kind,
                    reason,
                    reachable,
                }) => {
                    tracing::warn!(peer = %source.node, address = %source.address, digest = %blob.digest, %reason, "dropping the peer for this blob");
                    metrics.peer_copies(kind);
                    if !reachable {
                        unreachable.insert(source.node.clone());
                    }
                }
            }
        }
        Ok(None)
    }

    async fn lease(&self, feed: &BlobFeed, out: &mut PeerCopy) -> Option<Lease> {
        if let Some(l) = &out.lease {
            return Some(l.clone());
        }
        match feed.lease(LEASE_TTL).await {
            Ok(l) => Some(out.lease.insert(l).clone()),
            Err(e) => {
                tracing::warn!(error = %e, "containerd gave no lease; pulling from the registry");
                None
            }
        }
    }

    async fn one(
        &self,
        feed: &BlobFeed,
        lease: &Lease,
        source: &PeerSource,
        blob: &Blob<'_>,
    ) -> Result<Written, Failure> {
        let url = format!("http://{}/blobs/{}", source.address, blob.digest);
        let answer = self.http.get(&url).bearer_auth(blob.token).send().await;
        let response = match answer {
            Ok(r) if r.status().is_success() => r,
            Ok(mut r) => {
                let status = r.status();
                // The peer's words, a few KiB at most: enough to say why.
                let words = tokio::time::timeout(Duration::from_secs(2), r.chunk()).await;
                let words = match words {
                    Ok(Ok(Some(b))) => {
                        String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned()
                    }
                    _ => String::new(),
                };
                let kind = if status.as_u16() == 429 {
                    "busy"
                } else {
                    "refused"
                };
                return Err(Failure::source(kind, format!("{status}: {words}"), true));
            }
            Err(e) => {
                let reachable = !e.is_connect();
                return Err(Failure::source("unreachable", e.to_string(), reachable));
            }
        };
        let body = guarded(response.bytes_stream(), self.min_rate);
        let labels = blob.labels.clone();
        match feed
            .write(lease, blob.digest, blob.size, labels, body)
            .await
        {
            Ok(written) => Ok(written),
            Err(FeedError::Runtime(e)) => Err(Failure::Runtime(e.to_string())),
            Err(e @ (FeedError::DigestMismatch { .. } | FeedError::Size { .. })) => {
                Err(Failure::source("corrupt", e.to_string(), true))
            }
            Err(e @ (FeedError::Source(_) | FeedError::StoredMeanwhile)) => {
                Err(Failure::source("failed", e.to_string(), true))
            }
        }
    }
}

/// One blob to copy, and what its copy presents and sets.
struct Blob<'a> {
    digest: &'a str,
    size: u64,
    labels: &'a HashMap<String, String>,
    token: &'a str,
}

enum Failure {
    Source {
        /// The metric's result label.
        kind: &'static str,
        reason: String,
        reachable: bool,
    },
    Runtime(String),
}

impl Failure {
    fn source(kind: &'static str, reason: String, reachable: bool) -> Self {
        Self::Source {
            kind,
            reason,
            reachable,
        }
    }
}

/// The body's chunks, cut short with an error when no chunk comes for [`STALL`] or the rate
/// falls under `min_rate` after [`RATE_GRACE`].
fn guarded(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    min_rate: u64,
) -> impl Stream<Item = Result<Bytes, String>> + Send {
    let start = Instant::now();
    futures::stream::unfold(
        (Box::pin(body), 0u64, false),
        move |(mut body, mut bytes, done)| async move {
            if done {
                return None;
            }
            let next = match tokio::time::timeout(STALL, body.next()).await {
                Err(_) => Err(format!("stalled: no byte for {}s", STALL.as_secs())),
                Ok(None) => return None,
                Ok(Some(Err(e))) => Err(format!("the transfer broke: {e}")),
                Ok(Some(Ok(chunk))) => {
                    bytes += chunk.len() as u64;
                    let took = start.elapsed();
                    let rate = bytes as f64 / took.as_secs_f64().max(0.001);
                    if took > RATE_GRACE && min_rate > 0 && rate < min_rate as f64 {
                        Err(format!(
                            "too slow: {}/s, under --peer-min-bytes-per-second {}/s",
                            kruise_api::units::bytes(rate as u64),
                            kruise_api::units::bytes(min_rate)
                        ))
                    } else {
                        Ok(chunk)
                    }
                }
            };
            let failed = next.is_err();
            Some((next, (body, bytes, failed)))
        },
    )
}
