//! `status`: a job's progress over its target nodes, its throughput and ETA from the observed
//! rate, and what is pulling now cluster-wide (`top`). Pure.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kruise_api::imageref::ImageRef;
use kruise_api::{ImagePullJob, TagPhase};
use serde::Serialize;

use crate::model::{self, Phase, Snapshot};

/// One job's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    pub namespace: String,
    pub name: String,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Target nodes, and how they stand (the manager's counts; pulling and waiting split the
    /// rest by what the daemons report).
    pub desired: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub pulling: i32,
    pub waiting: i32,
    /// Nodes' worth of work done: finished nodes plus the pulling nodes' progress.
    pub done: f64,
    pub finished: bool,
    /// The image's size where a kubelet reports it (`Node.status.images`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_bytes: Option<u64>,
    /// Nodes finished per second, observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_nodes: Vec<String>,
}

impl JobSummary {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn bytes_done(&self) -> Option<u64> {
        Some((self.image_bytes? as f64 * self.done) as u64)
    }

    pub fn bytes_total(&self) -> Option<u64> {
        Some(self.image_bytes? * self.desired.max(0) as u64)
    }
}

/// A point of a job's progress: when, and nodes' worth done.
pub type Sample = (Timestamp, f64);

/// The job's progress now; the rate is measured from `since` (an earlier sample), or from the
/// job's start when there is none.
pub fn summarize(snap: &Snapshot, job: &ImagePullJob, since: Option<Sample>) -> JobSummary {
    let st = job.status.clone().unwrap_or_default();
    let a = model::analyse(snap, job);
    let rows = model::rows(snap, &a);
    let pulling: Vec<_> = rows.iter().filter(|r| r.phase == Phase::Pulling).collect();
    let partial: f64 = pulling.iter().map(|r| r.progress as f64 / 100.0).sum();
    let finished = model::finished(job);
    let done = (st.succeeded + st.failed) as f64 + if finished { 0.0 } else { partial };
    let pulling_n = if finished { 0 } else { pulling.len() as i32 };
    let start = since.or_else(|| st.start_time.as_ref().map(|t| (t.0, 0.0)));
    let mut sum = JobSummary {
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        name: job.metadata.name.clone().unwrap_or_default(),
        image: job.spec.image.clone(),
        digest: st.digest.clone(),
        desired: st.desired,
        succeeded: st.succeeded,
        failed: st.failed,
        pulling: pulling_n,
        waiting: (st.desired - st.succeeded - st.failed - pulling_n).max(0),
        done,
        finished,
        image_bytes: model::image_size(snap, job),
        nodes_per_second: None,
        eta_seconds: None,
        message: st.message.clone(),
        failed_nodes: st.failed_nodes.clone(),
    };
    if let Some(start) = start {
        measure(&mut sum, start, snap.now);
    }
    sum
}

/// Sets the rate observed since `from` (a sample of the same job) and the ETA it gives.
pub fn measure(s: &mut JobSummary, from: Sample, now: Timestamp) {
    s.nodes_per_second = rate(from, (now, s.done));
    let left = (s.desired as f64 - s.done).max(0.0);
    s.eta_seconds = (!s.finished)
        .then(|| s.nodes_per_second.map(|r| (left / r).ceil() as u64))
        .flatten();
}

/// Nodes per second between two samples; `None` before any progress.
pub fn rate(from: Sample, to: Sample) -> Option<f64> {
    let secs = (to.0.as_millisecond() - from.0.as_millisecond()) as f64 / 1000.0;
    let gained = to.1 - from.1;
    (secs > 0.0 && gained > 0.0).then(|| gained / secs)
}

/// What is pulling now, per registry and per job.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Top {
    pub registries: BTreeMap<String, Activity>,
    /// By owner job (`namespace/name`), or `-` for tags no job owns.
    pub jobs: BTreeMap<String, Activity>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Nodes pulling an image of this registry or job now.
    pub pulling: u32,
    /// Nodes waiting for a slot, for disk space, or for the daemon to start.
    pub waiting: u32,
    /// Sum of the pulling nodes' progress (0–100 each).
    pub progress: u64,
    pub images: std::collections::BTreeSet<String>,
}

impl Activity {
    fn add(&mut self, phase: TagPhase, progress: i32, image: &str) {
        match phase {
            TagPhase::Pulling => {
                self.pulling += 1;
                self.progress += progress.max(0) as u64;
            }
            _ => self.waiting += 1,
        }
        self.images.insert(image.to_string());
    }
}

/// Every tag of every NodeImage that is pulling or waiting at the version its spec asks for.
pub fn top(snap: &Snapshot) -> Top {
    let mut out = Top::default();
    for ni in snap.node_images.values() {
        let Some(status) = &ni.status else { continue };
        for (key, image) in &ni.spec.images {
            for t in &image.tags {
                let Some(r) = status
                    .image_statuses
                    .get(key)
                    .and_then(|s| s.tags.iter().find(|r| r.tag == t.tag))
                    .filter(|r| r.version == t.version)
                    .filter(|r| matches!(r.phase, TagPhase::Pulling | TagPhase::Waiting))
                else {
                    continue;
                };
                let reference = kruise_api::imageref::pull_reference(key, &t.tag);
                let registry = ImageRef::parse(&reference)
                    .map(|r| r.registry().to_string())
                    .unwrap_or_else(|_| "?".into());
                out.registries
                    .entry(registry)
                    .or_default()
                    .add(r.phase, r.progress, &reference);
                let mut owners: Vec<String> = t
                    .owner_references
                    .iter()
                    .map(|o| {
                        format!(
                            "{}/{}",
                            o.namespace.as_deref().unwrap_or_default(),
                            o.name.as_deref().unwrap_or_default()
                        )
                    })
                    .collect();
                if owners.is_empty() {
                    owners.push("-".into());
                }
                for o in owners {
                    out.jobs
                        .entry(o)
                        .or_default()
                        .add(r.phase, r.progress, &reference);
                }
            }
        }
    }
    out
}
