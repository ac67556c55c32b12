//! Carries out the engine's writes, a bounded number at a time, each under a timeout, and sends
//! each result back to the engine. Counted by kind and result; a job status's Events are
//! published once the status is written.

use std::sync::mpsc::Sender;
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

/// Counts a queued write down once it has been answered, whichever way.
struct CountDown(prometheus_client::metrics::gauge::Gauge);

impl Drop for CountDown {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone)]
pub struct Writer {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub done: Sender<Input>,
    pub job_namespace: String,
}

impl Writer {
    /// Runs batches of writes until the channel closes, then lets the writes in flight finish
    /// within `grace`.
    pub async fn run(
        self,
        mut batches: tokio::sync::mpsc::UnboundedReceiver<Vec<Write>>,
        grace: Duration,
    ) {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => {
                        // A round's pull-secret copies are written before its other writes
                        // start: a NodeImage naming a copy must not reach a daemon before it.
                        let (copied, copies_written) = tokio::sync::watch::channel(false);
                        let has_copies = batch.iter().any(|w| matches!(w, Write::Secrets { .. }));
                        for w in batch {
                            let (me, permits) = (self.clone(), permits.clone());
                            let pending = self.metrics.pending(kind(&w));
                            pending.inc();
                            let is_copies = matches!(w, Write::Secrets { .. });
                            let mut after_copies = (has_copies && !is_copies).then(|| copies_written.clone());
                            let copied = is_copies.then(|| copied.clone());
                            tasks.spawn(async move {
                                let _counted = CountDown(pending);
                                if let Some(rx) = &mut after_copies {
                                    // Err: the copies' task ended without saying; go on.
                                    let _ = rx.wait_for(|done| *done).await;
                                }
                                let Ok(_permit) = permits.acquire_owned().await else { return };
                                me.execute(w).await;
                                if let Some(tx) = copied {
                                    let _ = tx.send(true);
                                }
                            });
                        }
                    }
                    None => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            writes = tasks.len(),
            ?grace,
            "finishing the writes in flight before stopping"
        );
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::warn!(
                writes = tasks.len(),
                ?grace,
                "writes did not finish in time; stopping anyway, the next leader plans again"
            );
            tasks.abort_all();
        }
    }

    fn send(&self, d: Done) {
        let _ = self.done.send(Input::Done(d));
    }

    async fn execute(&self, w: Write) {
        let kind = kind(&w);
        let nodes: Api<NodeImage> = Api::all(self.client.clone());
        match w {
            Write::CreateNodeImage {
                name,
                labels,
                node_uid,
                spec,
            } => {
                let mut ni = NodeImage::new(&name, spec);
                ni.metadata.labels = Some(labels);
                ni.metadata.owner_references = Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.clone(),
                    uid: node_uid,
                    ..Default::default()
                }]);
                let r = outcome(timed(nodes.create(&PostParams::default(), &ni)).await);
                self.metrics.write(kind, label(&r));
                self.log(kind, &name, &r);
                self.send(Done::NodeImage {
                    name,
                    result: r.map(|n| Some(Box::new(n))),
                });
            }
            Write::PatchNodeImage { name, patch } => {
                let r = outcome(
                    timed(nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await,
                );
                self.metrics.write(kind, label(&r));
                self.log(kind, &name, &r);
                self.send(Done::NodeImage {
                    name,
                    result: r.map(|n| Some(Box::new(n))),
                });
            }
            Write::DeleteNodeImage { name, uid } => {
                let r = outcome(timed(nodes.delete(&name, &delete_uid(&uid))).await);
                self.metrics.write(kind, label(&r));
                self.log(kind, &name, &r);
                let result = match r {
                    Ok(_) | Err(WriteError::NotFound) => Ok(None),
                    Err(e) => Err(e),
                };
                self.send(Done::NodeImage { name, result });
            }
            Write::JobStatus {
                uid,
                namespace,
                name,
                patch,
                events,
            } => {
                let api: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &namespace);
                let r = outcome(
                    timed(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)))
                        .await,
                );
                self.metrics.write(kind, label(&r));
                self.log(kind, &format!("{namespace}/{name}"), &r);
                if r.is_ok() {
                    self.publish(&uid, &namespace, &name, events).await;
                }
                self.send(Done::JobStatus {
                    uid,
                    result: r.map(Box::new),
                });
            }
            Write::DeleteJob {
                uid,
                namespace,
                name,
            } => {
                let api: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &namespace);
                let r = outcome(timed(api.delete(&name, &delete_uid(&uid))).await);
                if r.is_ok() {
                    tracing::info!(job = %format!("{namespace}/{name}"), "deleted finished job after ttlSecondsAfterFinished");
                }
                self.metrics.write(kind, label(&r));
                self.send(Done::Job {
                    uid,
                    result: r.map(|_| ()),
                });
            }
            Write::ReleaseFinalizer {
                uid,
                namespace,
                name,
                patch,
            } => {
                let api: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &namespace);
                let r = outcome(
                    timed(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await,
                );
                if r.is_ok() {
                    tracing::info!(job = %format!("{namespace}/{name}"), "removed OpenKruise's deletion-protection finalizer from a deleted job");
                }
                self.metrics.write(kind, label(&r));
                self.send(Done::Job {
                    uid,
                    result: r.map(|_| ()),
                });
            }
            Write::Secrets { want, have } => {
                let failed =
                    crate::secrets::apply(&self.client, &self.job_namespace, &want, &have).await;
                self.send(Done::Secrets { failed });
            }
            Write::List { list, children } => {
                let written =
                    crate::listwriter::write(&self.client, &list, &children, &self.metrics).await;
                self.send(Done::List {
                    uid: list.uid().unwrap_or_default(),
                    requeue: written.requeue,
                    failed: written.failed,
                });
            }
        }
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
            if let Err(err) = self.recorder.publish(&ev, &reference).await {
                tracing::warn!(job = %e.job, reason = e.reason, error = %err, "publishing an event failed");
            }
        }
    }
}

/// The kind label of a write.
fn kind(w: &Write) -> &'static str {
    match w {
        Write::CreateNodeImage { .. }
        | Write::PatchNodeImage { .. }
        | Write::DeleteNodeImage { .. } => "nodeimage",
        Write::JobStatus { .. } => "job_status",
        Write::DeleteJob { .. } | Write::ReleaseFinalizer { .. } => "imagepulljob",
        Write::Secrets { .. } => "secret",
        Write::List { .. } => "imagelistpulljob",
    }
}
