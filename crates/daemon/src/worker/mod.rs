//! One task per tag (OpenKruise's pull worker): Waiting, then Pulling under the node's pull
//! budget, retried with capped backoff within the tag's deadline, then Succeeded or Failed; after
//! success, a check about every `--image-check-interval` that the image is still there. Stopping a
//! worker cancels its CRI call at once and reports nothing.

mod attempt;
mod guard;
mod peers;
mod pull;

pub use pull::backoff;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kruise_api::ImageTagStatus;
use kruise_cri::DockerKeyring;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::desired::{TagKey, TagTask};
use crate::metrics::Metrics;
use crate::runtime::ImageRuntime;
use crate::status::{StatusSender, StatusUpdate};

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
    /// A pull waits: it would take the image filesystem above the limit.
    fn waiting_for_space<'a>(&'a self, task: &'a TagTask, note: String) -> BoxFuture<'a, ()>;
}

/// What every worker on the node shares.
pub struct WorkerContext<R> {
    pub runtime: Arc<R>,
    /// `--max-concurrent-pulls` permits.
    pub permits: Arc<Semaphore>,
    pub status: StatusSender,
    pub credentials: Arc<dyn Credentials>,
    pub events: Arc<dyn EventSink>,
    pub metrics: Arc<Metrics>,
    /// How often a pulled image is checked for presence (with ±10% jitter).
    pub check_interval: Duration,
    /// How often a pull's progress is sampled and, when changed, reported; `None`: never.
    pub progress_interval: Option<Duration>,
    /// First retry delay; doubles up to [`MAX_BACKOFF`].
    pub initial_backoff: Duration,
    pub clock: Clock,
    /// Per-registry-host backoff after a rate limit, shared by every tag of the host.
    pub registry_gate: Arc<crate::registry_gate::RegistryGate>,
    /// The node guarantees: pinning on or off, the disk-space limit.
    pub guarantees: Guarantees,
}

/// What the daemon promises about pulled images on this node.
#[derive(Debug, Clone)]
pub struct Guarantees {
    /// `--pin-images`: tags that ask for a pin get one.
    pub pin: bool,
    /// `--image-fs-max-percent`; 100: no disk-space admission.
    pub image_fs_max_percent: u8,
    /// How often a pull waiting for disk space looks again.
    pub space_retry: Duration,
    /// Told after each pin, so the pinned-images gauges are recounted.
    pub recount: Arc<tokio::sync::Notify>,
    /// Bytes admitted to pulls still running: counted as used, so pulls admitted together do
    /// not overshoot the limit between them.
    pub reserved: Arc<std::sync::atomic::AtomicU64>,
    /// The images tags want pinned (fully qualified), for the pin keeper; `None` until the
    /// NodeImage was first read.
    pub wanted_pins: Arc<watch::Sender<Option<std::collections::BTreeSet<String>>>>,
}

impl Default for Guarantees {
    fn default() -> Self {
        Self {
            pin: true,
            image_fs_max_percent: 80,
            space_retry: Duration::from_secs(30),
            recount: Default::default(),
            reserved: Default::default(),
            wanted_pins: Arc::new(watch::channel(None).0),
        }
    }
}

/// Wall-clock time for deadlines (`createdAt + activeDeadlineSeconds`): the system clock, or in
/// tests a clock that follows tokio's (pausable) one, so deadlines, timeouts and sleeps agree.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system clock, read each time: a clock stepped by NTP after start is followed.
    #[default]
    System,
    /// `wall` at tokio's `mono`, advancing with tokio's clock.
    FollowsTokio {
        wall: std::time::SystemTime,
        mono: tokio::time::Instant,
    },
}

impl Clock {
    pub fn new() -> Self {
        Self::System
    }

    pub fn following_tokio() -> Self {
        Self::FollowsTokio {
            wall: std::time::SystemTime::now(),
            mono: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> std::time::SystemTime {
        match self {
            Self::System => std::time::SystemTime::now(),
            Self::FollowsTokio { wall, mono } => *wall + (tokio::time::Instant::now() - *mono),
        }
    }
}

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running worker.
pub struct Worker {
    /// The tag's entry as the worker has it; updates reach its next attempt.
    task: watch::Sender<TagTask>,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub fn task(&self) -> TagTask {
        self.task.borrow().clone()
    }

    /// The tag's entry changed without a new version (pull secrets, policy, owners).
    pub fn update(&self, task: TagTask) {
        self.task.send_replace(task);
    }

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
    let span =
        tracing::info_span!("tag", image = %task.image, tag = %task.tag, version = task.version);
    let (updates, tasks) = watch::channel(task);
    let token = cancel.clone();
    let handle = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let entry = tasks.clone();
            // A panicking worker fails its own tag, not the daemon: the other tags go on.
            let run = AssertUnwindSafe(pull::run(&ctx, tasks, adopt)).catch_unwind();
            tokio::select! {
                _ = token.cancelled() => {}
                outcome = run => if let Err(panic) = outcome {
                    let message = kruise_observe::supervise::panic_message(&*panic);
                    let task = entry.borrow().clone();
                    fail_after_panic(&ctx, &task, &message).await;
                }
            }
        },
        span,
    ));
    Worker {
        task: updates,
        cancel,
        handle,
    }
}

/// Reports the tag of a worker that panicked as Failed, with the panic's message. It stays
/// failed until its entry changes (a new version) or the daemon restarts.
async fn fail_after_panic<R>(ctx: &WorkerContext<R>, task: &TagTask, message: &str) {
    tracing::error!(panic = %message, "the pull worker panicked; the tag fails, the daemon goes on");
    ctx.metrics.worker_panics.inc();
    let status = ImageTagStatus {
        tag: task.tag.clone(),
        phase: kruise_api::TagPhase::Failed,
        version: task.version,
        message: Some(format!(
            "internal error: the pull worker panicked ({message}); this is a kruise-daemon bug, \
             please report it with the daemon's log; the tag is tried again when its entry \
             changes or the daemon restarts"
        )),
        completion_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        )),
        ..Default::default()
    };
    report(ctx, task.key(), status).await;
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
