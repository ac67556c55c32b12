//! Pure: from everything the manager watches (nodes, NodeImages, jobs, pods, pull secrets) and
//! the time, what every NodeImage spec and every job status should be. No client, no clock of
//! its own, no randomness; the writers diff this plan against the cluster and send one patch per
//! changed object.
//!
//! Rules (OpenKruise's, without its races): a job targets all NodeImages, named ones, those whose
//! labels match, or the nodes of its active pods; it adds its tag to at most `parallelism` nodes
//! that are still pulling; every job goes through the nodes in the same (name) order, so jobs
//! created together reach each node together and share its writes; a job joining a tag adds
//! itself as an owner without restarting the others' pulls; tags of deleted or edited jobs are
//! withdrawn; status is counted from the daemon's results for the tag version on each node.

mod nodeimages;
mod status;
mod tags;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImagePullJob, ImagePullJobStatus, NodeImage, NodeImageSpec, ReferenceObject};

pub use nodeimages::NodeImageChange;
pub use status::JobEvent;

/// What the planner needs of a Node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// Since when the Ready condition has been True; `None` when not Ready.
    pub ready_since: Option<Timestamp>,
}

/// What the planner needs of a Pod (podSelector jobs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub node_name: String,
    /// Scheduled, not terminal, not being deleted.
    pub active: bool,
}

/// Settings of the manager that shape the plan.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nodeimage_creation_delay: Duration,
    /// How long a node's daemon may stay silent about a tag before the node counts as failed.
    pub response_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nodeimage_creation_delay: Duration::from_secs(30),
            response_timeout: Duration::from_secs(600),
        }
    }
}

/// Everything watched, as plain data.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    pub node_images: Vec<Arc<NodeImage>>,
    pub jobs: Vec<Arc<ImagePullJob>>,
    pub pods: Vec<PodInfo>,
    /// Source secret (`namespace/name`) → the synced copy the daemons read; only sources that exist.
    pub synced_secrets: BTreeMap<String, ReferenceObject>,
}

/// What should be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// NodeImages to create, delete or re-label.
    pub node_images: BTreeMap<String, NodeImageChange>,
    /// The spec every existing NodeImage should have.
    pub specs: BTreeMap<String, NodeImageSpec>,
    /// The status every job should have, by `namespace/name`.
    pub job_status: BTreeMap<String, ImagePullJobStatus>,
    /// Jobs whose `ttlSecondsAfterFinished` has passed.
    pub delete_jobs: Vec<(String, String)>,
    pub events: Vec<JobEvent>,
    /// When to plan again even if nothing changes (creation delays, deadlines, TTLs, timeouts).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    fn requeue(&mut self, after: Duration) {
        let after = after.max(Duration::from_secs(1));
        self.requeue_after = Some(self.requeue_after.map_or(after, |r| r.min(after)));
    }
}

/// `namespace/name` of a job.
pub fn job_key(job: &ImagePullJob) -> String {
    format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or_default(),
        job.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The plan for `snapshot` at `now`.
pub fn plan(snapshot: &Snapshot, settings: &Settings, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    nodeimages::lifecycle(snapshot, settings, now, &mut plan);
    let live: BTreeSet<&str> = snapshot
        .jobs
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| j.metadata.uid.as_deref())
        .collect();
    let mut specs = tags::start_specs(snapshot, &live);
    for job in sorted_jobs(snapshot) {
        let targets = tags::targets(snapshot, job);
        tags::place(snapshot, settings, job, &targets, &mut specs, now);
        status::compute(snapshot, settings, job, &targets, &specs, now, &mut plan);
    }
    tags::finish_specs(&mut specs, snapshot);
    plan.specs = specs;
    plan
}

/// Jobs in a stable order (oldest first), live ones only.
fn sorted_jobs(s: &Snapshot) -> Vec<&ImagePullJob> {
    let mut jobs: Vec<&ImagePullJob> = s
        .jobs
        .iter()
        .map(|j| j.as_ref())
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect();
    jobs.sort_by_key(|j| {
        (
            j.metadata.creation_timestamp.as_ref().map(|t| t.0),
            job_key(j),
        )
    });
    jobs
}

#[cfg(test)]
mod tests;
