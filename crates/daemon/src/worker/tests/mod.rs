//! Worker behaviour against a scripted runtime, on tokio's paused clock: statuses reported,
//! retries and backoff, deadlines, cancellation, the pull budget, and presence checks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kruise_api::{ImagePullPolicy, TagPhase};
use kruise_cri::{CriError, CriErrorKind};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tonic::Code;

use super::*;
use crate::metrics::Metrics;

mod progress;
mod rate_limit;
mod recovery;

#[derive(Clone)]
enum Outcome {
    Ok(&'static str),
    Err(CriErrorKind, &'static str),
    /// Never finishes on its own.
    Hang,
    /// Finishes after a while.
    Slow(Duration, &'static str),
    /// A bug in the worker's code path.
    Panic,
}

#[derive(Default)]
struct FakeRuntime {
    present: Mutex<HashMap<String, String>>,
    script: Mutex<VecDeque<Outcome>>,
    pulls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    dropped: AtomicUsize,
    /// Progress samples handed out, in order, to whichever pull asks.
    progress: Arc<Mutex<VecDeque<u8>>>,
}

struct ScriptedProgress(Arc<Mutex<VecDeque<u8>>>);

impl crate::runtime::ProgressSampler for ScriptedProgress {
    fn sample(&mut self) -> BoxFuture<'_, Option<u8>> {
        let next = self.0.lock().unwrap().pop_front();
        Box::pin(async move { next })
    }
}

struct RunningGuard<'a>(&'a FakeRuntime, bool);
impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ImageRuntime for FakeRuntime {
    async fn image_id(&self, reference: &str) -> Result<Option<String>, CriError> {
        Ok(self.present.lock().unwrap().get(reference).cloned())
    }

    async fn pull(
        &self,
        request: kruise_cri::PullRequest,
        timeout: Duration,
    ) -> Result<String, CriError> {
        self.pulls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let mut guard = RunningGuard(self, false);
        let outcome = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Outcome::Ok("sha256:default"));
        let result = match outcome {
            Outcome::Ok(id) => Ok(id.to_string()),
            Outcome::Err(kind, msg) => Err(CriError {
                kind,
                call: "PullImage",
                code: Code::Unknown,
                message: msg.into(),
            }),
            Outcome::Hang => {
                tokio::time::sleep(timeout).await;
                Err(CriError {
                    kind: CriErrorKind::Timeout,
                    call: "PullImage",
                    code: Code::DeadlineExceeded,
                    message: "Deadline Exceeded".into(),
                })
            }
            Outcome::Slow(d, id) => {
                tokio::time::sleep(d).await;
                Ok(id.to_string())
            }
            Outcome::Panic => panic!("index out of bounds: the len is 0 but the index is 0"),
        };
        guard.1 = true;
        if let Ok(id) = &result {
            self.present
                .lock()
                .unwrap()
                .insert(request.image.clone(), id.clone());
        }
        result
    }

    fn progress(&self, _reference: &str) -> Option<Box<dyn crate::runtime::ProgressSampler>> {
        Some(Box::new(ScriptedProgress(self.progress.clone())))
    }
}

#[derive(Default)]
struct Recorded {
    succeeded: Mutex<Vec<String>>,
    failed: Mutex<Vec<String>>,
}

impl EventSink for Recorded {
    fn succeeded<'a>(&'a self, _: &'a TagTask, note: String) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.succeeded.lock().unwrap().push(note) })
    }
    fn failed<'a>(&'a self, _: &'a TagTask, note: String) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.failed.lock().unwrap().push(note) })
    }
    fn waiting_for_space<'a>(&'a self, _: &'a TagTask, note: String) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.failed.lock().unwrap().push(note) })
    }
}

struct NoSecrets;
impl Credentials for NoSecrets {
    fn keyring<'a>(&'a self, _: &'a TagTask) -> BoxFuture<'a, (DockerKeyring, Vec<String>)> {
        Box::pin(async { (DockerKeyring::new(), Vec::new()) })
    }
}

struct Harness {
    ctx: Arc<WorkerContext<FakeRuntime>>,
    runtime: Arc<FakeRuntime>,
    events: Arc<Recorded>,
    rx: mpsc::Receiver<StatusUpdate>,
}

fn harness(max_pulls: usize) -> Harness {
    let runtime = Arc::new(FakeRuntime::default());
    let events = Arc::new(Recorded::default());
    let (tx, rx) = mpsc::channel(1024);
    let metrics = Arc::new(Metrics::new(&mut Registry::default()));
    let supervisor = kruise_observe::Supervisor::new(CancellationToken::new());
    let progress = supervisor.watchdog("the status writer", Duration::from_secs(86_400));
    let ctx = Arc::new(WorkerContext {
        runtime: runtime.clone(),
        permits: Arc::new(Semaphore::new(max_pulls)),
        status: StatusSender::new(tx, progress, metrics.clone()),
        credentials: Arc::new(NoSecrets),
        events: events.clone(),
        metrics,
        check_interval: Duration::from_secs(3600),
        progress_interval: Some(Duration::from_secs(2)),
        initial_backoff: Duration::from_secs(1),
        clock: Clock::following_tokio(),
        registry_gate: Default::default(),
        guarantees: Default::default(),
    });
    Harness {
        ctx,
        runtime,
        events,
        rx,
    }
}

fn task(tag: &str) -> TagTask {
    TagTask {
        image: "registry.example.com/app".into(),
        tag: tag.into(),
        version: 1,
        reference: format!("registry.example.com/app:{tag}"),
        name_as: None,
        pin: false,
        policy: ImagePullPolicy::IfNotPresent,
        timeout: Duration::from_secs(10),
        backoff_limit: 3,
        deadline: None,
        pull_secrets: vec![],
        sandbox: Default::default(),
        owners: vec![],
        node_image_uid: None,
        sources: vec![],
    }
}

impl Harness {
    /// Statuses reported for `tag` until it reaches a final phase.
    async fn until_final(&mut self, tag: &str) -> Vec<ImageTagStatus> {
        let mut seen = Vec::new();
        loop {
            let update = tokio::time::timeout(Duration::from_secs(600), self.rx.recv())
                .await
                .expect("a status within the deadline")
                .expect("open");
            if let StatusUpdate::Tag {
                key,
                status: Some(s),
            } = update
            {
                if key.1 == tag {
                    let done = matches!(s.phase, TagPhase::Succeeded | TagPhase::Failed);
                    seen.push(s);
                    if done {
                        return seen;
                    }
                }
            }
        }
    }
}

fn phases(s: &[ImageTagStatus]) -> Vec<TagPhase> {
    s.iter().map(|s| s.phase).collect()
}

#[tokio::test(start_paused = true)]
async fn a_pull_goes_waiting_pulling_succeeded() {
    let mut h = harness(2);
    h.runtime
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::Ok("sha256:abc"));
    let _w = spawn(h.ctx.clone(), task("v1"), None);
    let seen = h.until_final("v1").await;
    assert_eq!(
        phases(&seen),
        [TagPhase::Waiting, TagPhase::Pulling, TagPhase::Succeeded]
    );
    let done = seen.last().unwrap();
    assert_eq!(
        done.image_id.as_deref(),
        Some("registry.example.com/app@sha256:abc")
    );
    assert_eq!((done.progress, done.version), (100, 1));
    assert!(done.start_time.is_some() && done.completion_time.is_some());
    assert_eq!(h.events.succeeded.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn if_not_present_skips_a_present_image_and_always_pulls_it() {
    let mut h = harness(2);
    h.runtime
        .present
        .lock()
        .unwrap()
        .insert("registry.example.com/app:v1".into(), "sha256:old".into());
    let _a = spawn(h.ctx.clone(), task("v1"), None);
    let seen = h.until_final("v1").await;
    assert_eq!(phases(&seen), [TagPhase::Waiting, TagPhase::Succeeded]);
    assert_eq!(
        h.runtime.pulls.load(Ordering::SeqCst),
        0,
        "no pull for a present image"
    );

    h.runtime
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::Ok("sha256:new"));
    let _b = spawn(
        h.ctx.clone(),
        TagTask {
            policy: ImagePullPolicy::Always,
            version: 2,
            ..task("v1")
        },
        None,
    );
    let seen = h.until_final("v1").await;
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 1);
    assert_eq!(
        seen.last().unwrap().image_id.as_deref(),
        Some("registry.example.com/app@sha256:new")
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff() {
    let mut h = harness(2);
    let unreachable = "failed to do request: dial tcp 127.0.0.1:5000: connect: connection refused";
    h.runtime.script.lock().unwrap().extend([
        Outcome::Err(CriErrorKind::RegistryUnreachable, unreachable),
        Outcome::Err(CriErrorKind::RegistryUnreachable, unreachable),
        Outcome::Ok("sha256:abc"),
    ]);
    let start = tokio::time::Instant::now();
    let _w = spawn(h.ctx.clone(), task("v1"), None);
    let seen = h.until_final("v1").await;
    assert_eq!(seen.last().unwrap().phase, TagPhase::Succeeded);
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 3);
    let retry = seen
        .iter()
        .find_map(|s| s.message.clone())
        .expect("the retry is visible in the status");
    assert!(
        retry.starts_with("attempt 1 of 4 failed: the registry is unreachable")
            && retry.contains("retrying in"),
        "{retry}"
    );
    // 1 s then 2 s, each ±20%.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2400) && waited <= Duration::from_millis(3600),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_fail_at_once_and_exhausted_retries_say_so() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().push_back(Outcome::Err(
        CriErrorKind::NotFound,
        "registry.example.com/app:v1: not found",
    ));
    let _a = spawn(h.ctx.clone(), task("v1"), None);
    let done = h.until_final("v1").await.pop().unwrap();
    assert_eq!(done.phase, TagPhase::Failed);
    assert_eq!(
        done.message.as_deref(),
        Some("image not found in the registry: registry.example.com/app:v1: not found")
    );
    assert_eq!(
        h.runtime.pulls.load(Ordering::SeqCst),
        1,
        "not found is not retried"
    );
    assert_eq!(h.events.failed.lock().unwrap().len(), 1);

    h.runtime.script.lock().unwrap().extend(std::iter::repeat_n(
        Outcome::Err(CriErrorKind::RegistryError, "503 Service Unavailable"),
        2,
    ));
    let _b = spawn(
        h.ctx.clone(),
        TagTask {
            backoff_limit: 1,
            ..task("v2")
        },
        None,
    );
    let done = h.until_final("v2").await.pop().unwrap();
    assert_eq!(done.message.as_deref(), Some("failed after 2 attempts: the registry answered with a server error: 503 Service Unavailable"));
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_deadlines_bound_the_round() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().push_back(Outcome::Hang);
    let _a = spawn(
        h.ctx.clone(),
        TagTask {
            backoff_limit: 0,
            timeout: Duration::from_secs(7),
            ..task("v1")
        },
        None,
    );
    let done = h.until_final("v1").await.pop().unwrap();
    assert_eq!(
        done.message.as_deref(),
        Some("timed out after 7s (pullPolicy.timeoutSeconds)")
    );

    // A deadline 9 s away: the first attempt is cut to the time left, and no retry starts after.
    h.runtime
        .script
        .lock()
        .unwrap()
        .extend([Outcome::Hang, Outcome::Hang]);
    let deadline = h.ctx.clock.now() + Duration::from_secs(9);
    let _b = spawn(
        h.ctx.clone(),
        TagTask {
            deadline: Some(deadline),
            timeout: Duration::from_secs(60),
            ..task("v2")
        },
        None,
    );
    let started = tokio::time::Instant::now();
    let done = h.until_final("v2").await.pop().unwrap();
    assert_eq!(done.phase, TagPhase::Failed);
    assert_eq!(
        h.runtime.pulls.load(Ordering::SeqCst),
        2,
        "one attempt for v1, one for v2"
    );
    let msg = done.message.unwrap();
    assert_eq!(msg, "timed out after 9s: the tag's activeDeadlineSeconds left no more time; no time left for another attempt before activeDeadlineSeconds");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up at the deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_a_worker_cancels_its_pull_silently() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().push_back(Outcome::Hang);
    let w = spawn(
        h.ctx.clone(),
        TagTask {
            timeout: Duration::from_secs(3600),
            ..task("v1")
        },
        None,
    );
    // Wait until it is pulling.
    loop {
        if let Some(StatusUpdate::Tag {
            status: Some(s), ..
        }) = h.rx.recv().await
        {
            if s.phase == TagPhase::Pulling {
                break;
            }
        }
    }
    tokio::task::yield_now().await;
    assert_eq!(h.runtime.running.load(Ordering::SeqCst), 1);
    w.stop().await;
    assert_eq!(
        h.runtime.dropped.load(Ordering::SeqCst),
        1,
        "the CRI call was dropped (cancelled)"
    );
    assert_eq!(h.runtime.running.load(Ordering::SeqCst), 0);
    assert!(
        h.events.failed.lock().unwrap().is_empty(),
        "no failure event for a withdrawn tag"
    );
    assert!(h.rx.try_recv().is_err(), "no status after the stop");
}

#[tokio::test(start_paused = true)]
async fn the_pull_budget_is_never_exceeded() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().extend(std::iter::repeat_n(
        Outcome::Slow(Duration::from_secs(5), "sha256:x"),
        6,
    ));
    let workers: Vec<Worker> = (0..6)
        .map(|i| spawn(h.ctx.clone(), task(&format!("t{i}")), None))
        .collect();
    let mut done = 0;
    while done < 6 {
        if let Some(StatusUpdate::Tag {
            status: Some(s), ..
        }) = h.rx.recv().await
        {
            if s.phase == TagPhase::Succeeded {
                done += 1;
            }
        }
    }
    assert_eq!(h.runtime.max_running.load(Ordering::SeqCst), 2);
    drop(workers);
}

#[tokio::test(start_paused = true)]
async fn presence_checks_repull_a_removed_image_quietly() {
    let mut h = harness(2);
    h.runtime
        .script
        .lock()
        .unwrap()
        .extend([Outcome::Ok("sha256:abc"), Outcome::Ok("sha256:abc")]);
    let _w = spawn(h.ctx.clone(), task("v1"), None);
    h.until_final("v1").await;
    // The kubelet's image GC removes it; the next check pulls it again.
    h.runtime.present.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(4000)).await;
    assert_eq!(
        h.runtime.pulls.load(Ordering::SeqCst),
        2,
        "re-pulled after the check"
    );
    assert!(h
        .runtime
        .present
        .lock()
        .unwrap()
        .contains_key("registry.example.com/app:v1"));
    // The re-pull reports a fresh result (the image had been gone), without Waiting/Pulling noise.
    let mut after = Vec::new();
    while let Ok(StatusUpdate::Tag {
        status: Some(s), ..
    }) = h.rx.try_recv()
    {
        after.push(s.phase);
    }
    assert_eq!(after, [TagPhase::Succeeded]);
    // Present at the next check: nothing happens.
    tokio::time::sleep(Duration::from_secs(4000)).await;
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 2);
    assert!(h.rx.try_recv().is_err());
}

#[test]
fn backoff_doubles_to_a_cap() {
    for (attempt, base) in [
        (1, 1.0),
        (2, 2.0),
        (3, 4.0),
        (5, 16.0),
        (6, 30.0),
        (20, 30.0),
    ] {
        let d = backoff(Duration::from_secs(1), attempt).as_secs_f64();
        assert!(d >= base * 0.8 && d <= base * 1.2, "attempt {attempt}: {d}");
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_slot_counts_against_the_deadline_and_checks_ignore_it() {
    let mut h = harness(1);
    h.runtime.script.lock().unwrap().extend([
        Outcome::Slow(Duration::from_secs(60), "sha256:a"),
        Outcome::Ok("sha256:b"),
        Outcome::Ok("sha256:c"),
    ]);
    let _busy = spawn(h.ctx.clone(), task("busy"), None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let deadline = h.ctx.clock.now() + Duration::from_secs(5);
    let _late = spawn(
        h.ctx.clone(),
        TagTask {
            deadline: Some(deadline),
            ..task("late")
        },
        None,
    );
    let done = h.until_final("late").await.pop().unwrap();
    assert_eq!(
        done.phase,
        TagPhase::Failed,
        "never got a slot before its deadline"
    );
    assert_eq!(
        done.message.as_deref(),
        Some("activeDeadlineSeconds passed before the image was pulled")
    );
    assert_eq!(
        h.runtime.pulls.load(Ordering::SeqCst),
        1,
        "only the busy tag pulled"
    );
    assert_eq!(
        h.ctx.metrics.waiting.get(),
        0,
        "the waiting gauge came back down"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_worker_fails_only_its_own_tag() {
    let mut h = harness(1);
    h.runtime
        .script
        .lock()
        .unwrap()
        .extend([Outcome::Panic, Outcome::Ok("sha256:fine")]);
    let started = tokio::time::Instant::now();
    let _broken = spawn(h.ctx.clone(), task("v1"), None);
    let seen = h.until_final("v1").await;
    let failed = seen.last().unwrap();
    assert_eq!(failed.phase, TagPhase::Failed);
    let message = failed.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("the pull worker panicked (index out of bounds"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "failed at once");
    // Its pull slot was given back: the node's only permit serves the next tag.
    let _fine = spawn(h.ctx.clone(), task("v2"), None);
    let seen = h.until_final("v2").await;
    assert_eq!(seen.last().unwrap().phase, TagPhase::Succeeded);
    assert_eq!(h.ctx.metrics.worker_panics.get(), 1);
}
