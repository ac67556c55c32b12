//! Per-registry-host backoff after a rate limit, shared by every tag of that host on the node.
//!
//! A registry that answers `429 Too Many Requests` limits the node (or its address), not one
//! image, so retrying each tag on its own schedule only prolongs the limit. After a rate-limited
//! attempt ([`kruise_cri::CriErrorKind::RateLimited`]) no tag of that host starts an attempt
//! until the host's backoff ends: 10 s, doubling with each further limit up to 5 min, ±20%
//! jitter. When it ends, one attempt goes first (the probe); the others follow once it succeeds,
//! or after [`PROBE_WINDOW`] if it is still running, or wait again if it was limited too. A
//! host that has not limited the node for [`RESET_AFTER`] starts over at 10 s.
//!
//! containerd 1.6 does not pass the registry's `Retry-After` on (its message has only the
//! status line), so the delay is the daemon's own.
//!
//! Attempts: a rate-limited attempt counts as one of the tag's `backoffLimit + 1` attempts, like
//! any failure (as in OpenKruise); waiting here behind another tag's limit counts none, and
//! neither does the tag's own wait (bounded only by its `activeDeadlineSeconds`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kruise_api::imageref::ImageRef;
use kruise_api::ImageTagStatus;
use kruise_cri::{CriError, CriErrorKind};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::desired::TagTask;
use crate::worker::{report, WorkerContext};

/// The first backoff after a rate limit.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// The longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long the other tags wait for the probe (the first attempt after a backoff) to succeed
/// before they go too.
pub const PROBE_WINDOW: Duration = Duration::from_secs(10);
/// A host not rate-limited for this long starts over at [`INITIAL_BACKOFF`].
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Whether an attempt at a host may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Go,
    /// Not before this; ask again then.
    WaitUntil(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The backoff has not ended, or no attempt has started since it did.
    Pending,
    /// The first attempt after the backoff started then.
    Running(Instant),
    /// An attempt succeeded since the last limit.
    Passed,
}

#[derive(Debug)]
struct Host {
    until: Instant,
    strikes: u32,
    limited_at: Instant,
    probe: Probe,
}

/// The node's rate-limited registry hosts.
#[derive(Debug)]
pub struct RegistryGate {
    hosts: Mutex<HashMap<String, Host>>,
    /// Wakes waiting tags when a host's state changes (a probe succeeded, a new limit).
    changed: Notify,
    initial: Duration,
    max: Duration,
}

impl Default for RegistryGate {
    fn default() -> Self {
        Self::new(INITIAL_BACKOFF, MAX_BACKOFF)
    }
}

impl RegistryGate {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            hosts: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            initial,
            max,
        }
    }

    /// Whether an attempt at `host` may start at `now`; the first one after a backoff becomes
    /// the probe.
    pub fn turn(&self, host: &str, now: Instant) -> Turn {
        let mut hosts = self.hosts.lock().unwrap();
        let Some(h) = hosts.get_mut(host) else {
            return Turn::Go;
        };
        if now < h.until {
            return Turn::WaitUntil(h.until);
        }
        match h.probe {
            Probe::Pending => {
                h.probe = Probe::Running(now);
                Turn::Go
            }
            Probe::Running(since) if now < since + PROBE_WINDOW => {
                Turn::WaitUntil(since + PROBE_WINDOW)
            }
            Probe::Running(_) | Probe::Passed => {
                if now.duration_since(h.limited_at) >= RESET_AFTER {
                    hosts.remove(host);
                }
                Turn::Go
            }
        }
    }

    /// Records a rate-limited attempt at `now`; returns when the host's backoff ends. Limits
    /// seen while the host is already backing off (attempts that were running together) extend
    /// nothing.
    pub fn rate_limited(&self, host: &str, now: Instant) -> Instant {
        let mut hosts = self.hosts.lock().unwrap();
        let strikes = match hosts.get(host) {
            Some(h) if now < h.until => return h.until,
            Some(h) if now.duration_since(h.limited_at) < RESET_AFTER => h.strikes + 1,
            _ => 1,
        };
        let base = self
            .initial
            .saturating_mul(1u32 << (strikes - 1).min(16))
            .min(self.max);
        let until = now + base.mul_f64(0.8 + fastrand::f64() * 0.4);
        hosts.insert(
            host.to_string(),
            Host {
                until,
                strikes,
                limited_at: now,
                probe: Probe::Pending,
            },
        );
        self.changed.notify_waiters();
        until
    }

    /// Records a successful attempt: the tags waiting for the probe go.
    pub fn succeeded(&self, host: &str) {
        let mut hosts = self.hosts.lock().unwrap();
        if let Some(h) = hosts.get_mut(host) {
            if h.probe != Probe::Passed {
                h.probe = Probe::Passed;
                self.changed.notify_waiters();
            }
        }
    }
}

/// The registry host of a reference (`127.0.0.1:5000`, `docker.io`).
fn host_of(reference: &str) -> Option<String> {
    ImageRef::parse(reference)
        .ok()
        .map(|r| r.registry().to_string())
}

/// `2024-05-01T12:00:00Z`
fn rfc3339(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Before an attempt: waits while the tag's registry host is backing off, the tag's message
/// saying until when (reported unless the round is `quiet`). Returns at the tag's deadline at
/// the latest; the caller then finds no time left.
pub(crate) async fn wait_turn<R>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: &mut ImageTagStatus,
    quiet: bool,
) {
    let Some(host) = host_of(&task.reference) else {
        return;
    };
    let deadline = task
        .deadline
        .map(|d| Instant::now() + d.duration_since(ctx.clock.now()).unwrap_or_default());
    loop {
        let changed = ctx.registry_gate.changed.notified();
        let now = Instant::now();
        let Turn::WaitUntil(until) = ctx.registry_gate.turn(&host, now) else {
            return;
        };
        if deadline.is_some_and(|d| d <= now) {
            return;
        }
        let at = ctx.clock.now() + until.duration_since(now);
        let message = format!(
            "rate-limited by the registry {host}, retrying at {}",
            rfc3339(at)
        );
        if st.message.as_deref() != Some(message.as_str()) {
            tracing::info!(%host, retry_at = %rfc3339(at), "waiting for the registry's rate limit");
            st.message = Some(message);
            if !quiet {
                report(ctx, task.key(), st.clone()).await;
            }
        }
        let wake = deadline.map_or(until, |d| d.min(until));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = changed => {}
        }
    }
}

/// After an attempt: counts it by result, and tells the gate what the host did.
pub(crate) fn after_attempt<R>(ctx: &WorkerContext<R>, task: &TagTask, error: Option<&CriError>) {
    let result = error.map_or("succeeded", |e| e.kind.label());
    ctx.metrics.count_attempt(result);
    let Some(host) = host_of(&task.reference) else {
        return;
    };
    match error {
        None => ctx.registry_gate.succeeded(&host),
        Some(e) if e.kind == CriErrorKind::RateLimited => {
            let now = Instant::now();
            let until = ctx.registry_gate.rate_limited(&host, now);
            tracing::warn!(
                %host,
                backoff_secs = until.duration_since(now).as_secs(),
                "rate-limited by the registry; every tag of this host waits"
            );
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "registry.example.com";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The backoff ends within ±20% of `base` after `from`.
    fn assert_around(until: Instant, from: Instant, base: Duration) {
        let d = until.duration_since(from);
        assert!(
            d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
            "{d:?} not within 20% of {base:?}"
        );
    }

    #[test]
    fn a_host_never_limited_is_open() {
        let gate = RegistryGate::default();
        assert_eq!(gate.turn(H, Instant::now()), Turn::Go);
        gate.succeeded(H);
        assert_eq!(gate.turn(H, Instant::now()), Turn::Go);
    }

    #[test]
    fn a_limit_holds_every_tag_of_the_host_and_only_that_host() {
        let gate = RegistryGate::default();
        let t0 = Instant::now();
        let until = gate.rate_limited(H, t0);
        assert_around(until, t0, INITIAL_BACKOFF);
        assert_eq!(gate.turn(H, t0 + secs(1)), Turn::WaitUntil(until));
        assert_eq!(gate.turn("other.example.com", t0), Turn::Go);
        // Attempts that were running together and are limited too extend nothing.
        assert_eq!(gate.rate_limited(H, t0 + secs(2)), until);
    }

    #[test]
    fn after_the_backoff_one_probe_goes_and_the_rest_follow_its_success() {
        let gate = RegistryGate::default();
        let t0 = Instant::now();
        let until = gate.rate_limited(H, t0);
        assert_eq!(gate.turn(H, until), Turn::Go, "the probe");
        assert_eq!(
            gate.turn(H, until + secs(1)),
            Turn::WaitUntil(until + PROBE_WINDOW),
            "the others wait for it"
        );
        gate.succeeded(H);
        assert_eq!(gate.turn(H, until + secs(2)), Turn::Go);
    }

    #[test]
    fn a_slow_probe_holds_the_others_only_for_its_window() {
        let gate = RegistryGate::default();
        let t0 = Instant::now();
        let until = gate.rate_limited(H, t0);
        assert_eq!(gate.turn(H, until), Turn::Go);
        assert_eq!(gate.turn(H, until + PROBE_WINDOW), Turn::Go);
    }

    #[test]
    fn limits_in_a_row_double_the_backoff_up_to_the_cap() {
        let gate = RegistryGate::default();
        let mut now = Instant::now();
        let mut base = INITIAL_BACKOFF;
        for _ in 0..8 {
            let until = gate.rate_limited(H, now);
            assert_around(until, now, base);
            // The probe, limited again.
            assert_eq!(gate.turn(H, until), Turn::Go);
            now = until + secs(1);
            base = (base * 2).min(MAX_BACKOFF);
        }
        assert_eq!(base, MAX_BACKOFF, "the cap was reached");
    }

    #[test]
    fn a_host_quiet_for_a_while_starts_over() {
        let gate = RegistryGate::default();
        let t0 = Instant::now();
        let first = gate.rate_limited(H, t0);
        let second = gate.rate_limited(H, first + secs(1));
        assert_around(second, first + secs(1), INITIAL_BACKOFF * 2);
        let later = second + RESET_AFTER;
        let third = gate.rate_limited(H, later);
        assert_around(third, later, INITIAL_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_tag_wakes_when_the_probe_succeeds() {
        let gate = std::sync::Arc::new(RegistryGate::default());
        let until = gate.rate_limited(H, Instant::now());
        tokio::time::sleep_until(until).await;
        assert_eq!(gate.turn(H, Instant::now()), Turn::Go, "the probe");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move {
                loop {
                    let changed = gate.changed.notified();
                    match gate.turn(H, Instant::now()) {
                        Turn::Go => return Instant::now(),
                        Turn::WaitUntil(t) => tokio::select! {
                            _ = tokio::time::sleep_until(t) => {}
                            _ = changed => {}
                        },
                    }
                }
            }
        });
        tokio::time::sleep(secs(2)).await;
        gate.succeeded(H);
        let woke = waiter.await.unwrap().duration_since(until);
        // Timers fire on whole milliseconds.
        assert!(
            woke >= secs(2) && woke < secs(3),
            "woke {woke:?} after the backoff: at the success, not the window's end"
        );
    }

    #[test]
    fn the_host_is_the_reference_s_registry() {
        assert_eq!(
            host_of("127.0.0.1:5000/lab/a:v1").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(host_of("nginx:1").as_deref(), Some("docker.io"));
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH + secs(86_400 + 1)),
            "1970-01-02T00:00:01Z"
        );
    }
}
