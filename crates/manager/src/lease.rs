//! Leader election on a `coordination.k8s.io` Lease: one replica plans and writes, the others
//! wait. Every Lease write carries the resourceVersion it read, so two candidates cannot both
//! win; a leader that cannot renew before its lease runs out steps down (the process exits and
//! restarts as a candidate), so it never writes on a stale claim. A leader that stops hands the
//! Lease back, so a standby takes over within about a second.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// What a candidate last saw of the lease, and when by its own monotonic clock. A lease counts
/// as expired once it has not changed for its whole duration as this process measured it (as
/// client-go judges it), so clock skew between replicas cannot cut it short.
#[derive(Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    at: Option<Instant>,
}

impl Observed {
    fn saw(&mut self, spec: &LeaseSpec) -> Duration {
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.at = Some(Instant::now());
        }
        self.at.map(|t| t.elapsed()).unwrap_or_default()
    }
}

/// What one attempt on the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Hold {
    /// This replica holds it now.
    Held,
    /// Another replica holds it and it has not expired.
    Other,
    /// The Lease changed between our read and our write; read it again to know who holds it.
    Conflict,
}

/// Tries once to take or keep the lease.
async fn try_hold(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    observed: &mut Observed,
) -> Result<Hold, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let mut lease = current.clone().unwrap_or_else(|| {
        let mut l = Lease::default();
        l.metadata.name = Some(cfg.name.clone());
        l
    });
    let spec = lease.spec.get_or_insert_with(Default::default);
    let unchanged_for = observed.saw(spec);
    let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    let held = spec
        .holder_identity
        .as_deref()
        .is_some_and(|h| !h.is_empty());
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    if !mine && held && unchanged_for < duration {
        return Ok(Hold::Other);
    }
    let now = Timestamp::now();
    if !mine {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(held));
        spec.holder_identity = Some(cfg.identity.clone());
    }
    spec.lease_duration_seconds = Some(cfg.duration.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    let result = match current {
        Some(_) => api.replace(&cfg.name, &PostParams::default(), &lease).await,
        None => api.create(&PostParams::default(), &lease).await,
    };
    match result {
        Ok(_) => Ok(Hold::Held),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Hold::Conflict),
        Err(e) => Err(e),
    }
}

/// A replica's identity in the Lease: the pod's name, else the host's name with a random suffix
/// (two containers may share a pid, never this).
pub fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "kruise-manager".into());
        format!("{host}_{:08x}", fastrand::u32(..))
    })
}

/// Leadership held: `lost` is cancelled if it is lost; [`Leadership::release`] gives it up.
pub struct Leadership {
    pub lost: CancellationToken,
    release: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Stops renewing and hands the Lease back (holder empty, duration 1 s, as client-go's
    /// `ReleaseOnCancel` does), so a standby takes over at its next try instead of waiting out
    /// the whole lease. Bounded: a hung API server costs at most [`RELEASE_TIMEOUT`].
    pub async fn release(self) {
        self.release.cancel();
        if tokio::time::timeout(RELEASE_TIMEOUT, self.renewer)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?RELEASE_TIMEOUT, "releasing the lease timed out; the standby waits for it to expire");
        }
    }
}

/// How long a stopping leader tries to hand its Lease back.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a candidate tries for the lease besides when it changes: at least once a second, so
/// an expired lease is taken over promptly even if the watch is down.
fn retry_period(duration: Duration) -> Duration {
    (duration / 5).min(Duration::from_secs(1))
}

/// How long after a successful renewal's start a leader steps down unless it renews again: a
/// third of the lease is left as margin for the others' clocks and this process's pauses.
fn step_down_after(duration: Duration) -> Duration {
    duration * 2 / 3
}

/// Writes the Lease as released, if this replica still holds it.
async fn give_back(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    let now = MicroTime(Timestamp::now());
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now.clone());
    spec.acquire_time = Some(now);
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await
        .map(|_| true)
}

/// Waits until this replica leads (or `shutdown`), then keeps renewing in the background.
/// `None` on shutdown.
pub async fn lead(
    client: Client,
    cfg: LeaseConfig,
    shutdown: CancellationToken,
    supervisor: kruise_observe::Supervisor,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
) -> Option<Leadership> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let retry = retry_period(cfg.duration);
    let renew_every = cfg.duration / 5;
    let mut observed = Observed::default();
    // A standby follows the Lease, so a leader's release is taken over at once, not at the
    // next try.
    let mut changes = watcher::watch_object(api.clone(), &cfg.name).boxed();
    let acquired_at = loop {
        let attempt = Instant::now();
        // A hung API server must not keep a stopping candidate waiting.
        let tried = tokio::select! {
            _ = shutdown.cancelled() => return None,
            tried = tokio::time::timeout(cfg.duration, try_hold(&api, &cfg, &mut observed)) => tried,
        };
        let Ok(tried) = tried else {
            tracing::warn!(lease = %cfg.name, timeout = ?cfg.duration, "the API server did not answer about the lease in time; retrying");
            continue;
        };
        match tried {
            Ok(Hold::Held) if attempt.elapsed() < step_down_after(cfg.duration) => break attempt,
            // Leading now would mean stepping down at the first renewal (its deadline counts
            // from this attempt's start): renew at once instead, and lead when one answers in
            // time. The others see the Lease held meanwhile, so nobody writes.
            Ok(Hold::Held) => {
                tracing::warn!(lease = %cfg.name, took = ?attempt.elapsed(), deadline = ?step_down_after(cfg.duration), "taking the lease took longer than a renewal may; renewing before leading (the API server is slow)");
                continue;
            }
            Ok(_) => tracing::debug!(lease = %cfg.name, "another replica leads; waiting"),
            Err(e) => {
                tracing::warn!(lease = %cfg.name, namespace = %cfg.namespace, error = %kruise_observe::api::error_chain(&e), "leader election failed; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(retry) => {}
            _ = changes.next() => {}
        }
    };
    drop(changes);
    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became the leader");
    let gauge = metrics.as_ref().map(|m| m.leader.clone());
    let leading = move |on: bool| {
        if let Some(g) = &gauge {
            g.set(i64::from(on));
        }
    };
    leading(true);
    let lost = CancellationToken::new();
    let release = CancellationToken::new();
    let (signal, released) = (lost.clone(), release.clone());
    // A renewer that panicked would leave `lost` uncancelled and the process leading blind.
    let renewer = supervisor.spawn_finite("the lease renewal", async move {
        // Counted from before the request that renewed, so a slow answer cannot stretch it.
        let mut renewed_at = acquired_at;
        loop {
            // Step down before the lease could have expired for the others, even when the API
            // server does not answer at all: a hung renewal must not keep a stale leader writing.
            let step_down_at = renewed_at + step_down_after(cfg.duration);
            let pause = renew_every.min(step_down_at.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = released.cancelled() => {
                    leading(false);
                    match give_back(&api, &cfg).await {
                        Ok(true) => tracing::info!(lease = %cfg.name, "released the lease"),
                        Ok(false) => tracing::info!(lease = %cfg.name, "the lease was no longer ours; nothing to release"),
                        Err(e) => tracing::warn!(lease = %cfg.name, error = %kruise_observe::api::error_chain(&e), "releasing the lease failed; the standby waits for it to expire"),
                    }
                    return;
                }
                _ = tokio::time::sleep(pause) => {}
            }
            let attempt = Instant::now();
            let tried =
                tokio::time::timeout_at(step_down_at, try_hold(&api, &cfg, &mut observed)).await;
            if let Some(m) = &metrics {
                m.lease_renewal.observe(attempt.elapsed().as_secs_f64());
            }
            match tried {
                Ok(Ok(Hold::Held)) => renewed_at = attempt,
                // Our own earlier write may have landed late; the next attempt reads who holds it.
                Ok(Ok(Hold::Conflict)) => {
                    tracing::debug!(lease = %cfg.name, "the lease changed while renewing; reading it again")
                }
                Ok(Ok(Hold::Other)) => {
                    tracing::error!(lease = %cfg.name, "another replica took the lease; stepping down");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %cfg.name, error = %kruise_observe::api::error_chain(&e), "renewing the lease failed")
                }
                Err(_) => {}
            }
            if Instant::now() >= step_down_at {
                tracing::error!(lease = %cfg.name, duration = ?cfg.duration, "could not renew the lease in time; stepping down");
                break;
            }
        }
        leading(false);
        signal.cancel();
    });
    Some(Leadership {
        lost,
        release,
        renewer,
    })
}
