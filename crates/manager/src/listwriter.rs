//! Writes what the ImageListPullJob planner (`listjob`) asks for: child ImagePullJobs created,
//! replaced and deleted, the list job's status, and its own deletion after its TTL. Status
//! patches carry the resourceVersion they were computed from and deletions the uid they mean, so a
//! list job deleted and re-created under the same name is never written with the old one's state.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImageListPullJob, ImagePullJob};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::writer::{delete_exactly, guarded, status_patch, timed, Writer, Written};
use crate::{listjob, stores};

/// Every list job's children and status; returns the earliest TTL requeue.
pub async fn apply(
    client: &Client,
    stores: &stores::Stores,
    jobs: &[Arc<ImagePullJob>],
    writer: &mut Writer,
    out: &mut Written,
) -> Option<Duration> {
    let mut requeue = None;
    let lists = writer.lists.merge(stores.list_jobs.state());
    for list in lists
        .iter()
        .filter(|l| l.metadata.deletion_timestamp.is_none())
    {
        let uid = list.uid().unwrap_or_default();
        let children: Vec<&ImagePullJob> = jobs
            .iter()
            .map(|j| j.as_ref())
            .filter(|j| j.owner_references().iter().any(|o| o.uid == uid))
            .collect();
        let p = listjob::plan(list, &children, Timestamp::now());
        write_children(client, list, &children, &p, writer, out).await;
        if p.delete_self {
            delete_list(client, list, writer, out).await;
            continue;
        }
        write_status(client, list, &p.status, writer, out).await;
        if let Some(s) = p.requeue_secs {
            let d = Duration::from_secs(s.max(1) as u64);
            requeue = Some(requeue.map_or(d, |r: Duration| r.min(d)));
        }
    }
    requeue
}

fn failed(writer: &Writer, out: &mut Written, kind: &str, what: &str, e: &kube::Error) {
    writer.metrics.write(kind, "error");
    tracing::warn!(error = %e, "{what} failed");
    out.errors += 1;
}

/// Counts a child's create or update; 409 means the cache lags behind an earlier write of ours.
fn child_written<T>(
    writer: &Writer,
    out: &mut Written,
    result: Result<T, kube::Error>,
    what: &str,
) {
    match result {
        Ok(_) => writer.metrics.write("imagepulljob", "ok"),
        Err(kube::Error::Api(s)) if s.code == 409 => out.conflicts += 1,
        Err(e) => failed(writer, out, "imagepulljob", what, &e),
    }
}

async fn write_children(
    client: &Client,
    list: &ImageListPullJob,
    children: &[&ImagePullJob],
    p: &listjob::ListPlan,
    writer: &Writer,
    out: &mut Written,
) {
    let api: Api<ImagePullJob> =
        Api::namespaced(client.clone(), &list.namespace().unwrap_or_default());
    let name = list.name_any();
    for c in &p.create {
        let r = timed(api.create(&PostParams::default(), c)).await;
        child_written(
            writer,
            out,
            r,
            &format!("creating a child ImagePullJob of list {name}"),
        );
    }
    for c in &p.update {
        let r = timed(api.replace(&c.name_any(), &PostParams::default(), c)).await;
        child_written(
            writer,
            out,
            r,
            &format!("updating a child ImagePullJob of list {name}"),
        );
    }
    for child in p
        .delete
        .iter()
        .filter_map(|n| children.iter().find(|c| c.name_any() == *n))
    {
        match timed(api.delete(&child.name_any(), &delete_exactly(*child))).await {
            Ok(_) => writer.metrics.write("imagepulljob", "deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => failed(
                writer,
                out,
                "imagepulljob",
                &format!("deleting a child ImagePullJob of list {name}"),
                &e,
            ),
        }
    }
}

async fn delete_list(
    client: &Client,
    list: &ImageListPullJob,
    writer: &mut Writer,
    out: &mut Written,
) {
    let api: Api<ImageListPullJob> =
        Api::namespaced(client.clone(), &list.namespace().unwrap_or_default());
    match timed(api.delete(&list.name_any(), &delete_exactly(list))).await {
        Ok(_) => {
            tracing::info!(list = %list.name_any(), "deleted finished ImageListPullJob after ttlSecondsAfterFinished");
            writer.lists.deleted(list);
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => failed(
            writer,
            out,
            "imagelistpulljob",
            "deleting a finished ImageListPullJob",
            &e,
        ),
    }
}

async fn write_status(
    client: &Client,
    list: &ImageListPullJob,
    new: &kruise_api::ImageListPullJobStatus,
    writer: &mut Writer,
    out: &mut Written,
) {
    let old = list.status.clone().unwrap_or_default();
    if old == *new {
        return;
    }
    let api: Api<ImageListPullJob> =
        Api::namespaced(client.clone(), &list.namespace().unwrap_or_default());
    let patch = guarded(status_patch(&old, new), list.resource_version());
    let name = list.name_any();
    match timed(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))).await {
        Ok(written) => {
            writer.metrics.write("imagelistpulljob_status", "ok");
            writer.lists.wrote(written);
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            writer.metrics.write("imagelistpulljob_status", "conflict");
            out.conflicts += 1;
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            writer
                .lists
                .gone(&list.namespace().unwrap_or_default(), &list.name_any());
        }
        Err(e) => failed(
            writer,
            out,
            "imagelistpulljob_status",
            &format!("writing the status of ImageListPullJob {}", list.name_any()),
            &e,
        ),
    }
}
