//! What a pull worker asks of the container runtime, behind a trait so the worker's retry,
//! deadline, progress and cancellation logic is tested without a runtime (a scripted fake in the
//! worker tests) and run against the node's runtime through `kruise-cri` in production.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kruise_api::imageref::ImageRef;
use kruise_cri::progress::ImageSource;
use kruise_cri::{ContentStore, CriClient, CriError, PullProgress, PullRequest};

use crate::worker::BoxFuture;

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
}

/// One pull's progress, sampled while it runs.
pub trait ProgressSampler: Send {
    /// Percent of the image stored so far (below 100), `None` when not known (yet).
    fn sample(&mut self) -> BoxFuture<'_, Option<u8>>;
}

/// The node's runtime: CRI for everything, and containerd's content store for progress when the
/// runtime serves it.
pub struct CriRuntime {
    pub client: CriClient,
    pub content: Option<ContentStore>,
}

impl CriRuntime {
    /// Looks for a content store on the runtime's socket.
    pub async fn new(client: CriClient) -> Self {
        let store = ContentStore::new(client.channel());
        let content = store.available().await.then_some(store);
        match &content {
            Some(_) => tracing::info!("pull progress is read from containerd's content store"),
            None => tracing::info!(
                "the runtime has no containerd content store; pulls report phases, not bytes"
            ),
        }
        Self { client, content }
    }
}

impl ImageRuntime for CriRuntime {
    async fn image_id(&self, reference: &str) -> Result<Option<String>, CriError> {
        Ok(self.client.image_status(reference).await?.map(|i| i.id))
    }

    async fn pull(&self, request: PullRequest, timeout: Duration) -> Result<String, CriError> {
        self.client.pull_image(request, Some(timeout)).await
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
