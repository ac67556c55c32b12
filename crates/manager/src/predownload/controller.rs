//! The rollout pre-download controller: its watches (apps/v1 workloads always; OpenKruise's
//! CloneSet, Advanced StatefulSet and Advanced DaemonSet while their CRDs are served, found by
//! probing every `--predownload-discovery-interval`), the [`Store`] they feed, and the loop that
//! reconciles the workloads an event touched: [`adapt`], [`decide`], then create and delete
//! ImagePullJobs and mark the update revision. A failed write is retried with backoff and shown
//! as a Warning event; the revision is marked only once every job exists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::core::v1::ObjectReference;
use kruise_api::ImagePullJob;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::store::{Event, RolloutPod, Store, Uid};
use super::{adapt, decide, mark_patch, Kind, Mark, Outcome};
use crate::metrics::Metrics;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Opt every Deployment, StatefulSet and DaemonSet in (unless annotated `"false"`).
    pub all_workloads: bool,
    /// Only this namespace's workloads (the manager's `--job-namespace`); empty: all.
    pub namespace: String,
    /// How often to look for OpenKruise's workload CRDs being installed or removed.
    pub discovery_interval: Duration,
}

// Pod and job events are larger than the others; each is moved once through the channel, so
// boxing would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
enum Change {
    Workload(Kind, Event<Value>),
    Revision(Event<Value>),
    ReplicaSet(Event<Value>),
    Pod(Event<RolloutPod>),
    Job(Event<ImagePullJob>),
    KindGone(Kind),
}

/// OpenKruise's kinds, with the versions to try, preferred first.
const KRUISE_KINDS: &[(Kind, &str, &[&str])] = &[
    (Kind::CloneSet, "clonesets", &["v1beta1", "v1alpha1"]),
    (
        Kind::AdvancedStatefulSet,
        "statefulsets",
        &["v1beta1", "v1alpha1"],
    ),
    (
        Kind::AdvancedDaemonSet,
        "daemonsets",
        &["v1beta1", "v1alpha1"],
    ),
];

/// Runs until `shutdown`.
pub async fn run(
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    cfg: Config,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = unbounded_channel();
    let ns = cfg.namespace.as_str();
    for (kind, ar) in [
        (Kind::Deployment, ApiResource::erase::<Deployment>(&())),
        (Kind::StatefulSet, ApiResource::erase::<StatefulSet>(&())),
        (Kind::DaemonSet, ApiResource::erase::<DaemonSet>(&())),
    ] {
        spawn_dynamic(
            &client,
            ns,
            ar,
            move |e| Change::Workload(kind, e),
            &tx,
            &shutdown,
        );
    }
    spawn_dynamic(
        &client,
        ns,
        ApiResource::erase::<ControllerRevision>(&()),
        Change::Revision,
        &tx,
        &shutdown,
    );
    spawn_dynamic(
        &client,
        ns,
        ApiResource::erase::<ReplicaSet>(&()),
        Change::ReplicaSet,
        &tx,
        &shutdown,
    );
    spawn_typed::<RolloutPod>(&client, ns, "pods", Change::Pod, &tx, &shutdown);
    spawn_typed::<ImagePullJob>(&client, ns, "imagepulljobs", Change::Job, &tx, &shutdown);
    tokio::spawn(discover(
        client.clone(),
        cfg.clone(),
        tx.clone(),
        shutdown.clone(),
    ));

    let mut store = Store::default();
    let mut retries: HashMap<Uid, (Instant, Duration)> = HashMap::new();
    let mut last_note: HashMap<Uid, String> = HashMap::new();
    // Marks patched and not yet seen by the revision watch: other changes of the workload in
    // the meantime must not patch them again.
    let mut marked: HashMap<Uid, Value> = HashMap::new();
    loop {
        let next_retry = retries.values().map(|(at, _)| *at).min();
        let mut dirty: HashSet<Uid> = HashSet::new();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            c = rx.recv() => match c {
                Some(c) => dirty.extend(apply(&mut store, c)),
                None => return,
            },
            _ = sleep_until(next_retry) => {}
        }
        // Take in what else is queued: one reconcile per workload however many events.
        while let Ok(c) = rx.try_recv() {
            dirty.extend(apply(&mut store, c));
        }
        let now = Instant::now();
        dirty.extend(
            retries
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(uid, _)| uid.clone()),
        );
        for (kind, n) in store.counts() {
            metrics
                .predownload_workloads
                .get_or_create(&crate::metrics::KindLabels {
                    kind: kind.label().into(),
                })
                .set(n as i64);
        }
        let ctx = Ctx {
            client: &client,
            recorder: &recorder,
            metrics: &metrics,
            cfg: &cfg,
        };
        for uid in dirty {
            let ok = ctx
                .reconcile(&store, &uid, &mut last_note, &mut marked)
                .await;
            if ok {
                retries.remove(&uid);
            } else {
                let delay = retries.get(&uid).map_or(Duration::from_secs(1), |(_, d)| {
                    kruise_observe::api::backoff(*d, Duration::from_secs(60))
                });
                retries.insert(uid, (Instant::now() + delay, delay));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

fn apply(store: &mut Store, c: Change) -> Vec<Uid> {
    match c {
        Change::Workload(kind, e) => store.workload(kind, e),
        Change::Revision(e) => store.revision(e),
        Change::ReplicaSet(e) => store.replicaset(e),
        Change::Pod(e) => store.pod(e),
        Change::Job(e) => store.job(e),
        Change::KindGone(kind) => {
            store.forget_kind(kind);
            Vec::new()
        }
    }
}

struct Ctx<'a> {
    client: &'a Client,
    recorder: &'a Recorder,
    metrics: &'a Metrics,
    cfg: &'a Config,
}

impl Ctx<'_> {
    /// One workload: decide, then write. `false` when a write failed (retried with backoff).
    async fn reconcile(
        &self,
        store: &Store,
        uid: &Uid,
        notes: &mut HashMap<Uid, String>,
        marked: &mut HashMap<Uid, Value>,
    ) -> bool {
        let Some(obj) = store.workload_object(uid) else {
            notes.remove(uid);
            marked.remove(uid);
            return true; // deleted: its jobs go with it (they are its dependents)
        };
        let revisions = store.revisions_of(uid);
        let r = match adapt(&obj, &revisions, self.cfg.all_workloads) {
            Ok(r) => r,
            Err(e) => {
                self.count("invalid");
                let note = e.to_string();
                if notes.get(uid) != Some(&note) {
                    tracing::warn!(workload = %describe(&obj), error = %note, "cannot pre-download for this workload");
                    self.event(&obj, EventType::Warning, "InvalidImagePreDownload", &note)
                        .await;
                    notes.insert(uid.clone(), note);
                }
                return true; // nothing to retry until the object changes
            }
        };
        let pods = store.pods_of(uid, &r.revision_key);
        let existing = store.jobs_of(uid);
        let mut d = decide(&r, &pods, &existing);
        if let (Outcome::Waiting { threshold, .. }, true) = (&d.outcome, r.status_current) {
            // Says why no job exists yet, once per revision (events of one reason merge into a
            // series that keeps its first note), and only from a status of this rollout.
            let note = format!(
                "pre-download for the update to {} waits for {threshold} updated ready pods",
                revision_name(&r)
            );
            if notes.get(uid) != Some(&note) {
                self.event(&obj, EventType::Normal, "WaitingForUpdatedReadyPods", &note)
                    .await;
                notes.insert(uid.clone(), note);
            }
        }
        // The same patch again (the revision watch has not caught up): nothing to write. A patch
        // for another rollout (a new current revision) differs, and is written.
        let patch = d.mark.map(|m| mark_patch(&r, m));
        match &patch {
            Some(p) if marked.get(uid) == Some(p) => d.mark = None,
            Some(_) => {}
            None => {
                marked.remove(uid);
            }
        }
        if d.create.is_empty() && d.delete.is_empty() && d.mark.is_none() {
            return true;
        }
        tracing::debug!(workload = %describe(&obj), outcome = ?d.outcome, create = d.create.len(), delete = d.delete.len(), mark = ?d.mark, "pre-download");
        let jobs: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &r.namespace);
        let mut ok = true;
        for job in &d.create {
            let name = job.metadata.name.clone().unwrap_or_default();
            match jobs.create(&PostParams::default(), job).await {
                Ok(_) => {
                    self.count("created");
                    tracing::info!(workload = %describe(&obj), job = %name, image = %job.spec.image, "created a pre-download ImagePullJob");
                    let note = format!(
                        "created ImagePullJob {name} to pre-download {} for the update to {}",
                        job.spec.image,
                        revision_name(&r)
                    );
                    self.event(&obj, EventType::Normal, "CreatedImagePullJob", &note)
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    ok = false;
                    self.count("create_failed");
                    let note = format!(
                        "creating ImagePullJob {name} for {} failed (retried with backoff): {}",
                        job.spec.image,
                        kruise_observe::api::error_chain(&e)
                    );
                    tracing::warn!(workload = %describe(&obj), job = %name, error = %note, "pre-download");
                    self.event(&obj, EventType::Warning, "FailedCreateImagePullJob", &note)
                        .await;
                }
            }
        }
        for name in &d.delete {
            match jobs.delete(name, &DeleteParams::background()).await {
                Ok(_) => {
                    self.count("deleted");
                    tracing::info!(workload = %describe(&obj), job = %name, outcome = ?d.outcome, "deleted a pre-download ImagePullJob");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    ok = false;
                    self.count("delete_failed");
                    tracing::warn!(workload = %describe(&obj), job = %name, error = %kruise_observe::api::error_chain(&e), "deleting a pre-download job failed; retrying");
                }
            }
        }
        if let (Some(mark), true) = (d.mark, ok) {
            ok = self.mark(&r, mark).await;
            if let (true, Some(p)) = (ok, patch) {
                marked.insert(uid.clone(), p);
            }
        }
        if matches!(d.outcome, Outcome::Ignored(_)) && d.mark.is_some() {
            tracing::info!(workload = %describe(&obj), outcome = ?d.outcome, "not pre-downloading for this update");
        }
        ok
    }

    /// Labels the update revision (a ControllerRevision, or a Deployment's ReplicaSet).
    async fn mark(&self, r: &super::Rollout, mark: Mark) -> bool {
        let Some(rev) = &r.update_revision else {
            return true;
        };
        let ar = if r.kind == Kind::Deployment {
            ApiResource::erase::<ReplicaSet>(&())
        } else {
            ApiResource::erase::<ControllerRevision>(&())
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &r.namespace, &ar);
        match api
            .patch(
                &rev.name,
                &PatchParams::default(),
                &Patch::Merge(mark_patch(r, mark)),
            )
            .await
        {
            Ok(_) => {
                self.count("marked");
                true
            }
            Err(kube::Error::Api(s)) if s.code == 404 => true, // the revision is gone
            Err(e) => {
                self.count("mark_failed");
                tracing::warn!(revision = %rev.name, namespace = %r.namespace, error = %kruise_observe::api::error_chain(&e), "marking the update revision failed; retrying");
                false
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .predownload_actions
            .get_or_create(&crate::metrics::KindLabels {
                kind: result.into(),
            })
            .inc();
    }

    async fn event(&self, obj: &Value, type_: EventType, reason: &str, note: &str) {
        let text = |p: &str| obj.pointer(p).and_then(Value::as_str).map(String::from);
        let reference = ObjectReference {
            api_version: text("/apiVersion"),
            kind: text("/kind"),
            name: text("/metadata/name"),
            namespace: text("/metadata/namespace"),
            uid: text("/metadata/uid"),
            ..Default::default()
        };
        let ev = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "PreDownload".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::warn!(reason, error = %e, "publishing an event failed");
        }
    }
}

fn revision_name(r: &super::Rollout) -> String {
    r.update_revision
        .as_ref()
        .map_or_else(String::new, |v| v.name.clone())
}

fn describe(obj: &Value) -> String {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    format!(
        "{} {}/{}",
        text("/kind"),
        text("/metadata/namespace"),
        text("/metadata/name")
    )
}

fn event_of<K, T>(e: watcher::Event<K>, f: impl Fn(K) -> T) -> Event<T> {
    match e {
        watcher::Event::Init => Event::Init,
        watcher::Event::InitApply(o) | watcher::Event::Apply(o) => Event::Apply(f(o)),
        watcher::Event::Delete(o) => Event::Delete(f(o)),
        watcher::Event::InitDone => Event::InitDone,
    }
}

/// Watches a kind as JSON, with its apiVersion and kind set (list items may lack them).
fn spawn_dynamic(
    client: &Client,
    ns: &str,
    ar: ApiResource,
    wrap: impl Fn(Event<Value>) -> Change + Send + Sync + 'static,
    tx: &UnboundedSender<Change>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let api: Api<DynamicObject> = if ns.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    };
    let (tx, stop) = (tx.clone(), stop.clone());
    let what = ar.plural.clone();
    tokio::spawn(async move {
        let to_value = |o: DynamicObject| {
            let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
            if let Some(m) = v.as_object_mut() {
                m.insert("apiVersion".into(), ar.api_version.clone().into());
                m.insert("kind".into(), ar.kind.clone().into());
            }
            v
        };
        forward(
            watcher(api, watcher::Config::default()),
            &what,
            |e| wrap(event_of(e, to_value)),
            &tx,
            &stop,
        )
        .await;
    })
}

fn spawn_typed<K>(
    client: &Client,
    ns: &str,
    what: &'static str,
    wrap: fn(Event<K>) -> Change,
    tx: &UnboundedSender<Change>,
    stop: &CancellationToken,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = if ns.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), ns)
    };
    let (tx, stop) = (tx.clone(), stop.clone());
    tokio::spawn(async move {
        forward(
            watcher(api, watcher::Config::default()),
            what,
            |e| wrap(event_of(e, |o| o)),
            &tx,
            &stop,
        )
        .await;
    });
}

async fn forward<K, S>(
    stream: S,
    what: &str,
    wrap: impl Fn(watcher::Event<K>) -> Change,
    tx: &UnboundedSender<Change>,
    stop: &CancellationToken,
) where
    S: futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
{
    let mut events = std::pin::pin!(stream.default_backoff());
    let mut failures = kruise_observe::api::RetryLog::default();
    let activity = format!("watching {what} for rollout pre-download");
    loop {
        let e = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.next() => match e { Some(e) => e, None => return },
        };
        match e {
            Ok(e) => {
                failures.recovered(&activity);
                if tx.send(wrap(e)).is_err() {
                    return;
                }
            }
            Err(e) => failures.failed(&activity, "", &e, None),
        }
    }
}

/// Starts and stops the watches of OpenKruise's workload kinds as their CRDs come and go.
async fn discover(
    client: Client,
    cfg: Config,
    tx: UnboundedSender<Change>,
    stop: CancellationToken,
) {
    let mut running: BTreeMap<&'static str, (String, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    loop {
        for (kind, plural, versions) in KRUISE_KINDS {
            let served = served_version(&client, plural, versions).await;
            let current = running.get(plural).map(|(v, _)| v.clone());
            match (served, current) {
                (Ok(Some(v)), Some(c)) if v == c => {}
                (Ok(Some(v)), _) => {
                    if let Some((_, h)) = running.remove(plural) {
                        h.abort();
                    }
                    tracing::info!(kind = kind.label(), version = %v, "an OpenKruise workload CRD is served; pre-downloading for its rollouts");
                    let ar = ApiResource {
                        group: "apps.kruise.io".into(),
                        version: v.clone(),
                        api_version: format!("apps.kruise.io/{v}"),
                        kind: kind.api_kind().into(),
                        plural: (*plural).into(),
                    };
                    let k = *kind;
                    let h = spawn_dynamic(
                        &client,
                        &cfg.namespace,
                        ar,
                        move |e| Change::Workload(k, e),
                        &tx,
                        &stop,
                    );
                    running.insert(plural, (v, h));
                }
                (Ok(None), Some(_)) => {
                    if let Some((_, h)) = running.remove(plural) {
                        h.abort();
                    }
                    tracing::info!(
                        kind = kind.label(),
                        "an OpenKruise workload CRD is gone; no longer watching it"
                    );
                    let _ = tx.send(Change::KindGone(*kind));
                }
                (Ok(None), None) | (Err(_), _) => {}
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {
                for (_, (_, h)) in running {
                    h.abort();
                }
                return;
            }
            _ = tokio::time::sleep(cfg.discovery_interval) => {}
        }
    }
}

/// The first of `versions` the API server serves `plural` at (a one-item list), `None` when it
/// serves none (404), an error when it cannot tell (it is asked again next time).
async fn served_version(
    client: &Client,
    plural: &str,
    versions: &[&str],
) -> Result<Option<String>, ()> {
    for v in versions {
        let ar = ApiResource {
            group: "apps.kruise.io".into(),
            version: (*v).into(),
            api_version: format!("apps.kruise.io/{v}"),
            kind: String::new(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => return Ok(Some((*v).into())),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::debug!(plural, version = v, error = %e, "probing for an OpenKruise workload CRD");
                return Err(());
            }
        }
    }
    Ok(None)
}
