//! What a pull worker asks of the container runtime, behind a trait so the worker's retry,
//! deadline, progress and cancellation logic is tested without a runtime (a scripted fake in the
//! worker tests) and run against the node's runtime through `kruise-cri` in production.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kruise_api::imageref::ImageRef;
use kruise_cri::progress::ImageSource;
use kruise_cri::{ContentStore, CriClient, CriError, PullProgress, PullRequest};

use std::collections::HashSet;

use kruise_api::constants::{CONTAINERD_PINNED_LABEL, CONTAINERD_PINNED_VALUE, PINNED_BY_LABEL};
use kruise_cri::{DockerKeyring, ImageStore, RuntimeVersion};
use kruise_registry::Registries;

use crate::admission::FsUsage;
use crate::metrics::Metrics;
use crate::peer::copy::{PeerClient, PeerCopy};
use crate::pinning::{decide, Census, PinAction, Protection, Wanted, PINNED_BY_VALUE};
use crate::worker::BoxFuture;
use kruise_api::PeerSource;
use kruise_cri::BlobFeed;

pub trait ImageRuntime: Send + Sync + 'static {
    /// The runtime's image ID if it has `reference` (a tag or digest reference).
    fn image_id(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, CriError>> + Send;
    /// Pulls and returns the image ID; dropping the future cancels the pull at the runtime.
    fn pull(
        &self,
        request: PullRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<String, CriError>> + Send;
    /// Progress of the pull of `reference` that starts now, if the runtime can tell.
    fn progress(&self, _reference: &str) -> Option<Box<dyn ProgressSampler>> {
        None
    }
    /// The manifest digest the runtime holds for `reference` (from its repo digests).
    fn repo_digest(&self, _reference: &str) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }
    /// Whether the runtime can give an image another name ([`ImageRuntime::name_like`]).
    fn can_name(&self) -> bool {
        false
    }
    /// Makes `name` (`key:tag`) point at the image `like` (`key@sha256:…`) points at; a `name`
    /// pointing elsewhere is moved only with `move_existing` (a fresh pull, not a check).
    fn name_like(
        &self,
        _name: &str,
        _like: &str,
        _move_existing: bool,
    ) -> impl Future<Output = Result<(), CriError>> + Send {
        async { Ok(()) }
    }
    /// Pins the image named `name` (a tag or digest reference) and says whether the runtime now
    /// reports it pinned.
    fn pin(&self, _name: &str) -> impl Future<Output = Protection> + Send {
        async { Protection::NotProtected("the runtime cannot pin images".into()) }
    }
    /// Pins every image named in `wanted` (fully qualified references) that is present and not
    /// pinned, withdraws this daemon's pins on every image no longer named there (read again
    /// just before each withdrawal), and counts the pinned images this daemon made.
    fn reconcile_pins(
        &self,
        _wanted: &Wanted,
    ) -> impl Future<Output = Result<Census, CriError>> + Send {
        async { Ok(Census::default()) }
    }
    /// What pulling `reference` would add to the image filesystem, and how full that is, when
    /// the runtime and registry can tell; `Ok(None)`: unknown (the pull is not held back).
    fn space_needed(
        &self,
        _reference: &str,
        _keyring: &DockerKeyring,
    ) -> impl Future<Output = Result<Option<(u64, FsUsage)>, String>> + Send {
        async { Ok(None) }
    }
    /// Before the pull of `reference`: copies the blobs the node lacks from `sources` (peers
    /// that hold the image), and tells what is left for the registry, when the runtime can.
    fn copy_from_peers(
        &self,
        _reference: &str,
        _keyring: &DockerKeyring,
        _sources: &[PeerSource],
        _metrics: &Metrics,
    ) -> impl Future<Output = PeerCopy> + Send {
        async { PeerCopy::default() }
    }
    /// After the pull: the copied blobs no longer need their lease (the image references them).
    fn end_copy(&self, _copy: &PeerCopy) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// One pull's progress, sampled while it runs.
pub trait ProgressSampler: Send {
    /// Percent of the image stored so far (below 100), `None` when not known (yet).
    fn sample(&mut self) -> BoxFuture<'_, Option<u8>>;
}

/// The node's runtime: CRI for everything; containerd's content store for progress and for the
/// blobs a pull would add, and its images service for pins and names, when the runtime serves
/// them; the registry for an image's size.
pub struct CriRuntime {
    pub client: CriClient,
    pub content: Option<ContentStore>,
    pub images: Option<ImageStore>,
    /// Why pins are not reported to the kubelet here, if they are not.
    pub pin_support: Result<(), String>,
    pub registries: Registries,
    /// Where the image filesystem is (statvfs), if known; `None` disables disk-space admission.
    pub image_fs: Option<std::path::PathBuf>,
    /// Image sizes read from registries, by reference: a pull waiting for space reads its
    /// manifest once, not every time it looks again.
    sizes: std::sync::Mutex<std::collections::HashMap<String, kruise_registry::ImageSize>>,
    /// Registry hosts whose manifests could not be read, until when they are not asked again.
    unreadable: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// containerd's content store for peer copies (written) and serving (read).
    pub feed: Option<BlobFeed>,
    /// How peers are reached; `None`: no peer copies (`--peer-port 0`).
    pub peers: Option<PeerClient>,
}

/// How long a registry whose manifest could not be read is left alone.
const UNREADABLE_FOR: Duration = Duration::from_secs(300);

/// Sizes remembered at most; the cache starts over beyond it.
const SIZES_KEPT: usize = 256;

/// How long a pin may take to show in CRI (containerd applies it from an event).
const PIN_VISIBLE_WITHIN: Duration = Duration::from_secs(5);

impl CriRuntime {
    /// Looks for a content store and an images service on the runtime's socket, and for the
    /// image filesystem (`image_fs` overrides what CRI's ImageFsInfo names).
    pub async fn new(
        client: CriClient,
        registries: Registries,
        image_fs: Option<std::path::PathBuf>,
        admission: bool,
    ) -> Self {
        let store = ContentStore::new(client.channel());
        let content = store.available().await.then_some(store);
        match &content {
            Some(_) => tracing::info!("pull progress is read from containerd's content store"),
            None => tracing::info!(
                "the runtime has no containerd content store; pulls report phases, not bytes"
            ),
        }
        let images = ImageStore::new(client.channel());
        let images = images.available().await.then_some(images);
        let version = client.version().await.unwrap_or_else(|_| RuntimeVersion {
            runtime_name: "unknown".into(),
            runtime_version: "unknown".into(),
            runtime_api_version: String::new(),
        });
        let pin_support = crate::pinning::pin_support(
            &version.runtime_name,
            &version.runtime_version,
            images.is_some(),
        );
        if let Err(why) = &pin_support {
            tracing::warn!(%why, "pre-warmed images are not protected from the kubelet's image garbage collection");
        }
        let image_fs = match (admission, image_fs, &content) {
            (false, _, _) => None,
            (true, _, None) => {
                tracing::warn!("the runtime has no containerd content store; disk-space admission is off (pulls start without the check)");
                None
            }
            (true, Some(p), _) => Some(p),
            (true, None, _) => find_image_fs(&client).await,
        };
        let feed = content.as_ref().map(|_| BlobFeed::new(client.channel()));
        Self {
            client,
            content,
            images,
            pin_support,
            registries,
            image_fs,
            sizes: Default::default(),
            unreadable: Default::default(),
            feed,
            peers: None,
        }
    }

    /// `copy` with what the node still lacks of the image: what CRI's pull fetches from the
    /// registry.
    async fn left_for_registry(
        &self,
        mut copy: PeerCopy,
        size: &kruise_registry::ImageSize,
    ) -> PeerCopy {
        if let Some(content) = &self.content {
            copy.registry_bytes = content.missing_bytes(&size.blobs).await.ok();
        }
        copy
    }

    async fn image_size(
        &self,
        image: &ImageRef,
        keyring: &DockerKeyring,
    ) -> Result<kruise_registry::ImageSize, String> {
        let key = image.to_string();
        if let Some(size) = self.sizes.lock().expect("not poisoned").get(&key) {
            return Ok(size.clone());
        }
        // A registry the daemon cannot read (reached only through the runtime's mirrors, say)
        // is not asked again for a while: each try would hold a pull up to the timeout.
        let host = image.registry().to_string();
        if let Some(until) = self.unreadable.lock().expect("not poisoned").get(&host) {
            if Instant::now() < *until {
                return Err(format!(
                    "the registry {host} could not be read a moment ago"
                ));
            }
        }
        let credentials = kruise_registry::credentials_for(keyring, &image.name());
        let size = match self.registries.image_size(image, &credentials).await {
            Ok(size) => size,
            Err(e) => {
                let until = Instant::now() + UNREADABLE_FOR;
                self.unreadable
                    .lock()
                    .expect("not poisoned")
                    .insert(host, until);
                return Err(format!("reading the image's size from its manifest: {e}"));
            }
        };
        let mut sizes = self.sizes.lock().expect("not poisoned");
        if sizes.len() >= SIZES_KEPT {
            sizes.clear();
        }
        sizes.insert(key, size.clone());
        Ok(size)
    }
}

/// The image filesystem's mountpoint as the runtime reports it, if the daemon can read it.
async fn find_image_fs(client: &CriClient) -> Option<std::path::PathBuf> {
    let fs = match client.image_fs_info().await {
        Ok(fs) => fs,
        Err(e) => {
            tracing::warn!(error = %e, "ImageFsInfo failed; disk-space admission is off");
            return None;
        }
    };
    let path = fs.first()?.fs_id.as_ref()?.mountpoint.clone();
    let path = std::path::PathBuf::from(path);
    match crate::admission::usage(&path) {
        Ok(u) => {
            tracing::info!(path = %path.display(), capacity = u.capacity, available = u.available, "disk-space admission watches the image filesystem");
            Some(path)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the image filesystem's usage (mount it into the daemon's pod, read-only, at the same path; or set --image-fs-path); disk-space admission is off");
            None
        }
    }
}

impl ImageRuntime for CriRuntime {
    async fn image_id(&self, reference: &str) -> Result<Option<String>, CriError> {
        Ok(self.client.image_status(reference).await?.map(|i| i.id))
    }

    async fn pull(&self, request: PullRequest, timeout: Duration) -> Result<String, CriError> {
        self.client.pull_image(request, Some(timeout)).await
    }

    fn can_name(&self) -> bool {
        self.images.is_some()
    }

    async fn repo_digest(&self, reference: &str) -> Option<String> {
        let name = ImageRef::parse(reference).ok()?.name();
        let image = self.client.image_status(reference).await.ok()??;
        repo_digest_of(&image.repo_digests, &name)
    }

    async fn name_like(&self, name: &str, like: &str, move_existing: bool) -> Result<(), CriError> {
        let (Some(images), Ok(n), Ok(l)) =
            (&self.images, ImageRef::parse(name), ImageRef::parse(like))
        else {
            return Ok(());
        };
        match images
            .name_like(&n.to_string(), &l.to_string(), move_existing)
            .await?
        {
            Some(true) => {
                tracing::info!(%name, %like, "the digest pull now carries its tag's name");
                // CRI learns the name from containerd's event: the tag is reported ready only
                // once a pod's ImageStatus would find it.
                let until = tokio::time::Instant::now() + PIN_VISIBLE_WITHIN;
                while !matches!(self.client.image_status(name).await, Ok(Some(_))) {
                    if tokio::time::Instant::now() >= until {
                        tracing::warn!(%name, "CRI does not show the new name yet");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Some(false) => {}
            None => {
                tracing::warn!(%like, "the image pulled by digest is not in containerd's records; not named")
            }
        }
        Ok(())
    }

    async fn pin(&self, name: &str) -> Protection {
        let Some(images) = &self.images else {
            return Protection::NotProtected(self.pin_support.clone().err().unwrap_or_default());
        };
        let Ok(full) = ImageRef::parse(name).map(|r| r.to_string()) else {
            return Protection::NotProtected(format!("{name} is not a reference"));
        };
        let labelled = match images.get(&full).await {
            Ok(Some(image)) => match decide(true, &image.labels) {
                PinAction::Pin => images
                    .set_labels(
                        &full,
                        &[
                            (CONTAINERD_PINNED_LABEL, Some(CONTAINERD_PINNED_VALUE)),
                            (PINNED_BY_LABEL, Some(PINNED_BY_VALUE)),
                        ],
                    )
                    .await
                    .and_then(|found| {
                        found.then_some(()).ok_or_else(|| {
                            CriError::protocol("images.Update", format!("{full} went away"))
                        })
                    }),
                PinAction::Leave | PinAction::Unpin => Ok(()),
            },
            Ok(None) => {
                return Protection::NotProtected(format!("containerd has no image named {full}"))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = labelled {
            return Protection::NotProtected(format!("pinning failed: {e}"));
        }
        if let Err(why) = &self.pin_support {
            return Protection::NotProtected(why.clone());
        }
        // The pin reaches CRI through an event: wait for it briefly.
        let until = tokio::time::Instant::now() + PIN_VISIBLE_WITHIN;
        loop {
            if let Ok(Some(i)) = self.client.image_status(name).await {
                if i.pinned {
                    return Protection::Pinned;
                }
            }
            if tokio::time::Instant::now() >= until {
                return Protection::NotProtected(format!(
                    "the image is labelled pinned but the runtime does not report it pinned \
                     after {PIN_VISIBLE_WITHIN:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn reconcile_pins(&self, wanted: &Wanted) -> Result<Census, CriError> {
        let Some(images) = &self.images else {
            return Ok(Census::default());
        };
        let snapshot: Vec<String> = wanted.borrow().iter().flatten().cloned().collect();
        for name in snapshot {
            // A pin removed by hand, or one a worker's pull has not made yet, is made here.
            let Some(image) = images.get(&name).await? else {
                continue;
            };
            if decide(true, &image.labels) == PinAction::Pin {
                let set = [
                    (CONTAINERD_PINNED_LABEL, Some(CONTAINERD_PINNED_VALUE)),
                    (PINNED_BY_LABEL, Some(PINNED_BY_VALUE)),
                ];
                match images.set_labels(&name, &set).await {
                    Ok(_) => tracing::info!(image = %name, "pinned (the pin was missing)"),
                    Err(e) => {
                        tracing::warn!(image = %name, error = %e, "pinning failed; trying again later")
                    }
                }
            }
        }
        let mut census = Census::default();
        let mut ids = HashSet::new();
        for image in images.with_label(PINNED_BY_LABEL, PINNED_BY_VALUE).await? {
            let want = wanted
                .borrow()
                .as_ref()
                .is_some_and(|w| w.contains(&image.name));
            if decide(want, &image.labels) == PinAction::Unpin {
                let unset = [(CONTAINERD_PINNED_LABEL, None), (PINNED_BY_LABEL, None)];
                match images.set_labels(&image.name, &unset).await {
                    Ok(_) => {
                        tracing::info!(image = %image.name, "no tag wants the image any more; unpinned")
                    }
                    Err(e) => {
                        tracing::warn!(image = %image.name, error = %e, "unpinning failed; trying again later")
                    }
                }
                continue;
            }
            if let Ok(Some(i)) = self.client.image_status(&image.name).await {
                if i.pinned && ids.insert(i.id) {
                    census.images += 1;
                    census.bytes += i.size;
                }
            }
        }
        Ok(census)
    }

    async fn space_needed(
        &self,
        reference: &str,
        keyring: &DockerKeyring,
    ) -> Result<Option<(u64, FsUsage)>, String> {
        let (Some(path), Some(content)) = (&self.image_fs, &self.content) else {
            return Ok(None);
        };
        let image = ImageRef::parse(reference).map_err(|e| e.to_string())?;
        let size = self.image_size(&image, keyring).await?;
        let missing = content
            .missing_bytes(&size.blobs)
            .await
            .map_err(|e| format!("reading containerd's content store: {e}"))?;
        // statvfs of a hostPath can hang with its filesystem: off the async threads.
        let at = path.clone();
        let fs = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || crate::admission::usage(&at)),
        )
        .await
        .map_err(|_| format!("statvfs of {} did not answer within 10s", path.display()))?
        .map_err(|e| format!("statvfs of {}: {e}", path.display()))?
        .map_err(|e| format!("reading the image filesystem {}: {e}", path.display()))?;
        Ok(Some((missing, fs)))
    }

    async fn copy_from_peers(
        &self,
        reference: &str,
        keyring: &DockerKeyring,
        sources: &[PeerSource],
        metrics: &Metrics,
    ) -> PeerCopy {
        let Some(feed) = &self.feed else {
            return PeerCopy::default();
        };
        let Ok(image) = ImageRef::parse(reference) else {
            return PeerCopy::default();
        };
        // With peers off on this node, the registry bytes are counted only from a manifest read
        // already (for disk-space admission): a pull is never held up by a read for a figure.
        let Some(peers) = &self.peers else {
            let key = image.to_string();
            let cached = self.sizes.lock().expect("not poisoned").get(&key).cloned();
            let Some(size) = cached else {
                return PeerCopy::default();
            };
            return self.left_for_registry(PeerCopy::default(), &size).await;
        };
        let size = match self.image_size(&image, keyring).await {
            Ok(size) => size,
            Err(e) => {
                if !sources.is_empty() {
                    tracing::warn!(error = %e, "cannot list the image's blobs; pulling from the registry");
                }
                return PeerCopy::default();
            }
        };
        if sources.is_empty() {
            return self.left_for_registry(PeerCopy::default(), &size).await;
        }
        let labels = std::collections::HashMap::from([(
            format!(
                "containerd.io/distribution.source.{}",
                registry_host(image.registry())
            ),
            image.repository().to_string(),
        )]);
        let copy = peers
            .copy(feed, &size.blobs, sources, &labels, metrics)
            .await;
        self.left_for_registry(copy, &size).await
    }

    async fn end_copy(&self, copy: &PeerCopy) {
        if let (Some(feed), Some(lease)) = (&self.feed, &copy.lease) {
            if let Err(e) = feed.release(lease).await {
                tracing::debug!(error = %e, lease = %lease.id, "releasing a peer copy's lease (it expires by itself)");
            }
        }
    }

    fn progress(&self, reference: &str) -> Option<Box<dyn ProgressSampler>> {
        let store = self.content.clone()?;
        let image = ImageRef::parse(reference).ok()?;
        // containerd labels what it fetched with the registry's host name, without the port.
        let host = registry_host(image.registry());
        let source = ImageSource {
            host: host.to_string(),
            repository: image.repository().to_string(),
            digest: image.digest().map(str::to_string),
        };
        Some(Box::new(ContentProgress(PullProgress::new(store, source))))
    }
}

/// The digest of `name` (`registry/repository`) among CRI's repo digests (`name@sha256:…`).
fn repo_digest_of(repo_digests: &[String], name: &str) -> Option<String> {
    repo_digests.iter().find_map(|r| {
        let (n, digest) = r.split_once('@')?;
        let n = ImageRef::parse(n)
            .map(|i| i.name())
            .unwrap_or_else(|_| n.to_string());
        (n == name).then(|| digest.to_string())
    })
}

/// The registry's host name without its port, as containerd's source labels have it:
/// `127.0.0.1:5000` → `127.0.0.1`, `[::1]:5000` → `::1`.
fn registry_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

struct ContentProgress(PullProgress);

impl ProgressSampler for ContentProgress {
    fn sample(&mut self) -> BoxFuture<'_, Option<u8>> {
        Box::pin(async move {
            match self.0.sample().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "reading pull progress failed");
                    None
                }
            }
        })
    }
}

/// The daemon's `/readyz`: ready once its NodeImage has been listed, and while the container
/// runtime answers (a daemon that cannot pull is not ready, and says why in its log, in
/// `kruise_daemon_runtime_up` and in the messages of the tags it is pulling).
#[derive(Clone)]
pub struct Readiness {
    synced: Arc<AtomicBool>,
    runtime_up: Arc<AtomicBool>,
    out: kruise_observe::Readiness,
}

impl Readiness {
    pub fn new(out: kruise_observe::Readiness) -> Self {
        Self {
            synced: Arc::new(AtomicBool::new(false)),
            runtime_up: Arc::new(AtomicBool::new(true)),
            out,
        }
    }

    pub fn synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
        self.update();
    }

    pub fn runtime(&self, up: bool) {
        self.runtime_up.store(up, Ordering::SeqCst);
        self.update();
    }

    /// Not ready from now on (stopping).
    pub fn stopping(&self) {
        self.synced.store(false, Ordering::SeqCst);
        self.update();
    }

    fn update(&self) {
        self.out
            .set(self.synced.load(Ordering::SeqCst) && self.runtime_up.load(Ordering::SeqCst));
    }
}

/// How long one probe of the runtime may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the runtime for its version every `every` until `stop`; readiness, the
/// `kruise_daemon_runtime_up` gauge and the log (once per change) follow its answers.
pub async fn probe(
    client: CriClient,
    every: Duration,
    ready: Readiness,
    metrics: Arc<crate::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut was_up = true;
    metrics.runtime_up.set(1);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let answer = tokio::time::timeout(PROBE_TIMEOUT, client.version()).await;
        let error = match answer {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        let up = error.is_none();
        match (&error, was_up) {
            (Some(e), true) => {
                tracing::error!(error = %e, "the container runtime stopped answering; not ready until it does (pulls wait for it)")
            }
            (None, false) => tracing::info!("the container runtime answers again; ready"),
            _ => {}
        }
        was_up = up;
        metrics.runtime_up.set(i64::from(up));
        ready.runtime(up);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repo_digest_of_the_repository_is_found() {
        let digests = vec![
            "docker.io/library/other@sha256:aaa".to_string(),
            "docker.io/library/nginx@sha256:bbb".to_string(),
        ];
        assert_eq!(
            super::repo_digest_of(&digests, "docker.io/library/nginx"),
            Some("sha256:bbb".into())
        );
        assert_eq!(super::repo_digest_of(&digests, "docker.io/library/x"), None);
    }

    #[test]
    fn registry_hosts_lose_their_port() {
        for (registry, host) in [
            ("docker.io", "docker.io"),
            ("127.0.0.1:5000", "127.0.0.1"),
            ("[::1]:5000", "::1"),
            ("[::1]", "::1"),
        ] {
            assert_eq!(super::registry_host(registry), host);
        }
    }
}
