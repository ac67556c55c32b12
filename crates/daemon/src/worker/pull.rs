//! One tag's pull rounds: the IfNotPresent check, attempts under the node's pull budget with
//! per-attempt timeouts, capped exponential backoff with jitter, the tag's deadline, credentials
//! tried in turn, and the periodic presence check after success.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImagePullPolicy, ImageTagStatus, TagPhase};
use kruise_cri::{CriError, CriErrorKind, DockerKeyring};

use tokio::sync::watch;

use super::attempt::{describe, pull_with_credentials, remaining, with_progress, GaugeGuard};
use super::guard::{self, pull_ref};
use super::{report, WorkerContext, MAX_BACKOFF};
use crate::desired::TagTask;
use crate::runtime::ImageRuntime;

pub(super) async fn run<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    mut tasks: watch::Receiver<TagTask>,
    adopt: Option<ImageTagStatus>,
) {
    let mut last = match adopt {
        Some(status) => {
            let key = tasks.borrow().key();
            report(ctx, key, status.clone()).await;
            status
        }
        None => round(ctx, &mut tasks, true, None)
            .await
            .expect("a reported round always has an outcome"),
    };
    // An adopted result (a restart, `--pin-images` switched), or a pin asked for while the
    // round ran, is brought in line now.
    let entry = tasks.borrow().clone();
    last = guard::settle_pin(ctx, &entry, last).await;
    // The worker lives as long as the tag is in the spec: a succeeded image is checked for
    // presence every `check_interval`; a failed one is tried again sooner (1 min, doubling up to
    // the check interval), and within seconds when its entry changes in a way that pulls
    // differently (a pull secret added, say).
    let mut failures = u32::from(last.phase == TagPhase::Failed);
    let mut next = next_round_at(
        ctx,
        &last,
        &tasks.borrow(),
        first_check_delay(ctx, &last, failures),
    );
    let mut pulled_with = tasks.borrow().clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            Ok(()) = tasks.changed() => {
                let now = tasks.borrow().clone();
                let relevant = pulls_differently(&pulled_with, &now);
                if now.pin != pulled_with.pin {
                    last = guard::settle_pin(ctx, &now, last).await;
                }
                pulled_with = now;
                if last.phase != TagPhase::Failed || !relevant {
                    continue; // the next check uses the new entry
                }
                // Spread out: the same change reaches every node where the tag failed.
                tracing::info!("the tag's entry changed after a failure; trying again shortly");
                next = tokio::time::Instant::now() + Duration::from_millis(fastrand::u64(0..5_000));
                continue;
            }
        }
        last = check(ctx, &mut tasks, last).await;
        let entry = tasks.borrow().clone();
        last = guard::settle_pin(ctx, &entry, last).await;
        failures = if last.phase == TagPhase::Failed {
            failures + 1
        } else {
            0
        };
        let after = jittered(next_check(ctx, failures));
        next = next_round_at(ctx, &last, &tasks.borrow(), after);
    }
}

/// When the next round runs: `after` from now, unless the tag failed and its
/// `activeDeadlineSeconds` has passed. Such a tag is done; only a changed entry (a later
/// deadline) or a new version brings it back, never a timer, so a tag the manager closed (a
/// node counted as not responding) is not pulled after all.
fn next_round_at<R>(
    ctx: &WorkerContext<R>,
    last: &ImageTagStatus,
    task: &TagTask,
    after: Duration,
) -> tokio::time::Instant {
    let done =
        last.phase == TagPhase::Failed && task.deadline.is_some_and(|d| ctx.clock.now() >= d);
    let after = if done {
        Duration::from_secs(100 * 365 * 86_400)
    } else {
        after
    };
    tokio::time::Instant::now() + after
}

/// Whether `new` would pull differently from `old` (owners and the like do not count).
fn pulls_differently(old: &TagTask, new: &TagTask) -> bool {
    (
        &old.reference,
        &old.pull_secrets,
        &old.sandbox,
        old.policy,
        old.timeout,
        old.backoff_limit,
        old.deadline,
    ) != (
        &new.reference,
        &new.pull_secrets,
        &new.sandbox,
        new.policy,
        new.timeout,
        new.backoff_limit,
        new.deadline,
    )
}

/// First retry of a failed tag; later ones double up to the check interval.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// Until the next check: the check interval, or sooner after `failures` failed rounds in a row.
fn next_check<R>(ctx: &WorkerContext<R>, failures: u32) -> Duration {
    if failures == 0 {
        return ctx.check_interval;
    }
    RETRY_FAILED_AFTER
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(ctx.check_interval)
}

/// An adopted result is checked when it is due counting from its completion (so daemon restarts
/// do not postpone checks forever); an overdue check runs within a minute, spread out.
fn first_check_delay<R>(ctx: &WorkerContext<R>, last: &ImageTagStatus, failures: u32) -> Duration {
    let completed = last
        .completion_time
        .as_ref()
        .map(|t| SystemTime::from(t.0))
        .unwrap_or_else(|| ctx.clock.now());
    let due = completed + jittered(next_check(ctx, failures));
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

/// What a quiet round (a periodic check, or another try of a failed tag) compares against: it
/// reports only an outcome that differs from the status already shown.
struct Previous {
    /// The image as the runtime had it before the round, if it was there.
    image_id: Option<String>,
    /// The status already says Failed.
    failed: bool,
}

/// The tag's entry as it stands now; rounds after the first are not bounded by its deadline.
fn latest(tasks: &mut watch::Receiver<TagTask>, bounded: bool) -> TagTask {
    let mut task = tasks.borrow_and_update().clone();
    if !bounded {
        task.deadline = None;
    }
    task
}

fn with_notes(notes: &[String], msg: String) -> String {
    if notes.is_empty() {
        msg
    } else {
        format!("{msg} ({})", notes.join("; "))
    }
}

/// One pull round to Succeeded or Failed. With `previous` (a quiet round), nothing is reported
/// unless the outcome differs from what the status already says, and `None` means "unchanged".
/// Each attempt uses the tag's entry as it is then (secrets, timeout, retries, deadline).
async fn round<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    tasks: &mut watch::Receiver<TagTask>,
    bounded: bool,
    previous: Option<Previous>,
) -> Option<ImageTagStatus> {
    let mut r = Round::start(ctx, tasks, bounded, previous).await;
    if let Some(id) = r.already_present().await {
        let (task, st) = (&r.task, r.st.clone());
        return Some(succeed(ctx, task, st, &id, r.started, "already present", true).await);
    }
    loop {
        let (result, timeout, slot) = match r.attempt().await {
            Ok(attempted) => attempted,
            Err(ended) => return ended,
        };
        match result {
            // The pull slot is held until the result is reported (naming, pinning included),
            // so the status never shows more tags pulling than the budget allows.
            Ok(id) => {
                let ended = r.pulled(&id).await;
                drop(slot);
                return ended;
            }
            Err(error) => {
                drop(slot);
                if let Err(ended) = r.wait_to_retry(&error, timeout).await {
                    return ended;
                }
            }
        }
    }
}

/// A round between its attempts.
pub(super) struct Round<'a, R> {
    pub(super) ctx: &'a WorkerContext<R>,
    tasks: &'a mut watch::Receiver<TagTask>,
    bounded: bool,
    previous: Option<Previous>,
    pub(super) task: TagTask,
    pub(super) st: ImageTagStatus,
    pub(super) keyring: DockerKeyring,
    /// Why a credential could not be used, for the tag's message.
    notes: Vec<String>,
    started: Instant,
    /// Attempts that count against `backoffLimit`.
    attempt: u32,
    /// Attempts that found the runtime down (they do not count).
    runtime_waits: u32,
}

/// How the round ended, when an attempt ends it early.
type Ended = Option<ImageTagStatus>;

/// An attempt's result, the timeout it ran with, and the pull slot it holds.
type Attempted = (
    Result<String, CriError>,
    Duration,
    tokio::sync::OwnedSemaphorePermit,
);

impl<'a, R: ImageRuntime> Round<'a, R> {
    async fn start(
        ctx: &'a WorkerContext<R>,
        tasks: &'a mut watch::Receiver<TagTask>,
        bounded: bool,
        previous: Option<Previous>,
    ) -> Self {
        let task = latest(tasks, bounded);
        let st = ImageTagStatus {
            tag: task.tag.clone(),
            phase: TagPhase::Waiting,
            version: task.version,
            ..Default::default()
        };
        if previous.is_none() {
            report(ctx, task.key(), st.clone()).await;
        }
        let (keyring, notes) = ctx.credentials.keyring(&task).await;
        Self {
            ctx,
            tasks,
            bounded,
            previous,
            task,
            st,
            keyring,
            notes,
            started: Instant::now(),
            attempt: 0,
            runtime_waits: 0,
        }
    }

    pub(super) fn quiet(&self) -> bool {
        self.previous.is_some()
    }

    /// The image's ID when `IfNotPresent` finds it on the node already (not in quiet rounds).
    async fn already_present(&self) -> Option<String> {
        if self.task.policy != ImagePullPolicy::IfNotPresent || self.quiet() {
            return None;
        }
        match self
            .ctx
            .runtime
            .image_id(pull_ref(self.ctx, &self.task))
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "ImageStatus failed; pulling instead");
                None
            }
        }
    }

    async fn fail(&mut self, message: String, reason: &str) -> Ended {
        let st = std::mem::take(&mut self.st);
        failed(self.ctx, &self.task, st, message, reason, &self.previous).await
    }

    /// One attempt under the node's pull budget: its result and the timeout it ran with, or the
    /// round's end when the deadline passes first.
    async fn attempt(&mut self) -> Result<Attempted, Ended> {
        let ctx = self.ctx;
        if self.tasks.has_changed().unwrap_or(false) {
            self.task = latest(self.tasks, self.bounded);
            (self.keyring, self.notes) = ctx.credentials.keyring(&self.task).await;
        }
        let quiet = self.quiet();
        crate::registry_gate::wait_turn(ctx, &self.task, &mut self.st, quiet).await;
        let space = guard::wait_for_space(ctx, &self.task, &self.keyring, &mut self.st, quiet);
        // Held until the attempt ends: its bytes count as used for the pulls admitted after it.
        let _reserved = match space.await {
            Ok(reserved) => reserved,
            Err(msg) => {
                let msg = with_notes(&self.notes, msg);
                return Err(self.fail(msg, "no_space").await);
            }
        };
        let deadline = "activeDeadlineSeconds passed before the image was pulled";
        // The wait for a pull slot counts against the deadline too.
        let permit = {
            let _waiting = GaugeGuard::new(&ctx.metrics.waiting);
            let acquire = ctx.permits.clone().acquire_owned();
            match remaining(ctx, &self.task) {
                Some(left) => tokio::time::timeout(left, acquire).await.ok(),
                None => Some(acquire.await),
            }
        };
        let Some(permit) = permit else {
            let msg = with_notes(&self.notes, deadline.into());
            return Err(self.fail(msg, "deadline").await);
        };
        let Ok(slot) = permit else {
            return Err(Some(self.st.clone()));
        };
        let left = remaining(ctx, &self.task);
        if left == Some(Duration::ZERO) {
            let msg = with_notes(&self.notes, deadline.into());
            return Err(self.fail(msg, "deadline").await);
        }
        if self.st.phase != TagPhase::Pulling {
            self.st.phase = TagPhase::Pulling;
            self.st.start_time = Some(now());
            if !quiet {
                report(ctx, self.task.key(), self.st.clone()).await;
            }
        }
        let timeout = left.map_or(self.task.timeout, |r| r.min(self.task.timeout));
        let result = self.pull(timeout).await;
        crate::registry_gate::after_attempt(ctx, &self.task, result.as_ref().err());
        Ok((result, timeout, slot))
    }

    /// The CRI call, with progress sampled and reported (not in quiet rounds).
    async fn pull(&mut self, timeout: Duration) -> Result<String, CriError> {
        let ctx = self.ctx;
        let _in_flight = GaugeGuard::new(&ctx.metrics.in_flight);
        let began = tokio::time::Instant::now();
        let copy = self.copy_from_peers(timeout).await;
        // The copy and the pull share the attempt's timeout (at least a second for the pull).
        let timeout = timeout
            .saturating_sub(began.elapsed())
            .max(Duration::from_secs(1));
        let pull = pull_with_credentials(ctx, &self.task, &self.keyring, timeout);
        let sampler = (ctx.progress_interval)
            .zip(ctx.runtime.progress(pull_ref(ctx, &self.task)))
            .filter(|_| !self.quiet());
        let result = match sampler {
            Some((every, sampler)) => {
                with_progress(ctx, &self.task, &mut self.st, pull, sampler, every).await
            }
            None => pull.await,
        };
        ctx.runtime.end_copy(&copy).await;
        if result.is_ok() && !self.quiet() {
            self.record_sources(&copy);
        }
        result
    }

    /// Pulled: reported, unless a quiet round finds what the status already says.
    async fn pulled(&mut self, id: &str) -> Ended {
        let changed =
            (self.previous.as_ref()).is_none_or(|p| p.failed || p.image_id.as_deref() != Some(id));
        if self.quiet() && !changed {
            let took = self.started.elapsed();
            self.ctx.metrics.observe_pull("succeeded", "repulled", took);
            return None;
        }
        let st = std::mem::take(&mut self.st);
        Some(succeed(self.ctx, &self.task, st, id, self.started, "pulled", false).await)
    }

    /// After a failed attempt: waits its backoff (saying so in the tag's message), or ends the
    /// round when the error is permanent, the retries are used up or the deadline is too near.
    async fn wait_to_retry(&mut self, error: &CriError, timeout: Duration) -> Result<(), Ended> {
        let msg = describe(error, timeout, self.task.timeout);
        let (delay, message) = match self.next_try(error, &msg) {
            Ok(next) => next,
            Err(msg) => return Err(self.fail(msg, error.kind.label()).await),
        };
        let ctx = self.ctx;
        if self
            .task
            .deadline
            .is_some_and(|d| ctx.clock.now() + delay >= d)
        {
            let last =
                format!("{msg}; no time left for another attempt before activeDeadlineSeconds");
            let msg = with_notes(&self.notes, last);
            return Err(self.fail(msg, error.kind.label()).await);
        }
        self.st.message = Some(with_notes(&self.notes, message));
        if !self.quiet() {
            report(ctx, self.task.key(), self.st.clone()).await;
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// The delay before the next try and the message meanwhile; `Err` with the final message
    /// when there is no next try.
    fn next_try(&mut self, error: &CriError, msg: &str) -> Result<(Duration, String), String> {
        let initial = self.ctx.initial_backoff;
        // A runtime that is down (restarting, upgraded) is waited for: it says nothing about the
        // image, so it does not use up the tag's retries.
        if error.kind == CriErrorKind::RuntimeUnavailable {
            self.runtime_waits += 1;
            tracing::warn!(error = %msg, "the container runtime is unavailable; waiting for it");
            let message = format!("{msg}; waiting for the container runtime to come back");
            return Ok((backoff(initial, self.runtime_waits), message));
        }
        self.attempt += 1;
        let (attempt, attempts) = (self.attempt, self.task.backoff_limit + 1);
        tracing::info!(attempt, attempts, error = %msg, "pull attempt failed");
        let permanent = matches!(
            error.kind,
            CriErrorKind::NotFound | CriErrorKind::Unauthorized | CriErrorKind::InvalidReference
        );
        if permanent || attempt >= attempts {
            let msg = if attempt > 1 {
                format!("failed after {attempt} attempts: {msg}")
            } else {
                msg.to_string()
            };
            return Err(with_notes(&self.notes, msg));
        }
        let delay = backoff(initial, attempt);
        let secs = delay.as_secs().max(1);
        let message = format!("attempt {attempt} of {attempts} failed: {msg}; retrying in {secs}s");
        Ok((delay, message))
    }
}

async fn succeed<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: ImageTagStatus,
    id: &str,
    started: Instant,
    how: &str,
    skipped: bool,
) -> ImageTagStatus {
    let mut st = ImageTagStatus {
        phase: TagPhase::Succeeded,
        progress: 100,
        start_time: st.start_time.or_else(|| Some(now())),
        completion_time: Some(now()),
        image_id: Some(format!("{}@{id}", task.image)),
        message: None,
        ..st
    };
    guard::after_pull(ctx, task, &mut st, !skipped).await;
    let elapsed = started.elapsed();
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

/// A failed round: reported, unless it is quiet and the status already tells the truth (it
/// says Failed already, or the image is still on the node after a failed re-pull).
async fn failed<R>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: ImageTagStatus,
    message: String,
    reason: &str,
    previous: &Option<Previous>,
) -> Option<ImageTagStatus> {
    match previous {
        Some(p) if p.failed || p.image_id.is_some() => {
            ctx.metrics.observe_pull("failed", reason, Duration::ZERO);
            let what = if p.failed {
                "trying a failed tag again failed; will try later"
            } else {
                "re-pull failed; the image is still present, so the status stays"
            };
            tracing::warn!(reason, error = %message, "{what}");
            None
        }
        _ => Some(fail(ctx, task, st, message, reason).await),
    }
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

/// The periodic check: a failed tag is tried again, quietly; a present image under IfNotPresent
/// needs nothing; otherwise a quiet re-pull (the image is gone, or the policy is Always). Only a
/// changed outcome is reported.
async fn check<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    tasks: &mut watch::Receiver<TagTask>,
    last: ImageTagStatus,
) -> ImageTagStatus {
    if last.phase == TagPhase::Failed {
        count_check(ctx, "retry_failed");
        let previous = Previous {
            image_id: None,
            failed: true,
        };
        return round(ctx, tasks, false, Some(previous))
            .await
            .unwrap_or(last);
    }
    let task = latest(tasks, false);
    let present = match ctx.runtime.image_id(pull_ref(ctx, &task)).await {
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
        failed: false,
    };
    round(ctx, tasks, false, Some(previous))
        .await
        .unwrap_or(last)
}

fn count_check<R>(ctx: &WorkerContext<R>, result: &str) {
    ctx.metrics
        .checks
        .get_or_create(&crate::metrics::CheckLabels {
            result: result.into(),
        })
        .inc();
}
