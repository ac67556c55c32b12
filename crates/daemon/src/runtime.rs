//! What a pull worker asks of the container runtime, behind a trait so the worker's retry,
//! deadline, progress and cancellation logic is tested without a runtime (a scripted fake in the
//! worker tests) and run against the node's runtime through `kruise-cri` in production.

use std::future::Future;
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
