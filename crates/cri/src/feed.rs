//! Blobs in and out of containerd's content store, for peer copies. Out: a blob's bytes as a
//! stream, and which blobs make up an image the node holds (so a daemon serves nothing else). In:
//! a blob from a peer written under a lease (so containerd's garbage collection keeps it until
//! CRI's pull references it), hashed as it streams and committed only when its digest and size
//! match; anything else is aborted, so a wrong byte never reaches the store and never leaves a
//! partial write behind for the registry pull that follows.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, Stream, StreamExt};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::content_proto::{
    content_client::ContentClient, AbortRequest, InfoRequest, ReadContentRequest, WriteAction,
    WriteContentRequest,
};
use crate::error::CriError;
use crate::leases_proto::{leases_client::LeasesClient, CreateRequest, DeleteRequest};
use crate::progress::{err, request, CRI_NAMESPACE};

/// containerd's label that makes an object a GC root until the time it holds.
const GC_EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// Bytes per Write message: few round trips, well under containerd's 16 MiB receive limit.
const WRITE_CHUNK: usize = 1 << 20;
/// An index or manifest is larger than this only by mistake; it is not read.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// containerd's content and leases services in the CRI namespace.
#[derive(Debug, Clone)]
pub struct BlobFeed {
    content: ContentClient<Channel>,
    leases: LeasesClient<Channel>,
}

/// A containerd lease: what was written under it stays until it is released or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
}

/// How a write ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The bytes were verified and committed.
    Committed,
    /// The store had the blob already; nothing was read from the source.
    AlreadyPresent,
}

/// Why a blob from a source was not stored. Only `Runtime` is about the node itself; the others
/// are the source's fault, and the next source is tried.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("the bytes do not match the digest: expected {expected}, got sha256:{got}")]
    DigestMismatch { expected: String, got: String },
    #[error("the source sent {got} bytes where {expected} were expected")]
    Size { expected: u64, got: u64 },
    #[error("{0}")]
    Source(String),
    #[error("containerd's content store: {0}")]
    Runtime(#[from] CriError),
    /// Another writer committed the blob while this one wrote it (never returned by
    /// [`BlobFeed::write`], which reports it as [`Written::AlreadyPresent`]).
    #[error("the blob was stored by another writer meanwhile")]
    StoredMeanwhile,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

/// An index (`manifests`) or an image manifest (`config`, `layers`).
#[derive(Deserialize)]
struct Node {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

impl BlobFeed {
    /// On the runtime's connection (the CRI client's channel).
    pub fn new(channel: Channel) -> Self {
        Self {
            content: ContentClient::new(channel.clone()),
            leases: LeasesClient::new(channel),
        }
    }

    /// A lease that expires by itself after `ttl` (a daemon that dies mid-copy leaks nothing).
    pub async fn lease(&self, ttl: Duration) -> Result<Lease, CriError> {
        let expire = chrono_rfc3339(SystemTime::now() + ttl);
        let id = format!("kruise-peer-copy-{:016x}", fastrand::u64(..));
        let r = request(CreateRequest {
            id: id.clone(),
            labels: HashMap::from([(GC_EXPIRE_LABEL.to_string(), expire)]),
        });
        self.leases
            .clone()
            .create(r)
            .await
            .map_err(err("leases.Create"))?;
        Ok(Lease { id })
    }

    /// Ends the lease: what it kept now lives only as long as an image references it.
    pub async fn release(&self, lease: &Lease) -> Result<(), CriError> {
        let r = request(DeleteRequest {
            id: lease.id.clone(),
            sync: false,
        });
        match self.leases.clone().delete(r).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(err("leases.Delete")(s)),
        }
    }

    /// Whether the store holds the committed blob.
    pub async fn has(&self, digest: &str) -> Result<bool, CriError> {
        let r = request(InfoRequest {
            digest: digest.to_string(),
        });
        match self.content.clone().info(r).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(err("content.Info")(s)),
        }
    }

    /// The blob's bytes, as containerd sends them (no deadline: the reader bounds it).
    pub async fn read(
        &self,
        digest: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, CriError>> + Send + 'static, CriError> {
        let mut r = tonic::Request::new(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        namespace(&mut r);
        let stream = self
            .content
            .clone()
            .read(r)
            .await
            .map_err(err("content.Read"))?
            .into_inner();
        Ok(stream.map(|m| m.map(|m| Bytes::from(m.data)).map_err(err("content.Read"))))
    }

    /// Every blob of the image whose index or manifest is `root`: the root itself, the platform
    /// manifests of an index that the store holds, and their configs and layers.
    pub async fn image_blobs(&self, root: &str) -> Result<Vec<String>, CriError> {
        let mut out = vec![root.to_string()];
        let top = self.parse(root).await?;
        let mut manifests = Vec::new();
        for child in top.manifests.iter().map(|d| &d.digest) {
            if self.has(child).await? {
                out.push(child.clone());
                manifests.push(self.parse(child).await?);
            }
        }
        if top.manifests.is_empty() {
            manifests.push(top);
        }
        for m in manifests {
            out.extend(m.config.map(|c| c.digest));
            out.extend(m.layers.into_iter().map(|l| l.digest));
        }
        Ok(out)
    }

    async fn parse(&self, digest: &str) -> Result<Node, CriError> {
        let mut data = Vec::new();
        let mut stream = Box::pin(self.read(digest).await?);
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?);
            if data.len() > MAX_MANIFEST_BYTES {
                return Err(CriError::protocol(
                    "content.Read",
                    format!("{digest} is over {MAX_MANIFEST_BYTES} bytes: not a manifest"),
                ));
            }
        }
        serde_json::from_slice(&data).map_err(|e| {
            CriError::protocol("content.Read", format!("{digest} is not a manifest: {e}"))
        })
    }

    /// Writes the blob `digest` of `size` bytes from `body` under `lease`, committing it with
    /// `labels` only when the bytes hash to `digest`. A source that errs, sends too much or too
    /// little, or sends other bytes leaves nothing behind. A blob another writer commits
    /// meanwhile (a registry pull, another copy) ends the write as present.
    pub async fn write<S>(
        &self,
        lease: &Lease,
        digest: &str,
        size: u64,
        labels: HashMap<String, String>,
        body: S,
    ) -> Result<Written, FeedError>
    where
        S: Stream<Item = Result<Bytes, String>> + Send,
    {
        // A ref of its own: a registry pull (ref `layer-<digest>`) never resumes from our bytes.
        let reference = format!("kruise-peer-{}-{:08x}", short(digest), fastrand::u32(..));
        let target = Target {
            reference: &reference,
            digest,
            size,
        };
        let outcome = match self.open(lease, &target).await {
            Ok(Some(mut stream)) => match stream.send_body(&target, body).await {
                Ok(()) => stream.commit(&target, labels).await,
                Err(e) => Err(e),
            },
            Ok(None) => return Ok(Written::AlreadyPresent),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => Ok(Written::Committed),
            Err(e) => {
                self.abort(lease, &reference).await;
                match e {
                    FeedError::StoredMeanwhile => Ok(Written::AlreadyPresent),
                    e => Err(e),
                }
            }
        }
    }

    /// Drops an unfinished write. Nothing to abort when it never started; any other failure
    /// is only logged: the lease's expiry removes the rest.
    async fn abort(&self, lease: &Lease, reference: &str) {
        let mut r = request(AbortRequest {
            r#ref: reference.to_string(),
        });
        r.metadata_mut().insert(
            "containerd-lease",
            lease.id.parse().expect("lease ids are ASCII"),
        );
        if let Err(s) = self.content.clone().abort(r).await {
            if s.code() != tonic::Code::NotFound {
                tracing::debug!(error = %s.message(), reference, "aborting a peer copy's write");
            }
        }
    }

    /// Opens the write stream; `None` when the store holds the blob already (containerd answers
    /// the opening status request with AlreadyExists before a byte is read from the source).
    async fn open(&self, lease: &Lease, t: &Target<'_>) -> Result<Option<WriteStream>, FeedError> {
        let (mut tx, rx) = futures::channel::mpsc::channel::<WriteContentRequest>(2);
        tx.send(t.message(WriteAction::Stat, 0, Bytes::new()))
            .await
            .map_err(|_| FeedError::Source("the write stream closed".into()))?;
        let mut r = tonic::Request::new(rx);
        namespace(&mut r);
        r.metadata_mut().insert(
            "containerd-lease",
            lease.id.parse().expect("lease ids are ASCII"),
        );
        let answers = match self.content.clone().write(r).await {
            Ok(a) => a.into_inner(),
            Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(None),
            Err(s) => return Err(err("content.Write")(s).into()),
        };
        let mut stream = WriteStream { tx, answers };
        stream.answer().await?;
        Ok(Some(stream))
    }
}

/// The blob a write is for.
struct Target<'a> {
    reference: &'a str,
    digest: &'a str,
    size: u64,
}

impl Target<'_> {
    fn message(&self, action: WriteAction, offset: u64, data: Bytes) -> WriteContentRequest {
        WriteContentRequest {
            action: action as i32,
            r#ref: self.reference.to_string(),
            total: self.size as i64,
            expected: self.digest.to_string(),
            offset: offset as i64,
            data: data.to_vec(),
            labels: HashMap::new(),
        }
    }
}

/// An open Write call: requests out, one answer back for each.
struct WriteStream {
    tx: futures::channel::mpsc::Sender<WriteContentRequest>,
    answers: tonic::Streaming<crate::content_proto::WriteContentResponse>,
}

impl WriteStream {
    async fn send(&mut self, m: WriteContentRequest) -> Result<(), FeedError> {
        self.tx
            .send(m)
            .await
            .map_err(|_| FeedError::Source("containerd closed the write".into()))?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<(), FeedError> {
        match self.answers.message().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(FeedError::Runtime(CriError::protocol(
                "content.Write",
                "containerd ended the write early",
            ))),
            // Another writer committed the blob meanwhile: it is there, which is all we wanted.
            Err(s) if s.code() == tonic::Code::AlreadyExists => Err(FeedError::StoredMeanwhile),
            Err(s) => Err(err("content.Write")(s).into()),
        }
    }

    /// Streams `body` in messages of up to [`WRITE_CHUNK`] bytes, hashing it; checks its size
    /// and digest at the end.
    async fn send_body<S>(&mut self, t: &Target<'_>, body: S) -> Result<(), FeedError>
    where
        S: Stream<Item = Result<Bytes, String>> + Send,
    {
        let mut hasher = Sha256::new();
        let (mut offset, mut pending) = (0u64, BytesMut::new());
        let mut body = std::pin::pin!(body);
        loop {
            let next = body.next().await;
            let end = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(FeedError::Source)?;
                hasher.update(&chunk);
                pending.extend_from_slice(&chunk);
                let got = offset + pending.len() as u64;
                if got > t.size {
                    return Err(FeedError::Size {
                        expected: t.size,
                        got,
                    });
                }
            }
            if pending.len() >= WRITE_CHUNK || (end && !pending.is_empty()) {
                let data = pending.split().freeze();
                let n = data.len() as u64;
                self.send(t.message(WriteAction::Write, offset, data))
                    .await?;
                offset += n;
            }
            if end {
                break;
            }
        }
        if offset != t.size {
            return Err(FeedError::Size {
                expected: t.size,
                got: offset,
            });
        }
        let got = hex(&hasher.finalize());
        if t.digest.strip_prefix("sha256:") != Some(got.as_str()) {
            return Err(FeedError::DigestMismatch {
                expected: t.digest.to_string(),
                got,
            });
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        t: &Target<'_>,
        labels: HashMap<String, String>,
    ) -> Result<(), FeedError> {
        let mut commit = t.message(WriteAction::Commit, t.size, Bytes::new());
        commit.labels = labels;
        self.send(commit).await
    }
}

fn namespace<T>(r: &mut tonic::Request<T>) {
    r.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(CRI_NAMESPACE),
    );
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 in UTC, seconds precision, as containerd's labels want it.
fn chrono_rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_labels_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_563_845);
        assert_eq!(chrono_rfc3339(t), "2026-12-06T13:30:45Z");
        assert_eq!(
            chrono_rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
    }
}
