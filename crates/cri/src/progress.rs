//! Byte progress of a pull under containerd. CRI's `PullImage` is one unary call that says nothing
//! until it ends (OpenKruise's progress stays 0 under containerd for that reason). containerd's
//! content service, on the same socket, tells the rest: the image manifest arrives first (labelled
//! with the registry host and repository it came from), and with it every blob the image needs and
//! its size; a blob is either stored already (fully there) or being downloaded (an ingest with a
//! byte offset). Progress is stored bytes over needed bytes, at most 99 until the pull returns
//! (unpacking follows the download). Other runtimes have no such service: there progress is
//! reported as phases only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tonic::transport::Channel;

use crate::content_proto::{
    content_client::ContentClient, Info, InfoRequest, ListContentRequest, ListStatusesRequest,
    ReadContentRequest,
};
use crate::error::CriError;

/// The containerd namespace the CRI plugin keeps images in.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Every content call is small; a runtime this slow to answer gets no progress this time.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Manifests touched this long before the pull began still count as its own (clock rounding).
const SINCE_SLACK: Duration = Duration::from_secs(2);
/// A manifest is larger than this only by mistake; it is not read.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// containerd's content store in the CRI namespace.
#[derive(Debug, Clone)]
pub struct ContentStore {
    client: ContentClient<Channel>,
}

pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(CRI_NAMESPACE),
    );
    r.set_timeout(CALL_TIMEOUT);
    r
}

pub(crate) fn err(call: &'static str) -> impl Fn(tonic::Status) -> CriError {
    move |s| CriError::from_status(call, &s)
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    size: i64,
}

/// An image manifest as far as progress needs it; an index has no `layers`.
#[derive(Deserialize)]
struct Manifest {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

impl ContentStore {
    /// On the runtime's connection (the CRI client's channel).
    pub fn new(channel: Channel) -> Self {
        Self {
            client: ContentClient::new(channel),
        }
    }

    /// Whether the runtime serves the content service (containerd does, CRI-O does not). Only a
    /// runtime that says it does not counts: a slow or restarting containerd still has one.
    pub async fn available(&self) -> bool {
        let r = request(ListStatusesRequest { filters: vec![] });
        match self.client.clone().list_statuses(r).await {
            Ok(_) => true,
            Err(s) => s.code() != tonic::Code::Unimplemented,
        }
    }

    /// Of `blobs` (digest, size), the bytes not stored yet: what a pull of them would add.
    pub async fn missing_bytes(&self, blobs: &[(String, u64)]) -> Result<u64, CriError> {
        let mut missing = 0;
        for (digest, size) in blobs {
            if self.info(digest).await?.is_none() {
                missing += size;
            }
        }
        Ok(missing)
    }

    async fn info(&self, digest: &str) -> Result<Option<Info>, CriError> {
        let r = request(InfoRequest {
            digest: digest.to_string(),
        });
        match self.client.clone().info(r).await {
            Ok(resp) => Ok(resp.into_inner().info),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(err("content.Info")(s)),
        }
    }

    async fn list(&self, filter: String) -> Result<Vec<Info>, CriError> {
        let mut stream = self
            .client
            .clone()
            .list(request(ListContentRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(err("content.List"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(page) = stream.message().await.map_err(err("content.List"))? {
            out.extend(page.info);
        }
        Ok(out)
    }

    async fn read(&self, digest: &str) -> Result<Vec<u8>, CriError> {
        let r = request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let mut stream = self
            .client
            .clone()
            .read(r)
            .await
            .map_err(err("content.Read"))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(err("content.Read"))? {
            data.extend_from_slice(&chunk.data);
            if data.len() > MAX_MANIFEST_BYTES {
                break;
            }
        }
        Ok(data)
    }

    /// Bytes downloaded so far of each blob being downloaded, by digest.
    async fn ingests(&self) -> Result<BTreeMap<String, i64>, CriError> {
        let r = request(ListStatusesRequest { filters: vec![] });
        let statuses = self
            .client
            .clone()
            .list_statuses(r)
            .await
            .map_err(err("content.ListStatuses"))?
            .into_inner()
            .statuses;
        Ok(statuses
            .into_iter()
            .map(|s| {
                // The CRI plugin names ingests `layer-sha256:…`; `expected` is the digest.
                let digest = if s.expected.is_empty() {
                    s.r#ref
                        .rsplit_once('-')
                        .map(|(_, d)| d.to_string())
                        .unwrap_or(s.r#ref)
                } else {
                    s.expected
                };
                (digest, s.offset)
            })
            .collect())
    }
}

/// Where a pull's image comes from, as containerd labels what it fetched.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// The registry host without its port (`docker.io`, `127.0.0.1`).
    pub host: String,
    /// `library/nginx`.
    pub repository: String,
    /// The manifest digest, for a digest reference.
    pub digest: Option<String>,
}

/// The progress of one pull, sampled as it goes.
#[derive(Debug)]
pub struct PullProgress {
    store: ContentStore,
    source: ImageSource,
    since: SystemTime,
    /// Blobs the image needs and their sizes, once its manifest is stored.
    needed: Option<Vec<(String, i64)>>,
    /// Blobs seen stored: they stay stored for the rest of the pull.
    stored: BTreeSet<String>,
    /// The highest percent reported: a blob whose ingest containerd has just committed can be
    /// missing from both the ingests and the blobs for a moment, and bytes once stored do not
    /// go away, so progress never goes back.
    highest: u8,
}

impl PullProgress {
    /// Progress of the pull of `source` that starts now.
    pub fn new(store: ContentStore, source: ImageSource) -> Self {
        Self {
            store,
            source,
            since: SystemTime::now(),
            needed: None,
            stored: BTreeSet::new(),
            highest: 0,
        }
    }

    /// Percent of the image's bytes stored so far (0 to 99), or `None` while its manifest is not
    /// stored yet.
    pub async fn sample(&mut self) -> Result<Option<u8>, CriError> {
        if self.needed.is_none() {
            self.needed = self.find_manifest().await?;
        }
        let Some(needed) = &self.needed else {
            return Ok(None);
        };
        let in_flight = self.store.ingests().await?;
        let (mut have, mut total) = (0i64, 0i64);
        for (digest, size) in needed {
            total += size;
            if self.stored.contains(digest) {
                have += size;
            } else if let Some(offset) = in_flight.get(digest) {
                have += offset.min(size);
            } else if self.store.info(digest).await?.is_some() {
                self.stored.insert(digest.clone());
                have += size;
            }
        }
        self.highest = self.highest.max(percent(have, total));
        Ok(Some(self.highest))
    }

    /// The image manifest this pull fetched: the reference's digest if it names an image
    /// manifest, else the one image manifest from the same host and repository stored or
    /// relabelled since the pull began.
    async fn find_manifest(&self) -> Result<Option<Vec<(String, i64)>>, CriError> {
        if let Some(digest) = &self.source.digest {
            if let Some(needed) = self.blobs_of(digest).await? {
                return Ok(Some(needed));
            }
        }
        // The label's value lists every repository on that host the blob came from, sorted and
        // comma-separated. The filter narrows the listing to this repository (a regular
        // expression, in which a `.` of the name matches any character); the exact match is
        // made here.
        let label = format!("containerd.io/distribution.source.{}", self.source.host);
        let filter = format!(
            "labels.\"{label}\"~=\"(^|,){}(,|$)\"",
            self.source.repository
        );
        let since = self.since - SINCE_SLACK;
        let candidates: Vec<Info> = self
            .store
            .list(filter)
            .await?
            .into_iter()
            .filter(|i| {
                i.labels
                    .get(&label)
                    .is_some_and(|v| v.split(',').any(|r| r == self.source.repository))
            })
            .filter(|i| {
                i.labels
                    .keys()
                    .any(|k| k.starts_with("containerd.io/gc.ref.content.l."))
            })
            .filter(|i| touched(i) >= since)
            .collect();
        // Two tags of one repository pulled at once: which manifest is whose is not known, so
        // none is guessed; the next sample may tell.
        match candidates.as_slice() {
            [only] => self.blobs_of(&only.digest).await,
            _ => Ok(None),
        }
    }

    /// Config and layers of the image manifest stored under `digest`; `None` for anything else.
    async fn blobs_of(&self, digest: &str) -> Result<Option<Vec<(String, i64)>>, CriError> {
        if self.store.info(digest).await?.is_none() {
            return Ok(None);
        }
        let Ok(m) = serde_json::from_slice::<Manifest>(&self.store.read(digest).await?) else {
            return Ok(None);
        };
        let Some(config) = m.config else {
            return Ok(None);
        };
        Ok(Some(
            std::iter::once(config)
                .chain(m.layers)
                .map(|d| (d.digest, d.size.max(0)))
                .collect(),
        ))
    }
}

/// When the blob was stored or last relabelled (containerd leaves unset times at Go's zero time).
fn touched(i: &Info) -> SystemTime {
    [&i.created_at, &i.updated_at]
        .into_iter()
        .flatten()
        .filter(|t| t.seconds > 0)
        .map(|t| SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos.max(0) as u32))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Stored over needed bytes, 0 to 99: 100 is for the pull's end, after unpacking.
pub fn percent(have: i64, total: i64) -> u8 {
    if total <= 0 {
        return 0;
    }
    ((have.clamp(0, total) as i128 * 100 / total as i128) as u8).min(99)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_stops_short_of_done() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(0, 100), 0);
        assert_eq!(percent(50, 200), 25);
        assert_eq!(percent(200, 200), 99, "100 only when the pull returns");
        assert_eq!(percent(300, 200), 99);
        assert_eq!(percent(i64::MAX / 2, i64::MAX), 49, "no overflow");
    }
}
