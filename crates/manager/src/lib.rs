//! kruise-manager: watches Nodes, NodeImages, ImagePullJobs, ImageListPullJobs, Pods and pull
//! secrets; plans (a pure function of that state and the time) what every NodeImage spec and job
//! status should be; and writes only the differences, one patch per object.

pub mod adopt;
mod args;
pub mod lease;
pub mod listjob;
mod listwriter;
pub mod metrics;
pub mod overlay;
pub mod plan;
pub mod secrets;
pub mod selector;
pub mod stores;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use args::Args;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kruise_api::ImagePullJob;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// When to plan again after a round with `conflicts` and `failing_rounds` erring rounds in a row.
fn retry_after(failing_rounds: u32, conflicts: usize) -> Option<Duration> {
    match (failing_rounds, conflicts) {
        (0, 0) => None,
        (0, _) => Some(Duration::from_secs(1)),
        (n, _) => Some(Duration::from_secs(1 << (n - 1).min(6)).min(MAX_ERROR_BACKOFF)),
    }
}

/// The longest wait before planning again while writes keep failing.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(60);

/// Changes arriving within this window are planned together (jobs created together share writes).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The binary's `main`: flags from `args` (the first is the program's name), logging, a
/// multi-threaded runtime, then [`run`].
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<()> {
    use clap::Parser;
    let args = Args::parse_from(args);
    kruise_observe::init_logging(&args.log)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let kruise_observe::Started {
        shutdown,
        readiness,
        metrics,
        admin,
        addr,
    } = kruise_observe::start("kruise_manager", args.metrics_addr, metrics::Metrics::new).await?;
    tracing::info!(%addr, "kruise-manager serving /metrics, /healthz and /readyz");

    let (client, server) =
        kruise_observe::api::client("kruise-manager", env!("CARGO_PKG_VERSION")).await?;
    tracing::info!(%server, "using the Kubernetes API server");
    if !wait_for_crds(&client, &server, &shutdown).await {
        return Ok(());
    }
    check_node_selector(&client, &args.node_selector).await?;
    let changed = Arc::new(Notify::new());
    let scope = stores::Scope {
        node_selector: args.node_selector.clone(),
        job_namespace: args.job_namespace.clone(),
    };
    let stores = stores::Stores::start(&client, &scope, changed.clone());
    tokio::select! {
        r = stores.wait_until_ready() => r?,
        _ = shutdown.cancelled() => return Ok(()),
    }
    readiness.set(true);
    let leadership = if args.leader_elect {
        let identity = lease::identity();
        let cfg = lease::LeaseConfig {
            namespace: args.leader_election_namespace.clone(),
            name: args.leader_election_id.clone(),
            identity,
            duration: args.leader_election_lease_duration,
        };
        match lease::lead(client.clone(), cfg, shutdown.clone()).await {
            Some(leadership) => Some(leadership),
            None => return Ok(()),
        }
    } else {
        None
    };
    let lost = leadership
        .as_ref()
        .map_or_else(CancellationToken::new, |l| l.lost.clone());
    tracing::info!("caches synced; planning");

    let settings = plan::Settings {
        nodeimage_creation_delay: args.nodeimage_creation_delay,
        response_timeout: args.node_response_timeout,
    };
    let reporter = Reporter {
        controller: "kruise-manager".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let mut writer = writer::Writer {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        node_images: Default::default(),
        jobs: Default::default(),
        lists: Default::default(),
    };
    let mut requeue: Option<Duration> = None;
    let mut failing_rounds = 0;
    loop {
        let wait = requeue.unwrap_or(Duration::from_secs(300));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = lost.cancelled() => anyhow::bail!("lost leadership; exiting so a fresh process can compete again"),
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(DEBOUNCE) => {}
        }
        let round = reconcile(
            &client,
            &scope,
            &stores,
            &settings,
            &mut writer,
            &metrics,
            &mut failing_rounds,
        );
        tokio::pin!(round);
        requeue = tokio::select! {
            r = &mut round => {
                release_freed_memory();
                r
            }
            // Not one more write without the lease: another replica may be leading already.
            _ = lost.cancelled() => anyhow::bail!("lost leadership mid-round; exiting so a fresh process can compete again"),
            _ = shutdown.cancelled() => {
                finish_round(round, &lost).await;
                break;
            }
        };
    }
    readiness.set(false);
    if let Some(l) = leadership {
        l.release().await;
    }
    let _ = admin.await;
    tracing::info!("kruise-manager stopped");
    Ok(())
}

/// A round over thousands of NodeImages allocates and frees hundreds of megabytes; glibc keeps
/// freed memory mapped unless asked, so without this the manager's RSS stays at its busiest
/// round's peak for good.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long a stopping manager lets its current round finish its writes; well inside the
/// default 30s termination grace period, and a later leader recomputes anything left undone.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn finish_round(
    round: impl std::future::Future<Output = Option<Duration>>,
    lost: &CancellationToken,
) {
    tracing::info!(grace = ?SHUTDOWN_GRACE, "finishing the current round's writes before stopping");
    tokio::select! {
        _ = round => {}
        _ = lost.cancelled() => tracing::warn!("lost the lease while stopping; the round's remaining writes are dropped"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "the round did not finish in time; stopping anyway, the next leader plans again")
        }
    }
}

/// Waits until the API server answers and serves ImagePullJobs, retrying with backoff and
/// saying why not (the server and the cause; "install the CRDs" only when they are missing).
/// `false` on shutdown.
async fn wait_for_crds(client: &Client, server: &str, shutdown: &CancellationToken) -> bool {
    let api: Api<ImagePullJob> = Api::all(client.clone());
    let mut retry = Duration::from_secs(1);
    let mut log = kruise_observe::api::RetryLog::default();
    loop {
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => {
                log.recovered("reaching the API server");
                return true;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => tracing::error!(
                %server,
                retry_in = ?retry,
                "the ImagePullJob CRD is not installed (404 for imagepulljobs.apps.kruise.io); \
                 install the CRDs: kubectl apply -f config/crd/ (the Helm chart installs them)"
            ),
            Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => tracing::error!(
                %server,
                error = %s.message,
                retry_in = ?retry,
                "not allowed to list ImagePullJobs; the manager's service account needs the \
                 chart's ClusterRole (charts/kruise/templates/rbac-manager.yaml)"
            ),
            Err(e) => log.failed("reaching the API server", server, &e, Some(retry)),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = kruise_observe::api::backoff(retry, Duration::from_secs(30));
    }
}

/// Refuses a `--node-selector` the API server cannot parse, naming the flag (the API server's
/// own parser is the one that counts).
async fn check_node_selector(client: &Client, selector: &str) -> anyhow::Result<()> {
    if selector.is_empty() {
        return Ok(());
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    match nodes
        .list_metadata(&kube::api::ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 400 => {
            anyhow::bail!(
                "--node-selector {selector:?} is not a label selector: {}",
                s.message
            )
        }
        _ => Ok(()),
    }
}

/// One round: sync pull secrets, plan, write; returns when to plan again at the latest.
async fn reconcile(
    client: &Client,
    scope: &stores::Scope,
    stores: &stores::Stores,
    settings: &plan::Settings,
    writer: &mut writer::Writer,
    metrics: &metrics::Metrics,
    failing_rounds: &mut u32,
) -> Option<Duration> {
    let jobs = writer.jobs.merge(stores.jobs.state());
    let node_images = writer.node_images.merge(stores.node_images.state());
    metrics.jobs.set(jobs.len() as i64);
    metrics.node_images.set(node_images.len() as i64);

    let sources: BTreeMap<String, Secret> = stores
        .docker_config_json
        .state()
        .into_iter()
        .chain(stores.docker_cfg.state())
        .map(|s| {
            (
                format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
                (*s).clone(),
            )
        })
        .collect();
    let want = secrets::desired(&jobs, &sources);
    let have: Vec<Secret> = stores
        .synced
        .state()
        .into_iter()
        .map(|s| (*s).clone())
        .collect();
    let mut synced = secrets::references(&have);
    synced.retain(|source, _| sources.contains_key(source));
    for (name, s) in &want {
        let source = s
            .annotations()
            .get(kruise_api::constants::SECRET_SOURCE_KEY_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        synced
            .entry(source)
            .or_insert_with(|| kruise_api::ReferenceObject {
                namespace: Some(kruise_api::constants::DAEMON_CONFIG_NAMESPACE.into()),
                name: Some(name.clone()),
                mode: Some(kruise_api::constants::SECRET_MODE_BATCH.into()),
            });
    }
    let secret_errors = secrets::apply(client, scope, &want, &have).await
        + adopt::release_finalizers(client, &jobs).await;

    let snapshot = plan::Snapshot {
        nodes: stores.nodes.state().iter().map(|n| node_info(n)).collect(),
        node_images: node_images.clone(),
        jobs: jobs.clone(),
        pods: stores.pods.state().iter().map(|p| pod_info(p)).collect(),
        synced_secrets: synced,
    };
    let started = Instant::now();
    let mut planned = plan::plan(&snapshot, settings, Timestamp::now());
    metrics.plans.inc();
    metrics
        .plan_duration
        .observe(started.elapsed().as_secs_f64());
    let mut written = writer.apply(&mut planned, &node_images, &jobs).await;
    written.errors += secret_errors;
    let lists = listwriter::apply(client, stores, &jobs, writer, &mut written).await;
    if written.conflicts + written.errors > 0 {
        metrics.round_errors.inc();
    }
    // A conflict is the normal cost of a lagging cache: plan again at once. Errors may persist
    // (RBAC, a missing namespace, a refused object): back off while they do.
    *failing_rounds = if written.errors > 0 {
        *failing_rounds + 1
    } else {
        0
    };
    let retry = retry_after(*failing_rounds, written.conflicts);
    let mut requeue = planned.requeue_after;
    for r in [
        lists,
        retry,
        // Own writes the caches have not confirmed expire; look again when they do.
        writer.node_images.holding(),
        writer.jobs.holding(),
        writer.lists.holding(),
    ]
    .into_iter()
    .flatten()
    {
        requeue = Some(requeue.map_or(r, |q| q.min(r)));
    }
    requeue
}

fn node_info(n: &k8s_openapi::api::core::v1::Node) -> plan::NodeInfo {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    plan::NodeInfo {
        name: n.name_any(),
        uid: n.uid().unwrap_or_default(),
        labels: n.labels().clone(),
        ready_since: ready.filter(|c| c.status == "True").map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        }),
    }
}

fn pod_info(p: &k8s_openapi::api::core::v1::Pod) -> plan::PodInfo {
    let node_name = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    plan::PodInfo {
        namespace: p.namespace().unwrap_or_default(),
        labels: p.labels().clone(),
        active: !node_name.is_empty()
            && !matches!(phase, "Succeeded" | "Failed")
            && p.metadata.deletion_timestamp.is_none(),
        node_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_writes_back_off_and_conflicts_do_not() {
        assert_eq!(retry_after(0, 0), None);
        assert_eq!(retry_after(0, 3), Some(Duration::from_secs(1)));
        let waits: Vec<u64> = (1..=9)
            .map(|n| retry_after(n, 0).unwrap().as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
