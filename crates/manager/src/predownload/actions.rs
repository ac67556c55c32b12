//! What one workload's reconcile writes ([`Plan`]: events, jobs to create and delete, the
//! revision's mark), and carrying it out. The controller's loop works a plan out without I/O
//! and hands it to a task ([`Actions::spawn`]): at most [`CONCURRENT`] plans run at once, each
//! request has a timeout, and the result ([`Done`]) goes back to the loop, so one slow
//! workload holds up only itself.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kruise_api::ImagePullJob;
use kruise_observe::Supervisor;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc::Sender;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::store::Uid;
use super::{Decision, Kind, Outcome, Rollout};
use crate::metrics::Metrics;
use crate::writer::timed;

/// Plans carried out at once; the others wait for a turn.
pub(super) const CONCURRENT: usize = 8;

/// An event to publish on the workload.
pub(super) struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub text: String,
}

/// What to write for one workload.
pub(super) struct Plan {
    pub uid: Uid,
    /// The workload, for events and logs.
    pub workload: ObjectReference,
    pub notes: Vec<Note>,
    /// Jobs and the mark, when the workload could be read.
    pub writes: Option<Writes>,
}

pub(super) struct Writes {
    pub rollout: Rollout,
    pub decision: Decision,
    /// The mark's patch, recorded once written (the revision watch may lag behind it).
    pub patch: Option<Value>,
}

/// A plan carried out: `ok` is false when a write failed (the workload is retried with
/// backoff); `marked` is the mark patch written.
#[derive(Debug)]
pub(super) struct Done {
    pub uid: Uid,
    pub ok: bool,
    pub marked: Option<Value>,
}

/// What carrying out plans needs.
pub(super) struct Actions {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub supervisor: Supervisor,
    pub permits: Arc<Semaphore>,
    pub done: Sender<Done>,
    pub stop: CancellationToken,
}

impl Actions {
    /// Carries `plan` out in a task of its own, and reports back unless stopped first.
    pub fn spawn(self: &Arc<Self>, plan: Plan) {
        let me = self.clone();
        let name = format!("pre-download writes for {}", describe(&plan.workload));
        self.supervisor.spawn_finite(&name, async move {
            let work = async {
                let _turn = me.permits.clone().acquire_owned().await;
                me.execute(plan).await
            };
            let done = tokio::select! {
                _ = me.stop.cancelled() => return,
                done = work => done,
            };
            tokio::select! {
                _ = me.stop.cancelled() => {}
                _ = me.done.send(done) => {}
            }
        });
    }

    async fn execute(&self, plan: Plan) -> Done {
        for note in &plan.notes {
            self.event(&plan.workload, note).await;
        }
        let Some(w) = plan.writes else {
            return Done {
                uid: plan.uid,
                ok: true,
                marked: None,
            };
        };
        let d = &w.decision;
        tracing::debug!(workload = %describe(&plan.workload), outcome = ?d.outcome, create = d.create.len(), delete = d.delete.len(), mark = ?d.mark, "pre-download");
        let created = self.create_jobs(&plan.workload, &w.rollout, d).await;
        let deleted = self.delete_jobs(&plan.workload, &w.rollout, d).await;
        let mut ok = created && deleted;
        let mut marked = None;
        if let (Some(mark), true) = (d.mark, ok) {
            ok = self.mark(&w.rollout, mark).await;
            marked = w.patch.filter(|_| ok);
        }
        if matches!(d.outcome, Outcome::Ignored(_)) && d.mark.is_some() {
            tracing::info!(workload = %describe(&plan.workload), outcome = ?d.outcome, "not pre-downloading for this update");
        }
        Done {
            uid: plan.uid,
            ok,
            marked,
        }
    }

    /// Creates the decision's jobs (one that exists counts as created); false if one failed.
    async fn create_jobs(&self, workload: &ObjectReference, r: &Rollout, d: &Decision) -> bool {
        let jobs: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &r.namespace);
        let mut ok = true;
        for job in &d.create {
            let name = job.metadata.name.clone().unwrap_or_default();
            let (type_, reason, text) = match timed(jobs.create(&PostParams::default(), job)).await
            {
                Ok(_) => {
                    self.metrics.predownload_action("created");
                    tracing::info!(workload = %describe(workload), job = %name, image = %job.spec.image, "created a pre-download ImagePullJob");
                    let text = format!(
                        "created ImagePullJob {name} to pre-download {} for the update to {}",
                        job.spec.image,
                        revision_name(r)
                    );
                    (EventType::Normal, "CreatedImagePullJob", text)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => {
                    ok = false;
                    self.metrics.predownload_action("create_failed");
                    let text = format!(
                        "creating ImagePullJob {name} for {} failed (retried with backoff): {}",
                        job.spec.image,
                        kruise_observe::api::error_chain(&e)
                    );
                    tracing::warn!(workload = %describe(workload), job = %name, error = %text, "pre-download");
                    (EventType::Warning, "FailedCreateImagePullJob", text)
                }
            };
            let note = Note {
                type_,
                reason,
                text,
            };
            self.event(workload, &note).await;
        }
        ok
    }

    /// Deletes the decision's jobs (one already gone counts as deleted); false if one failed.
    async fn delete_jobs(&self, workload: &ObjectReference, r: &Rollout, d: &Decision) -> bool {
        let jobs: Api<ImagePullJob> = Api::namespaced(self.client.clone(), &r.namespace);
        let mut ok = true;
        for name in &d.delete {
            match timed(jobs.delete(name, &DeleteParams::background())).await {
                Ok(_) => {
                    self.metrics.predownload_action("deleted");
                    tracing::info!(workload = %describe(workload), job = %name, outcome = ?d.outcome, "deleted a pre-download ImagePullJob");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    ok = false;
                    self.metrics.predownload_action("delete_failed");
                    tracing::warn!(workload = %describe(workload), job = %name, error = %kruise_observe::api::error_chain(&e), "deleting a pre-download job failed; retrying");
                }
            }
        }
        ok
    }

    /// Labels the update revision (a ControllerRevision, or a Deployment's ReplicaSet).
    async fn mark(&self, r: &Rollout, mark: super::Mark) -> bool {
        let Some(rev) = &r.update_revision else {
            return true;
        };
        let ar = if r.kind == Kind::Deployment {
            ApiResource::erase::<ReplicaSet>(&())
        } else {
            ApiResource::erase::<ControllerRevision>(&())
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &r.namespace, &ar);
        let patch = Patch::Merge(super::mark_patch(r, mark));
        match timed(api.patch(&rev.name, &PatchParams::default(), &patch)).await {
            Ok(_) => {
                self.metrics.predownload_action("marked");
                true
            }
            Err(kube::Error::Api(s)) if s.code == 404 => true, // the revision is gone
            Err(e) => {
                self.metrics.predownload_action("mark_failed");
                tracing::warn!(revision = %rev.name, namespace = %r.namespace, error = %kruise_observe::api::error_chain(&e), "marking the update revision failed; retrying");
                false
            }
        }
    }

    async fn event(&self, workload: &ObjectReference, note: &Note) {
        let ev = KubeEvent {
            type_: note.type_,
            reason: note.reason.into(),
            note: Some(note.text.chars().take(1000).collect()),
            action: "PreDownload".into(),
            secondary: None,
        };
        if let Err(e) = timed(self.recorder.publish(&ev, workload)).await {
            tracing::warn!(reason = note.reason, error = %e, "publishing an event failed");
        }
    }
}

/// The workload a JSON object is, as events refer to it.
pub(super) fn reference(obj: &Value) -> ObjectReference {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).map(String::from);
    ObjectReference {
        api_version: text("/apiVersion"),
        kind: text("/kind"),
        name: text("/metadata/name"),
        namespace: text("/metadata/namespace"),
        uid: text("/metadata/uid"),
        ..Default::default()
    }
}

/// `Kind namespace/name`, for logs.
pub(super) fn describe(w: &ObjectReference) -> String {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    format!("{} {}/{}", text(&w.kind), text(&w.namespace), text(&w.name))
}

pub(super) fn revision_name(r: &Rollout) -> String {
    r.update_revision
        .as_ref()
        .map_or_else(String::new, |v| v.name.clone())
}
