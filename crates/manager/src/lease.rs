//! Leader election on a `coordination.k8s.io` Lease: one replica plans and writes, the others
//! wait. Every Lease write carries the resourceVersion it read, so two candidates cannot both
//! win; a leader that cannot renew before its lease runs out steps down (the process exits and
//! restarts as a candidate), so it never writes on a stale claim.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let duration = spec.lease_duration_seconds.unwrap_or(15) as i64;
    now.as_second() >= renewed + duration
}

/// Tries once to take or keep the lease; `Ok(true)` when this replica holds it now.
async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let mut lease = current.clone().unwrap_or_else(|| {
        let mut l = Lease::default();
        l.metadata.name = Some(cfg.name.clone());
        l
    });
    let spec = lease.spec.get_or_insert_with(Default::default);
    let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    if !mine && !expired(spec, now) && spec.holder_identity.is_some() {
        return Ok(false);
    }
    if !mine {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions =
            Some(spec.lease_transitions.unwrap_or(0) + i32::from(spec.holder_identity.is_some()));
        spec.holder_identity = Some(cfg.identity.clone());
    }
    spec.lease_duration_seconds = Some(cfg.duration.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    let result = match current {
        Some(_) => api.replace(&cfg.name, &PostParams::default(), &lease).await,
        None => api.create(&PostParams::default(), &lease).await,
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica leads (or `shutdown`), then keeps renewing in the background;
/// the returned token is cancelled if leadership is lost. `None` on shutdown.
pub async fn lead(
    client: Client,
    cfg: LeaseConfig,
    shutdown: CancellationToken,
) -> Option<CancellationToken> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let retry = cfg.duration / 5;
    loop {
        match try_hold(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => tracing::debug!(lease = %cfg.name, "another replica leads; waiting"),
            Err(e) => {
                tracing::warn!(lease = %cfg.name, namespace = %cfg.namespace, error = %e, "leader election failed; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(retry) => {}
        }
    }
    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became the leader");
    let lost = CancellationToken::new();
    let signal = lost.clone();
    tokio::spawn(async move {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(retry).await;
            // Step down before the lease could have expired for the others, even when the API
            // server does not answer at all: a hung renewal must not keep a stale leader writing.
            let step_down_at = last_renewal + cfg.duration * 2 / 3;
            match tokio::time::timeout_at(step_down_at, try_hold(&api, &cfg)).await {
                Ok(Ok(true)) => last_renewal = tokio::time::Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!(lease = %cfg.name, "another replica took the lease; stepping down");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %cfg.name, error = %e, "renewing the lease failed")
                }
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= step_down_at {
                tracing::error!(lease = %cfg.name, duration = ?cfg.duration, "could not renew the lease in time; stepping down");
                break;
            }
        }
        signal.cancel();
    });
    Some(lost)
}
