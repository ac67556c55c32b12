//! One task per tag (OpenKruise's pull worker): Waiting, then Pulling under the node's pull
//! budget, retried with capped backoff within the tag's deadline, then Succeeded or Failed; after
//! success, a check about every `--image-check-interval` that the image is still there. Stopping a
//! worker cancels its CRI call at once and reports nothing.

mod pull;

pub use pull::backoff;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kruise_api::ImageTagStatus;
use kruise_cri::DockerKeyring;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::desired::{TagKey, TagTask};
use crate::metrics::Metrics;
use crate::runtime::ImageRuntime;
use crate::status::StatusUpdate;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Credentials for a tag's pull secrets: the keyring, and one note per secret that could not be
/// used (so the tag's message says why a credential was missing).
pub trait Credentials: Send + Sync {
    fn keyring<'a>(&'a self, task: &'a TagTask) -> BoxFuture<'a, (DockerKeyring, Vec<String>)>;
}

/// Where a worker reports what users should see as Kubernetes Events.
pub trait EventSink: Send + Sync {
    fn succeeded<'a>(&'a self, task: &'a TagTask, note: String) -> BoxFuture<'a, ()>;
    fn failed<'a>(&'a self, task: &'a TagTask, note: String) -> BoxFuture<'a, ()>;
}

/// What every worker on the node shares.
pub struct WorkerContext<R> {
    pub runtime: Arc<R>,
    /// `--max-concurrent-pulls` permits.
    pub permits: Arc<Semaphore>,
    pub status: mpsc::Sender<StatusUpdate>,
    pub credentials: Arc<dyn Credentials>,
    pub events: Arc<dyn EventSink>,
    pub metrics: Arc<Metrics>,
    /// How often a pulled image is checked for presence (with ±10% jitter).
    pub check_interval: Duration,
    /// First retry delay; doubles up to [`MAX_BACKOFF`].
    pub initial_backoff: Duration,
    pub clock: Clock,
}

/// Wall-clock time derived from tokio's monotonic clock, so deadlines (`createdAt +
/// activeDeadlineSeconds`) follow the same time as timeouts and sleeps, in tests too.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: std::time::SystemTime,
    mono: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            wall: std::time::SystemTime::now(),
            mono: tokio::time::Instant::now(),
        }
    }
    pub fn now(&self) -> std::time::SystemTime {
        self.wall + (tokio::time::Instant::now() - self.mono)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running worker.
pub struct Worker {
    pub version: i64,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Cancels the worker and waits until it has stopped (its CRI call dropped).
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.handle.await;
    }
}

/// Starts the worker of `task`, adopting a finished result of the same version if there is one.
pub fn spawn<R: ImageRuntime>(
    ctx: Arc<WorkerContext<R>>,
    task: TagTask,
    adopt: Option<ImageTagStatus>,
) -> Worker {
    let cancel = CancellationToken::new();
    let version = task.version;
    let span = tracing::info_span!("tag", image = %task.image, tag = %task.tag, version);
    let token = cancel.clone();
    let handle = tokio::spawn(tracing::Instrument::instrument(
        async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = pull::run(&ctx, &task, adopt) => {}
            }
        },
        span,
    ));
    Worker {
        version,
        cancel,
        handle,
    }
}

pub(crate) async fn report<R>(ctx: &WorkerContext<R>, key: TagKey, status: ImageTagStatus) {
    let _ = ctx
        .status
        .send(StatusUpdate::Tag {
            key,
            status: Some(status),
        })
        .await;
}

#[cfg(test)]
mod tests;
