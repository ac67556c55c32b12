//! Carries out the engine's writes, a bounded number at a time, each under a timeout, and sends
//! each result back to the engine. Counted by kind and result; a job status's Events are
//! published once the status is written.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::{Done, Input, JobEvent, Write, WriteError};
use crate::metrics::Metrics;
use kruise_observe::supervise::Watchdog;

/// Writes in flight at once.
const CONCURRENCY: usize = 16;
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Deletes exactly `object` (background propagation): a namesake created since is left alone.
pub fn delete_exactly<K: kube::Resource>(object: &K) -> DeleteParams {
    DeleteParams {
        preconditions: object.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
}

fn delete_uid(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
}

pub(crate) async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(WRITE_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("write timed out after 30s".into())))
}

fn outcome<T>(r: Result<T, kube::Error>) -> Result<T, WriteError> {
    match r {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(WriteError::Conflict),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(WriteError::NotFound),
        Err(e) => Err(WriteError::Failed(kruise_observe::api::error_chain(&e))),
    }
}

fn label<T>(r: &Result<T, WriteError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(WriteError::Conflict) => "conflict",
        Err(WriteError::NotFound) => "not_found",
        Err(WriteError::Failed(_)) => "error",
    }
}

/// Counts a queued write down once it has been answered, whichever way: the queue gauge, and
/// progress for the writer's watchdog.
struct CountDown(prometheus_client::metrics::gauge::Gauge, Arc<Watchdog>);

impl Drop for CountDown {
    fn drop(&mut self) {
        self.0.dec();
        self.1.done(1);
    }
}

#[derive(Clone)]
pub struct Writer {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Results go back to the engine through its (bounded) input queue.
    pub done: flume::Sender<Input>,
    pub job_namespace: String,
    /// Writes handed over and not finished: the supervisor fails the process when none finishes
    /// within the stall timeout.
    pub progress: Arc<Watchdog>,
    /// Reads tags' digests from registries.
    pub registries: kruise_registry::Registries,
}

impl Writer {
    /// Runs batches of writes until the channel closes, then lets the writes in flight finish
    /// within `grace`.
    pub async fn run(self, mut batches: tokio::sync::mpsc::Receiver<Vec<Write>>, grace: Duration) {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => {
                        self.metrics.queued("writes", batches.len());
                        self.progress.add(batch.len());
                        self.progress.done(1); // the batch itself, counted by the engine
                        if kruise_observe::fault("writer-stall") {
                            std::future::pending::<()>().await;
                        }
                        self.spawn_batch(batch, &permits, &mut tasks);
                    }
                    None => break,
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined {
                        if e.is_panic() {
                            // The write's result never reaches the engine; the process must go.
                            let cause = kruise_observe::supervise::panic_message(&*e.into_panic());
                            std::panic::panic_any(format!("a write panicked: {cause}"));
                        }
                    }
                }
            }
        }
        drain(tasks, grace).await;
    }

    /// Starts a batch's writes, at most [`CONCURRENCY`] in flight. A round's pull-secret copies
    /// are written before its other writes start: a NodeImage naming a copy must not reach a
    /// daemon before it.
    fn spawn_batch(&self, batch: Vec<Write>, permits: &Arc<Semaphore>, tasks: &mut JoinSet<()>) {
        let (copied, copies_written) = tokio::sync::watch::channel(false);
        let has_copies = batch.iter().any(|w| matches!(w, Write::Secrets { .. }));
        for w in batch {
            let (me, permits) = (self.clone(), permits.clone());
            let pending = self.metrics.pending(kind(&w));
            pending.inc();
            let is_copies = matches!(w, Write::Secrets { .. });
            let mut after_copies = (has_copies && !is_copies).then(|| copies_written.clone());
            let copied = is_copies.then(|| copied.clone());
            let counted = CountDown(pending, self.progress.clone());
            tasks.spawn(async move {
                let _counted = counted;
                if let Some(rx) = &mut after_copies {
                    // Err: the copies' task ended without saying; go on.
                    let _ = rx.wait_for(|done| *done).await;
                }
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                me.execute(w).await;
                if let Some(tx) = copied {
                    let _ = tx.send(true);
                }
            });
        }
    }

    async fn send(&self, d: Done) {
        let _ = self.done.send_async(Input::Done(d)).await;
    }

    /// Counts and logs a write's result.
    fn answered<T>(&self, kind: &'static str, object: &str, r: &Result<T, WriteError>) {
        self.metrics.write(kind, label(r));
        self.log(kind, object, r);
    }

    async fn execute(&self, w: Write) {
        match w {
            Write::CreateNodeImage {
                name,
                labels,
                node_uid,
                spec,
            } => self.create_node_image(name, labels, node_uid, spec).await,
            Write::PatchNodeImage { name, patch } => {
                let nodes: Api<NodeImage> = Api::all(self.client.clone());
                let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
                let patched = nodes.patch(&name, &params, &merge);
                let r = outcome(timed(patched).await);
                self.answered("nodeimage", &name, &r);
                let result = r.map(|n| Some(Box::new(n)));
                self.send(Done::NodeImage { name, result }).await;
            }
            Write::DeleteNodeImage { name, uid } => {
                let nodes: Api<NodeImage> = Api::all(self.client.clone());
                let r = outcome(timed(nodes.delete(&name, &delete_uid(&uid))).await);
                self.answered("nodeimage", &name, &r);
                let result = match r {
                    Ok(_) | Err(WriteError::NotFound) => Ok(None),
                    Err(e) => Err(e),
                };
                self.send(Done::NodeImage { name, result }).await;
            }
            Write::JobStatus {
                uid,
                namespace,
                name,
                patch,
                events,
            } => self.job_status(uid, namespace, name, patch, events).await,
            Write::DeleteJob {
                uid,
                namespace,
                name,
            } => self.delete_job(uid, namespace, name).await,
            Write::ResolveDigest(req) => {
                let resolved = crate::digests::resolve(&self.client, &self.registries, &req).await;
                let events = resolved.event.into_iter().collect();
                let (uid, namespace, name) = (req.uid, req.namespace, req.name);
                self.job_status(uid, namespace, name, resolved.status, events)
                    .await
            }
            Write::ReleaseFinalizer {
                uid,
                namespace,
                name,
                patch,
            } => self.release_finalizer(uid, namespace, name, patch).await,
            Write::Secrets { want, have } => {
                let failed =
                    crate::secrets::apply(&self.client, &self.job_namespace, &want, &have).await;
                self.send(Done::Secrets { failed }).await;
            }
            Write::List { list, children } => {
                let written =
                    crate::listwriter::write(&self.client, &list, &children, &self.metrics).await;
                let uid = list.uid().unwrap_or_default();
                let (requeue, failed) = (written.requeue, written.failed);
                self.send(Done::List {
                    uid,
                    requeue,
                    failed,
                })
                .await;
            }
        }
    }

    async fn create_node_image(
        &self,
        name: String,
        labels: std::collections::BTreeMap<String, String>,
        node_uid: String,
        spec: kruise_api::NodeImageSpec,
    ) {
        let mut ni = NodeImage::new(&name, spec);
        ni.metadata.labels = Some(labels);
        ni.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: name.clone(),
            uid: node_uid,
            ..Default::default()
        }]);
        let nodes: Api<NodeImage> = Api::all(self.client.clone());
        let r = outcome(timed(nodes.create(&PostParams::default(), &ni)).await);
        self.answered("nodeimage", &name, &r);
        let result = r.map(|n| Some(Box::new(n)));
        self.send(Done::NodeImage { name, result }).await;
    }

    async fn job_status(
        &self,
        uid: String,
        namespace: String,
        name: String,
        patch: serde_json::Value,
        events: Vec<JobEvent>,
    ) {
        let api: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &namespace);
        let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
        let patched = api.patch_status(&name, &params, &merge);
        let r = outcome(timed(patched).await);
        self.answered("job_status", &format!("{namespace}/{name}"), &r);
        if r.is_ok() {
            self.publish(&uid, &namespace, &name, events).await;
        }
        let result = r.map(Box::new);
        self.send(Done::JobStatus { uid, result }).await;
    }

    async fn delete_job(&self, uid: String, namespace: String, name: String) {
        let api: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &namespace);
        let r = outcome(timed(api.delete(&name, &delete_uid(&uid))).await);
        if r.is_ok() {
            tracing::info!(job = %format!("{namespace}/{name}"), "deleted finished job after ttlSecondsAfterFinished");
        }
        self.metrics.write("imagepulljob", label(&r));
        let result = r.map(|_| ());
        self.send(Done::Job { uid, result }).await;
    }

    async fn release_finalizer(
        &self,
        uid: String,
        namespace: String,
        name: String,
        patch: serde_json::Value,
    ) {
        let api: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &namespace);
        let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
        let patched = api.patch(&name, &params, &merge);
        let r = outcome(timed(patched).await);
        if r.is_ok() {
            tracing::info!(job = %format!("{namespace}/{name}"), "removed OpenKruise's deletion-protection finalizer from a deleted job");
        }
        self.metrics.write("imagepulljob", label(&r));
        let result = r.map(|_| ());
        self.send(Done::Job { uid, result }).await;
    }

    fn log<T>(&self, kind: &str, object: &str, r: &Result<T, WriteError>) {
        match r {
            Ok(_) => {}
            Err(WriteError::Conflict) => {
                tracing::debug!(kind, object, "changed since the plan; planning again")
            }
            Err(WriteError::NotFound) => tracing::debug!(kind, object, "gone since the plan"),
            Err(WriteError::Failed(e)) => {
                tracing::warn!(kind, object, error = %e, "write failed; retrying with backoff")
            }
        }
    }

    async fn publish(&self, uid: &str, namespace: &str, name: &str, events: Vec<JobEvent>) {
        let reference = ObjectReference {
            api_version: Some("apps.kruise.io/v1beta1".into()),
            kind: Some("ImagePullJob".into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: Some(uid.into()),
            ..Default::default()
        };
        for e in events {
            let ev = Event {
                type_: if e.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: e.reason.into(),
                note: Some(e.note.chars().take(1000).collect()),
                action: "Reconcile".into(),
                secondary: None,
            };
            let published =
                tokio::time::timeout(WRITE_TIMEOUT, self.recorder.publish(&ev, &reference));
            if let Ok(Err(err)) = published.await {
                tracing::warn!(job = %e.job, reason = e.reason, error = %err, "publishing an event failed");
            }
        }
    }
}

/// Lets the writes in flight finish within `grace`, then abandons the rest (the next leader
/// plans them again).
async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        writes = tasks.len(),
        ?grace,
        "finishing the writes in flight before stopping"
    );
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!(
            writes = tasks.len(),
            ?grace,
            "writes did not finish in time; stopping anyway, the next leader plans again"
        );
        tasks.abort_all();
    }
}

/// The kind label of a write.
fn kind(w: &Write) -> &'static str {
    match w {
        Write::CreateNodeImage { .. }
        | Write::PatchNodeImage { .. }
        | Write::DeleteNodeImage { .. } => "nodeimage",
        Write::JobStatus { .. } | Write::ResolveDigest(_) => "job_status",
        Write::DeleteJob { .. } | Write::ReleaseFinalizer { .. } => "imagepulljob",
        Write::Secrets { .. } => "secret",
        Write::List { .. } => "imagelistpulljob",
    }
}
