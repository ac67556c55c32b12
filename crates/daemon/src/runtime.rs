//! The two things a pull worker asks of the container runtime, behind a trait so the worker's
//! retry, deadline and cancellation logic is tested without a runtime (a scripted fake in the
//! worker tests) and run against containerd through `kruise-cri` in production.

use std::future::Future;
use std::time::Duration;

use kruise_cri::{CriClient, CriError, PullRequest};

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
}

impl ImageRuntime for CriClient {
    async fn image_id(&self, reference: &str) -> Result<Option<String>, CriError> {
        Ok(self.image_status(reference).await?.map(|i| i.id))
    }

    async fn pull(&self, request: PullRequest, timeout: Duration) -> Result<String, CriError> {
        self.pull_image(request, Some(timeout)).await
    }
}
