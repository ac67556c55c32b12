//! Supervision of a process's long-lived tasks and threads. A task that panics, or that returns
//! while the process is not stopping, or a watchdog whose work has made no progress within its
//! deadline, fails the process: the first cause is logged once, `/healthz` answers 500 with it,
//! and [`Supervisor::failed`] resolves, so the binary steps down and exits non-zero (the kubelet
//! restarts it; a standby takes over). Nothing here restarts a task in place: a task that broke
//! once may hold state that is no longer true, and a fresh process relists everything.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

/// How often watchdogs are looked at.
const CHECK_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: CancellationToken,
    /// The binary is stepping down: tasks ending now are expected to.
    stopping: AtomicBool,
    failed: CancellationToken,
    cause: OnceLock<String>,
    watchdogs: Mutex<Vec<Arc<Watchdog>>>,
}

impl Supervisor {
    /// A supervisor for a process that stops on `shutdown`; its watchdogs are checked by a task
    /// on the current runtime.
    pub fn new(shutdown: CancellationToken) -> Self {
        let me = Self {
            inner: Arc::new(Inner {
                shutdown,
                stopping: AtomicBool::new(false),
                failed: CancellationToken::new(),
                cause: OnceLock::new(),
                watchdogs: Mutex::new(Vec::new()),
            }),
        };
        let checker = me.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = checker.inner.failed.cancelled() => return,
                    _ = checker.inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(CHECK_EVERY) => checker.check_watchdogs(),
                }
            }
        });
        me
    }

    /// Fails the process with `cause`; only the first cause counts (and is logged).
    pub fn fail(&self, cause: String) {
        if self.inner.cause.set(cause.clone()).is_ok() {
            tracing::error!(%cause, "a supervised task failed; stepping down and exiting");
            self.inner.failed.cancel();
        }
    }

    /// Resolves with the cause once the process has failed.
    pub async fn failed(&self) -> String {
        self.inner.failed.cancelled().await;
        self.cause().unwrap_or_default()
    }

    /// Why the process failed, if it has.
    pub fn cause(&self) -> Option<String> {
        self.inner.cause.get().cloned()
    }

    /// The binary is stepping down (for whatever reason): tasks that end from now on are not
    /// failures.
    pub fn stopping(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    fn expects_ends(&self) -> bool {
        self.inner.shutdown.is_cancelled()
            || self.inner.stopping.load(Ordering::SeqCst)
            || self.inner.failed.is_cancelled()
    }

    /// Spawns `task`; it is expected to run until shutdown (or until it is aborted).
    pub fn spawn<F>(&self, name: &str, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (me, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            let outcome = AssertUnwindSafe(task).catch_unwind().await;
            me.ended(&name, outcome.map_err(|p| panic_message(&*p)));
        })
    }

    /// Spawns `task`, which may finish on its own; only a panic fails the process.
    pub fn spawn_finite<F>(&self, name: &str, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (me, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            if let Err(p) = AssertUnwindSafe(task).catch_unwind().await {
                me.fail(format!("{name} panicked: {}", panic_message(&*p)));
            }
        })
    }

    /// Starts a thread running `work`; like [`Supervisor::spawn`], for blocking work.
    pub fn spawn_thread<F>(
        &self,
        name: &str,
        work: F,
    ) -> std::io::Result<std::thread::JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        let (me, task) = (self.clone(), name.to_string());
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
                me.ended(&task, outcome.map_err(|p| panic_message(&*p)));
            })
    }

    /// A task ended: fine while stopping, a failure otherwise.
    fn ended(&self, name: &str, outcome: Result<(), String>) {
        match outcome {
            Err(message) => self.fail(format!("{name} panicked: {message}")),
            Ok(()) if !self.expects_ends() => self.fail(format!("{name} ended unexpectedly")),
            Ok(()) => {}
        }
    }

    /// A watchdog for `name`'s work: while work is pending, some must finish within `deadline`.
    pub fn watchdog(&self, name: &str, deadline: Duration) -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            name: name.to_string(),
            deadline,
            epoch: Instant::now(),
            pending: AtomicI64::new(0),
            progress_at: AtomicU64::new(0),
        });
        self.inner
            .watchdogs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dog.clone());
        dog
    }

    fn check_watchdogs(&self) {
        let stalled = {
            let dogs = self
                .inner
                .watchdogs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            dogs.iter().find_map(|d| d.stalled())
        };
        if let Some(cause) = stalled {
            self.fail(cause);
        }
    }
}

/// Pending work of one task, and when some last finished.
pub struct Watchdog {
    name: String,
    deadline: Duration,
    epoch: Instant,
    pending: AtomicI64,
    /// Milliseconds since `epoch` of the last progress (or of the moment work became pending).
    progress_at: AtomicU64,
}

impl Watchdog {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// `n` more pieces of work are pending; the clock starts if none were.
    pub fn add(&self, n: usize) {
        if self.pending.fetch_add(n as i64, Ordering::SeqCst) <= 0 {
            self.progress_at.store(self.now_ms(), Ordering::SeqCst);
        }
    }

    /// `n` pieces of work finished (whichever way): progress.
    pub fn done(&self, n: usize) {
        self.progress_at.store(self.now_ms(), Ordering::SeqCst);
        self.pending.fetch_sub(n as i64, Ordering::SeqCst);
    }

    /// One piece of work, finished when the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.add(1);
        Busy(self.clone())
    }

    /// The failure cause, if work is pending and none finished within the deadline.
    fn stalled(&self) -> Option<String> {
        if self.pending.load(Ordering::SeqCst) <= 0 {
            return None;
        }
        let quiet = self
            .now_ms()
            .saturating_sub(self.progress_at.load(Ordering::SeqCst));
        (quiet > self.deadline.as_millis() as u64).then(|| {
            format!(
                "{} made no progress for {:?} (its deadline is {:?}) with work pending",
                self.name,
                Duration::from_millis(quiet),
                self.deadline
            )
        })
    }
}

/// Work in progress on a [`Watchdog`].
pub struct Busy(Arc<Watchdog>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.done(1);
    }
}

/// The message a panic was raised with.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    }
}

/// Whether the fail point `name` fires now (tests set them through the `FAILPOINTS` environment
/// variable, e.g. `FAILPOINTS=engine-round=1*off->return`). Always `false` unless the
/// `failpoints` feature is on, which only the end-to-end tests' build turns on.
pub fn fault(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |_| ()).is_some()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// Reads `FAILPOINTS` (with the `failpoints` feature; otherwise does nothing).
pub fn init_faults() {
    #[cfg(feature = "failpoints")]
    {
        // The scenario lives as long as the process; leaking it keeps the fail points set.
        std::mem::forget(fail::FailScenario::setup());
        if std::env::var_os("FAILPOINTS").is_some() {
            tracing::warn!("fail points are set (FAILPOINTS); this process injects faults");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_fails_the_process_with_its_message() {
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn("the engine", async { panic!("boom") });
        let cause = tokio::time::timeout(Duration::from_secs(5), sup.failed())
            .await
            .expect("failed in time");
        assert_eq!(cause, "the engine panicked: boom");
    }

    #[tokio::test]
    async fn a_task_that_returns_before_shutdown_fails_the_process() {
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn("the writer", async {});
        let cause = tokio::time::timeout(Duration::from_secs(5), sup.failed())
            .await
            .expect("failed in time");
        assert_eq!(cause, "the writer ended unexpectedly");
    }

    #[tokio::test]
    async fn a_task_that_returns_on_shutdown_is_fine() {
        let shutdown = CancellationToken::new();
        let sup = Supervisor::new(shutdown.clone());
        shutdown.cancel();
        sup.spawn("a watch", async {}).await.unwrap();
        assert_eq!(sup.cause(), None);
    }

    #[tokio::test]
    async fn a_panicking_thread_fails_the_process() {
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn_thread("kruise-engine", || panic!("index out of bounds"))
            .unwrap();
        let cause = tokio::time::timeout(Duration::from_secs(5), sup.failed())
            .await
            .expect("failed in time");
        assert_eq!(cause, "kruise-engine panicked: index out of bounds");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watchdog_fails_only_when_pending_work_stops_finishing() {
        let sup = Supervisor::new(CancellationToken::new());
        let dog = sup.watchdog("the writer", Duration::from_secs(10));
        // Idle for longer than the deadline: fine.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(sup.cause(), None);
        // Busy, with progress every few seconds: fine.
        dog.add(3);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            dog.done(1);
        }
        dog.add(1);
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(sup.cause(), None);
        // Then nothing finishes.
        let cause = tokio::time::timeout(Duration::from_secs(30), sup.failed())
            .await
            .expect("failed in time");
        assert!(
            cause.starts_with("the writer made no progress for"),
            "{cause}"
        );
    }
}
