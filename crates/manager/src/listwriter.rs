//! Writes what the ImageListPullJob planner (`listjob`) asks for one list job: child
//! ImagePullJobs created, replaced and deleted, the list job's status, and its own deletion after
//! its TTL. Status patches carry the resourceVersion they were computed from and deletions the
//! uid they mean, so a list job deleted and re-created under the same name is never written with
//! the old one's state.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImageListPullJob, ImagePullJob};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::listjob;
use crate::metrics::Metrics;
use crate::writer::{delete_exactly, timed};

/// The outcome of writing one list job.
#[derive(Debug, Default)]
pub struct ListWritten {
    /// When to look again (its TTL).
    pub requeue: Option<Duration>,
    pub failed: usize,
}

fn result<T>(
    metrics: &Metrics,
    kind: &str,
    what: &str,
    r: Result<T, kube::Error>,
    out: &mut ListWritten,
) {
    match r {
        Ok(_) => metrics.write(kind, "ok"),
        // A lagging cache or a deleted object: the next event replans it.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => metrics.write(
            kind,
            if s.code == 409 {
                "conflict"
            } else {
                "not_found"
            },
        ),
        Err(e) => {
            metrics.write(kind, "error");
            tracing::warn!(error = %kruise_observe::api::error_chain(&e), "{what} failed");
            out.failed += 1;
        }
    }
}

/// Brings one list job's children and status in line with its spec.
pub async fn write(
    client: &Client,
    list: &ImageListPullJob,
    children: &[Arc<ImagePullJob>],
    metrics: &Metrics,
) -> ListWritten {
    let mut out = ListWritten::default();
    if list.metadata.deletion_timestamp.is_some() {
        return out;
    }
    let ns = list.namespace().unwrap_or_default();
    let name = list.name_any();
    let refs: Vec<&ImagePullJob> = children.iter().map(|c| c.as_ref()).collect();
    let p = listjob::plan(list, &refs, Timestamp::now());
    let jobs: Api<ImagePullJob> = Api::namespaced(client.clone(), &ns);
    for c in &p.create {
        let r = timed(jobs.create(&PostParams::default(), c)).await;
        result(
            metrics,
            "imagepulljob",
            &format!("creating a child ImagePullJob of list {name}"),
            r,
            &mut out,
        );
    }
    for c in &p.update {
        let r = timed(jobs.replace(&c.name_any(), &PostParams::default(), c)).await;
        result(
            metrics,
            "imagepulljob",
            &format!("updating a child ImagePullJob of list {name}"),
            r,
            &mut out,
        );
    }
    for child in p
        .delete
        .iter()
        .filter_map(|n| refs.iter().find(|c| c.name_any() == *n))
    {
        let r = timed(jobs.delete(&child.name_any(), &delete_exactly(*child))).await;
        result(
            metrics,
            "imagepulljob",
            &format!("deleting a child ImagePullJob of list {name}"),
            r,
            &mut out,
        );
    }
    let lists: Api<ImageListPullJob> = Api::namespaced(client.clone(), &ns);
    if p.delete_self {
        let r = timed(lists.delete(&name, &delete_exactly(list))).await;
        if r.is_ok() {
            tracing::info!(list = %format!("{ns}/{name}"), "deleted finished ImageListPullJob after ttlSecondsAfterFinished");
        }
        result(
            metrics,
            "imagelistpulljob",
            "deleting a finished ImageListPullJob",
            r,
            &mut out,
        );
        return out;
    }
    let old = list.status.clone().unwrap_or_default();
    if old != p.status {
        let patch = crate::engine::status_patch(&old, &p.status, list.resource_version());
        let r =
            timed(lists.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))).await;
        result(
            metrics,
            "imagelistpulljob_status",
            &format!("writing the status of ImageListPullJob {name}"),
            r,
            &mut out,
        );
    }
    out.requeue = p.requeue_secs.map(|s| Duration::from_secs(s.max(1) as u64));
    out
}
