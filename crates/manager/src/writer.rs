//! Turns a plan into writes: one merge patch per NodeImage whose spec or labels differ (carrying
//! the resourceVersion it was computed from, so a stale plan gets 409 and is recomputed, never
//! applied over newer state), one status patch per job whose status differs, creations,
//! deletions and Events. Writes run a bounded number at a time, each under a timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kruise_api::{ImagePullJob, NodeImage, NodeImageSpec};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::overlay::Overlay;
use crate::plan::{NodeImageChange, Plan};

/// Writes in flight at once.
const CONCURRENCY: usize = 16;
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Writer {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: std::sync::Arc<Metrics>,
    pub node_images: Overlay<NodeImage>,
    pub jobs: Overlay<ImagePullJob>,
    pub lists: Overlay<kruise_api::ImageListPullJob>,
}

/// The outcome of one round of writes.
#[derive(Debug, Default)]
pub struct Written {
    pub conflicts: usize,
    pub errors: usize,
}

/// A patch that applies only to the version of the object it was computed from: a stale plan, or
/// an object deleted and re-created under the same name meanwhile, gets 409 instead.
pub fn guarded(mut patch: Value, resource_version: Option<String>) -> Value {
    if let (Some(p), Some(rv)) = (patch.as_object_mut(), resource_version) {
        p.insert("metadata".into(), json!({ "resourceVersion": rv }));
    }
    patch
}

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

/// Counts a queued write down once it has been answered, whichever way.
struct CountDown(prometheus_client::metrics::gauge::Gauge);

impl Drop for CountDown {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(crate) async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(WRITE_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("write timed out after 30s".into())))
}

/// A merge patch from `old` to `new` images: changed entries in full, removed ones null.
fn images_patch(old: &NodeImageSpec, new: &NodeImageSpec) -> Value {
    let mut images = serde_json::Map::new();
    for (k, v) in &new.images {
        if old.images.get(k) != Some(v) {
            images.insert(k.clone(), serde_json::to_value(v).expect("spec serialises"));
        }
    }
    for k in old.images.keys().filter(|k| !new.images.contains_key(*k)) {
        images.insert(k.clone(), Value::Null);
    }
    Value::Object(images)
}

fn labels_patch(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            m.insert(k.clone(), json!(v));
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        m.insert(k.clone(), Value::Null);
    }
    Value::Object(m)
}

/// The merge patch taking `ni` to the planned spec and labels, with its resourceVersion as a
/// precondition.
fn node_image_patch(
    ni: &NodeImage,
    want: Option<&NodeImageSpec>,
    relabel: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut patch = json!({"metadata": {"resourceVersion": ni.resource_version()}});
    if let Some(want) = want.filter(|w| **w != ni.spec) {
        patch["spec"] = json!({"images": images_patch(&ni.spec, want)});
    }
    if let Some(labels) = relabel {
        patch["metadata"]["labels"] =
            labels_patch(&ni.metadata.labels.clone().unwrap_or_default(), labels);
    }
    patch
}

/// Status as a merge patch that also clears fields the new status no longer has.
pub fn status_patch<S: serde::Serialize>(old: &S, new: &S) -> Value {
    let mut n = serde_json::to_value(new).expect("status serialises");
    let o = serde_json::to_value(old).expect("status serialises");
    if let (Some(n), Some(o)) = (n.as_object_mut(), o.as_object()) {
        for k in o.keys() {
            n.entry(k.clone()).or_insert(Value::Null);
        }
    }
    json!({ "status": n })
}

impl Writer {
    /// Writes the plan. Its NodeImage specs are consumed (each freed once its patch is sent), so
    /// a fan-out round does not hold the planned specs and the written objects side by side.
    pub async fn apply(
        &mut self,
        plan: &mut Plan,
        node_images: &[Arc<NodeImage>],
        jobs: &[Arc<ImagePullJob>],
    ) -> Written {
        let mut out = Written::default();
        let specs = std::mem::take(&mut plan.specs);
        self.node_image_writes(plan, specs, node_images, &mut out)
            .await;
        self.job_writes(plan, jobs, &mut out).await;
        self.events(plan, jobs).await;
        out
    }

    async fn node_image_writes(
        &mut self,
        plan: &Plan,
        mut specs: BTreeMap<String, NodeImageSpec>,
        current: &[Arc<NodeImage>],
        out: &mut Written,
    ) {
        let api: Api<NodeImage> = Api::all(self.client.clone());
        let by_name: BTreeMap<String, &NodeImage> =
            current.iter().map(|n| (n.name_any(), n.as_ref())).collect();
        // Patches are built as they are sent, so only CONCURRENCY of them exist at once.
        enum Op<'a> {
            Create(Box<NodeImage>),
            Patch(
                &'a NodeImage,
                Option<&'a BTreeMap<String, String>>,
                Option<NodeImageSpec>,
            ),
            Delete(&'a NodeImage),
        }
        let mut ops = Vec::new();
        for (name, change) in &plan.node_images {
            match change {
                NodeImageChange::Create { labels, node_uid } => {
                    let mut ni = NodeImage::new(name, specs.remove(name).unwrap_or_default());
                    ni.metadata.labels = Some(labels.clone());
                    ni.metadata.owner_references = Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.clone(),
                        uid: node_uid.clone(),
                        ..Default::default()
                    }]);
                    ops.push(Op::Create(Box::new(ni)));
                }
                NodeImageChange::Delete => {
                    if let Some(ni) = by_name.get(name) {
                        ops.push(Op::Delete(ni));
                    }
                }
                NodeImageChange::Relabel { .. } => {}
            }
        }
        for (name, ni) in &by_name {
            let relabel = match plan.node_images.get(name) {
                Some(NodeImageChange::Relabel { labels }) => Some(labels),
                Some(_) => continue,
                None => None,
            };
            let want = specs.remove(name);
            let unchanged = want.as_ref().is_none_or(|want| *want == ni.spec);
            if unchanged && relabel.is_none() {
                continue;
            }
            ops.push(Op::Patch(ni, relabel, want));
        }
        drop(specs);
        let pending = self.metrics.pending("nodeimage");
        pending.set(ops.len() as i64);
        enum Done<'a> {
            Created(Box<NodeImage>),
            Patched(Box<NodeImage>),
            Deleted(&'a NodeImage),
        }
        let results: Vec<(String, Result<Done, kube::Error>)> = stream::iter(ops)
            .map(|op| {
                let api = api.clone();
                let pending = pending.clone();
                async move {
                    let _sent = CountDown(pending);
                    match op {
                        Op::Create(ni) => (
                            ni.name_any(),
                            timed(api.create(&PostParams::default(), &ni))
                                .await
                                .map(|ni| Done::Created(Box::new(ni))),
                        ),
                        Op::Patch(ni, relabel, want) => {
                            let p = node_image_patch(ni, want.as_ref(), relabel);
                            drop(want);
                            let name = ni.name_any();
                            let r =
                                timed(api.patch(&name, &PatchParams::default(), &Patch::Merge(&p)))
                                    .await
                                    .map(|ni| Done::Patched(Box::new(ni)));
                            (name, r)
                        }
                        Op::Delete(ni) => {
                            let name = ni.name_any();
                            let r = timed(api.delete(&name, &delete_exactly(ni)))
                                .await
                                .map(|_| Done::Deleted(ni));
                            (name, r)
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (name, r) in results {
            match r {
                Ok(Done::Created(ni)) => {
                    self.metrics.write("nodeimage", "ok");
                    self.node_images.created(*ni);
                }
                Ok(Done::Patched(ni)) => {
                    self.metrics.write("nodeimage", "ok");
                    self.node_images.wrote(*ni);
                }
                Ok(Done::Deleted(ni)) => {
                    self.metrics.write("nodeimage", "ok");
                    self.node_images.deleted(ni);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    self.metrics.write("nodeimage", "conflict");
                    tracing::debug!(node = %name, "NodeImage changed since the plan; replanning");
                    out.conflicts += 1;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.metrics.write("nodeimage", "not_found");
                    self.node_images.gone("", &name);
                }
                Err(e) => {
                    self.metrics.write("nodeimage", "error");
                    tracing::warn!(node = %name, error = %e, "writing NodeImage failed");
                    out.errors += 1;
                }
            }
        }
    }

    async fn job_writes(&mut self, plan: &Plan, jobs: &[Arc<ImagePullJob>], out: &mut Written) {
        let mut ops = Vec::new();
        for job in jobs
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
        {
            let key = crate::plan::job_key(job);
            let old = job.status.clone().unwrap_or_default();
            if let Some(new) = plan.job_status.get(&key) {
                if *new != old {
                    ops.push((
                        job.namespace().unwrap_or_default(),
                        job.name_any(),
                        guarded(status_patch(&old, new), job.resource_version()),
                    ));
                }
            }
        }
        let client = self.client.clone();
        let pending = self.metrics.pending("job_status");
        pending.set(ops.len() as i64);
        let results: Vec<_> = stream::iter(ops)
            .map(|(ns, name, patch)| {
                let api: Api<ImagePullJob> = Api::namespaced(client.clone(), &ns);
                let pending = pending.clone();
                async move {
                    let _sent = CountDown(pending);
                    (
                        (ns, name.clone()),
                        timed(api.patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        ))
                        .await,
                    )
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for ((ns, name), r) in results {
            match r {
                Ok(job) => {
                    self.metrics.write("job_status", "ok");
                    self.jobs.wrote(job);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    self.metrics.write("job_status", "conflict");
                    tracing::debug!(job = %name, "job changed since the plan; replanning");
                    out.conflicts += 1;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.metrics.write("job_status", "not_found");
                    self.jobs.gone(&ns, &name);
                }
                Err(e) => {
                    self.metrics.write("job_status", "error");
                    tracing::warn!(job = %name, error = %e, "writing job status failed");
                    out.errors += 1;
                }
            }
        }
        let by_key: BTreeMap<String, &ImagePullJob> = jobs
            .iter()
            .map(|j| (crate::plan::job_key(j), j.as_ref()))
            .collect();
        for (ns, name) in &plan.delete_jobs {
            let Some(job) = by_key.get(&format!("{ns}/{name}")) else {
                continue;
            };
            let api: Api<ImagePullJob> = Api::namespaced(self.client.clone(), ns);
            // Only the job the plan saw: a job re-created under the same name is not touched.
            let params = delete_exactly(*job);
            match timed(api.delete(name, &params)).await {
                Ok(_) => {
                    tracing::info!(job = %format!("{ns}/{name}"), "deleted finished job after ttlSecondsAfterFinished");
                    self.jobs.deleted(*job);
                }
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    tracing::debug!(job = %format!("{ns}/{name}"), "the finished job is gone or was re-created; nothing to delete")
                }
                Err(e) => {
                    tracing::warn!(job = %format!("{ns}/{name}"), error = %e, "deleting finished job failed");
                    out.errors += 1;
                }
            }
        }
    }

    async fn events(&self, plan: &Plan, jobs: &[Arc<ImagePullJob>]) {
        let by_key: BTreeMap<String, &ImagePullJob> = jobs
            .iter()
            .map(|j| (crate::plan::job_key(j), j.as_ref()))
            .collect();
        for e in &plan.events {
            let Some(job) = by_key.get(&e.job) else {
                continue;
            };
            let reference = ObjectReference {
                api_version: Some("apps.kruise.io/v1beta1".into()),
                kind: Some("ImagePullJob".into()),
                name: Some(job.name_any()),
                namespace: job.namespace(),
                uid: job.uid(),
                ..Default::default()
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_carry_only_changes() {
        let old: NodeImageSpec = serde_json::from_value(
            json!({"images": {"a": {"tags": [{"tag": "1"}]}, "b": {"tags": [{"tag": "1"}]}}}),
        )
        .unwrap();
        let new: NodeImageSpec = serde_json::from_value(
            json!({"images": {"a": {"tags": [{"tag": "1"}]}, "c": {"tags": [{"tag": "2"}]}}}),
        )
        .unwrap();
        assert_eq!(
            images_patch(&old, &new),
            json!({"b": null, "c": {"tags": [{"tag": "2"}]}})
        );
        let l = |v: Value| serde_json::from_value::<BTreeMap<String, String>>(v).unwrap();
        assert_eq!(
            labels_patch(
                &l(json!({"x": "1", "y": "2"})),
                &l(json!({"x": "1", "z": "3"}))
            ),
            json!({"y": null, "z": "3"})
        );
        let o = kruise_api::ImagePullJobStatus {
            desired: 1,
            message: Some("m".into()),
            ..Default::default()
        };
        let n = kruise_api::ImagePullJobStatus {
            desired: 2,
            ..Default::default()
        };
        assert_eq!(status_patch(&o, &n)["status"]["message"], Value::Null);
    }
}
