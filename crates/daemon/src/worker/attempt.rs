//! One CRI pull attempt and what surrounds it: the credentials tried in turn, progress sampled
//! while it runs, the message its error becomes, the time left before the tag's deadline, and the
//! gauges that count attempts waiting and in flight.

use std::time::Duration;

use kruise_api::constants::{PULLING_IMAGE_BY_ANNOTATION, PULLING_IMAGE_BY_VALUE};
use kruise_api::imageref::ImageRef;
use kruise_api::ImageTagStatus;
use kruise_cri::{CriError, CriErrorKind, DockerKeyring, PullRequest};

use super::{report, WorkerContext};
use crate::desired::TagTask;
use crate::runtime::{ImageRuntime, ProgressSampler};

/// The longest one progress sample may take.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `pull`, reporting its progress every `every` when it changed (quiet rounds do not come
/// here: a periodic re-pull writes nothing until its outcome changes).
pub(super) async fn with_progress<R, T>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: &mut ImageTagStatus,
    pull: impl std::future::Future<Output = T>,
    mut sampler: Box<dyn ProgressSampler>,
    every: Duration,
) -> T {
    tokio::pin!(pull);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            done = &mut pull => return done,
            _ = tick.tick() => {
                // Sampling pauses the pull's polling (not the download): keep it short.
                let sample = tokio::time::timeout(every.min(SAMPLE_TIMEOUT), sampler.sample());
                let Ok(Some(p)) = sample.await else { continue };
                if i32::from(p) != st.progress {
                    st.progress = i32::from(p);
                    report(ctx, task.key(), st.clone()).await;
                }
            }
        }
    }
}

/// Tries each matching credential in turn (as the kubelet does), anonymous when none matches.
pub(super) async fn pull_with_credentials<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    keyring: &DockerKeyring,
    timeout: Duration,
) -> Result<String, CriError> {
    let reference = super::guard::pull_ref(ctx, task);
    let name = ImageRef::parse(reference)
        .map(|r| r.name())
        .unwrap_or_else(|_| task.image.clone());
    let mut candidates: Vec<Option<kruise_cri::proto::AuthConfig>> = keyring
        .lookup(&name)
        .into_iter()
        .map(|(a, _)| Some(a))
        .collect();
    if candidates.is_empty() {
        candidates.push(None);
    }
    let mut annotations: std::collections::HashMap<String, String> =
        task.sandbox.annotations.clone().into_iter().collect();
    annotations.insert(
        PULLING_IMAGE_BY_ANNOTATION.into(),
        PULLING_IMAGE_BY_VALUE.into(),
    );
    let labels: std::collections::HashMap<String, String> =
        task.sandbox.labels.clone().into_iter().collect();
    let mut last_error = None;
    for auth in candidates {
        let request = PullRequest {
            image: reference.to_string(),
            auth,
            labels: labels.clone(),
            annotations: annotations.clone(),
        };
        match ctx.runtime.pull(request, timeout).await {
            Ok(id) => return Ok(id),
            Err(e) if e.kind == CriErrorKind::Unauthorized => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.expect("at least one candidate was tried"))
}

pub(super) fn describe(e: &CriError, timeout: Duration, configured: Duration) -> String {
    match e.kind {
        CriErrorKind::Timeout if timeout < configured => {
            format!(
                "timed out after {}s: the tag's activeDeadlineSeconds left no more time",
                timeout.as_secs()
            )
        }
        CriErrorKind::Timeout => format!(
            "timed out after {}s (pullPolicy.timeoutSeconds)",
            timeout.as_secs()
        ),
        _ => e.to_string(),
    }
}

/// Time left before the tag's deadline, if it has one.
pub(super) fn remaining<R>(ctx: &WorkerContext<R>, task: &TagTask) -> Option<Duration> {
    task.deadline
        .map(|d| d.duration_since(ctx.clock.now()).unwrap_or_default())
}

/// Counts while alive, so a cancelled worker does not leave a gauge up.
pub(super) struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    pub(super) fn new(g: &prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
