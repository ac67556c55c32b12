//! One tag's pull rounds: the IfNotPresent check, attempts under the node's pull budget with
//! per-attempt timeouts, capped exponential backoff with jitter, the tag's deadline, credentials
//! tried in turn, and the periodic presence check after success.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kruise_api::constants::{PULLING_IMAGE_BY_ANNOTATION, PULLING_IMAGE_BY_VALUE};
use kruise_api::imageref::ImageRef;
use kruise_api::{ImagePullPolicy, ImageTagStatus, TagPhase};
use kruise_cri::{CriError, CriErrorKind, DockerKeyring, PullRequest};

use super::{report, WorkerContext, MAX_BACKOFF};
use crate::desired::TagTask;
use crate::runtime::ImageRuntime;

pub(super) async fn run<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    adopt: Option<ImageTagStatus>,
) {
    let mut last = match adopt {
        Some(status) => {
            report(ctx, task.key(), status.clone()).await;
            status
        }
        None => round(ctx, task, None)
            .await
            .expect("a reported round always has an outcome"),
    };
    // The worker lives as long as the tag is in the spec: a succeeded image is checked for
    // presence, a failed one is tried again, every `check_interval`.
    let mut wait = first_check_delay(ctx, &last);
    loop {
        tokio::time::sleep(wait).await;
        last = check(ctx, task, last).await;
        wait = jittered(ctx.check_interval);
    }
}

/// An adopted result is checked `check_interval` after it completed (so daemon restarts do not
/// postpone checks forever); an overdue check runs within a minute, spread out.
fn first_check_delay<R>(ctx: &WorkerContext<R>, last: &ImageTagStatus) -> Duration {
    let completed = last
        .completion_time
        .as_ref()
        .map(|t| SystemTime::from(t.0))
        .unwrap_or_else(|| ctx.clock.now());
    let due = completed + jittered(ctx.check_interval);
    due.duration_since(ctx.clock.now())
        .unwrap_or_else(|_| Duration::from_millis(fastrand::u64(0..60_000)))
}

/// ±10%, so thousands of nodes do not check (and pull) in the same second.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// 1 s, 2 s, 4 s … up to 30 s (scaled from `initial`), ±20% jitter.
pub fn backoff(initial: Duration, failed_attempts: u32) -> Duration {
    let base = initial
        .saturating_mul(1u32 << failed_attempts.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(0.8 + fastrand::f64() * 0.4)
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Whether the runtime had the image and whether re-pulling changed it, for quiet checks.
struct Previous {
    image_id: Option<String>,
}

/// One pull round to Succeeded or Failed. With `previous` (a presence check), nothing is reported
/// unless the outcome differs from what the status already says, and `None` means "unchanged".
async fn round<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    previous: Option<Previous>,
) -> Option<ImageTagStatus> {
    let quiet = previous.is_some();
    let mut st = ImageTagStatus {
        tag: task.tag.clone(),
        phase: TagPhase::Waiting,
        version: task.version,
        ..Default::default()
    };
    if !quiet {
        report(ctx, task.key(), st.clone()).await;
    }
    let (keyring, notes) = ctx.credentials.keyring(task).await;
    let note = |msg: String| {
        if notes.is_empty() {
            msg
        } else {
            format!("{msg} ({})", notes.join("; "))
        }
    };
    let started = Instant::now();

    if task.policy == ImagePullPolicy::IfNotPresent && !quiet {
        match ctx.runtime.image_id(&task.reference).await {
            Ok(Some(id)) => {
                return Some(succeed(ctx, task, st, &id, started, "already present", true).await)
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "ImageStatus failed; pulling instead"),
        }
    }

    let attempts = task.backoff_limit + 1;
    let deadline_msg = || note("activeDeadlineSeconds passed before the image was pulled".into());
    for attempt in 1..=attempts {
        // The wait for a pull slot counts against the deadline too.
        let permit = {
            let _waiting = GaugeGuard::new(&ctx.metrics.waiting);
            let acquire = ctx.permits.clone().acquire_owned();
            match remaining(ctx, task) {
                Some(left) => match tokio::time::timeout(left, acquire).await {
                    Ok(p) => p,
                    Err(_) => return Some(fail(ctx, task, st, deadline_msg(), "deadline").await),
                },
                None => acquire.await,
            }
        };
        let Ok(_permit) = permit else { return Some(st) };
        let left = remaining(ctx, task);
        if left == Some(Duration::ZERO) {
            return Some(fail(ctx, task, st, deadline_msg(), "deadline").await);
        }
        if st.phase != TagPhase::Pulling {
            st.phase = TagPhase::Pulling;
            st.start_time = Some(now());
            if !quiet {
                report(ctx, task.key(), st.clone()).await;
            }
        }
        let timeout = left.map_or(task.timeout, |r| r.min(task.timeout));
        let result = {
            let _in_flight = GaugeGuard::new(&ctx.metrics.in_flight);
            pull_with_credentials(ctx, task, &keyring, timeout).await
        };
        drop(_permit);
        let error = match result {
            Ok(id) => {
                let changed = previous
                    .as_ref()
                    .is_none_or(|p| p.image_id.as_deref() != Some(id.as_str()));
                if quiet && !changed {
                    ctx.metrics
                        .observe_pull("succeeded", "repulled", started.elapsed());
                    return None;
                }
                return Some(succeed(ctx, task, st, &id, started, "pulled", false).await);
            }
            Err(e) => e,
        };
        let msg = describe(&error, timeout, task.timeout);
        tracing::info!(attempt, attempts, error = %msg, "pull attempt failed");
        let permanent = matches!(
            error.kind,
            CriErrorKind::NotFound | CriErrorKind::Unauthorized | CriErrorKind::InvalidReference
        );
        if permanent || attempt == attempts {
            let msg = if attempt > 1 {
                format!("failed after {attempt} attempts: {msg}")
            } else {
                msg
            };
            return Some(fail(ctx, task, st, note(msg), error.kind.label()).await);
        }
        let delay = backoff(ctx.initial_backoff, attempt);
        if task.deadline.is_some_and(|d| ctx.clock.now() + delay >= d) {
            let msg =
                format!("{msg}; no time left for another attempt before activeDeadlineSeconds");
            return Some(fail(ctx, task, st, note(msg), error.kind.label()).await);
        }
        st.message = Some(note(format!(
            "attempt {attempt} of {attempts} failed: {msg}; retrying in {}s",
            delay.as_secs().max(1)
        )));
        if !quiet {
            report(ctx, task.key(), st.clone()).await;
        }
        tokio::time::sleep(delay).await;
    }
    unreachable!("the last attempt returns")
}

/// Tries each matching credential in turn (as the kubelet does), anonymous when none matches.
async fn pull_with_credentials<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    keyring: &DockerKeyring,
    timeout: Duration,
) -> Result<String, CriError> {
    let name = ImageRef::parse(&task.reference)
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
            image: task.reference.clone(),
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

fn describe(e: &CriError, timeout: Duration, configured: Duration) -> String {
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

async fn succeed<R>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: ImageTagStatus,
    id: &str,
    started: Instant,
    how: &str,
    skipped: bool,
) -> ImageTagStatus {
    let elapsed = started.elapsed();
    let st = ImageTagStatus {
        phase: TagPhase::Succeeded,
        progress: 100,
        start_time: st.start_time.or_else(|| Some(now())),
        completion_time: Some(now()),
        image_id: Some(format!("{}@{id}", task.image)),
        message: None,
        ..st
    };
    ctx.metrics.observe_pull(
        "succeeded",
        if skipped { "present" } else { "pulled" },
        elapsed,
    );
    tracing::info!(elapsed_ms = elapsed.as_millis() as u64, how, "image ready");
    report(ctx, task.key(), st.clone()).await;
    ctx.events
        .succeeded(
            task,
            format!(
                "Image {}, {how}, elapsedTime {:.3}s",
                task.reference,
                elapsed.as_secs_f64()
            ),
        )
        .await;
    st
}

async fn fail<R>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: ImageTagStatus,
    message: String,
    reason: &str,
) -> ImageTagStatus {
    let st = ImageTagStatus {
        phase: TagPhase::Failed,
        completion_time: Some(now()),
        message: Some(message.clone()),
        ..st
    };
    ctx.metrics.observe_pull("failed", reason, Duration::ZERO);
    tracing::warn!(reason, error = %message, "image pull failed");
    report(ctx, task.key(), st.clone()).await;
    ctx.events
        .failed(task, format!("Image {} {message}", task.reference))
        .await;
    st
}

/// The periodic presence check: nothing to write while the image is there (IfNotPresent); a
/// quiet re-pull when it is gone or the policy is Always; a report only when that changes the
/// outcome.
async fn check<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    last: ImageTagStatus,
) -> ImageTagStatus {
    // The tag's deadline bounded its first round only; later rounds have just their timeouts.
    let task = &TagTask {
        deadline: None,
        ..task.clone()
    };
    if last.phase == TagPhase::Failed {
        count_check(ctx, "retry_failed");
        return round(ctx, task, None)
            .await
            .expect("a reported round always has an outcome");
    }
    let present = match ctx.runtime.image_id(&task.reference).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "presence check failed; will check again");
            return last;
        }
    };
    if present.is_some() && task.policy == ImagePullPolicy::IfNotPresent {
        count_check(ctx, "present");
        return last;
    }
    count_check(
        ctx,
        if present.is_some() {
            "repull_always"
        } else {
            "repull_missing"
        },
    );
    let previous_id = last
        .image_id
        .as_deref()
        .and_then(|i| i.rsplit_once('@'))
        .map(|(_, id)| id.to_string());
    let previous = Previous {
        image_id: if present.is_some() { previous_id } else { None },
    };
    round(ctx, task, Some(previous)).await.unwrap_or(last)
}

fn count_check<R>(ctx: &WorkerContext<R>, result: &str) {
    ctx.metrics
        .checks
        .get_or_create(&crate::metrics::CheckLabels {
            result: result.into(),
        })
        .inc();
}

/// Time left before the tag's deadline, if it has one.
fn remaining<R>(ctx: &WorkerContext<R>, task: &TagTask) -> Option<Duration> {
    task.deadline
        .map(|d| d.duration_since(ctx.clock.now()).unwrap_or_default())
}

/// Counts while alive, so a cancelled worker does not leave a gauge up.
struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    fn new(g: &prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
