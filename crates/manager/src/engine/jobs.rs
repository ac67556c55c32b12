//! One job as the engine plans it: what the planner reads of the ImagePullJob ([`JobInfo`]), and
//! where it stands on each node it targets ([`Cell`]), kept with running counts so a job's status
//! and free slots cost nothing to read, and a change on one node updates one cell.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kruise_api::constants::{
    DEFAULT_BACKOFF_LIMIT, DEFAULT_TIMEOUT_SECONDS, NODE_ORDER_ANNOTATION,
};
use kruise_api::imageref::ImageRef;
use kruise_api::{
    CompletionPolicyType, ImagePullJob, ImagePullPolicy, ImageTagPullPolicy, SandboxConfig,
};

use super::place::{full_without, owned, result};
use super::spec::{Bytes, Interner, Name, Owner, Spec, Status};

/// Extra time the manager leaves the daemon beyond a tag's deadline before calling it failed.
pub const DEADLINE_GRACE_SECONDS: i64 = 60;

const JOB_API_VERSION: &str = "apps.kruise.io/v1beta1";
const JOB_KIND: &str = "ImagePullJob";

/// What planning reads of an ImagePullJob.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub uid: Name,
    /// `namespace/name`.
    pub key: Name,
    pub job: Arc<ImagePullJob>,
    /// `(NodeImage key, tag)`, or why the image does not parse.
    pub image: Result<(Name, Name), String>,
    pub always_complete: bool,
    pub parallelism: usize,
    pub always_pull: bool,
    pub owner: Arc<Owner>,
    pub tag_policy: Option<Arc<ImageTagPullPolicy>>,
    pub sandbox: Option<Arc<SandboxConfig>>,
    /// Jobs are planned oldest first: jobs created together reach nodes in the same order.
    pub order: (Option<Timestamp>, Name),
    pub deleting: bool,
    /// Where each node comes in the order its workload updates them (the rollout pre-download
    /// controller's annotation): those updated first get the image first.
    pub node_rank: Option<Arc<HashMap<Name, u32>>>,
    /// The digest the tag was resolved to (the job's `status.digest`).
    pub digest: Option<Name>,
    /// The tag has no digest yet and nobody has tried to resolve it.
    pub awaiting_digest: bool,
    /// Its nodes pin the image: a `Never` job's unless annotated `pin: "false"`, an `Always`
    /// job's only when annotated `pin: "true"`.
    pub pin: bool,
}

impl JobInfo {
    pub fn new(job: Arc<ImagePullJob>, i: &mut Interner) -> Self {
        let uid = i.name(job.metadata.uid.as_deref().unwrap_or_default());
        let key = i.name(&super::job_key(&job));
        let t = &job.spec.template;
        let parsed = ImageRef::parse(&job.spec.image);
        let image = parsed
            .as_ref()
            .map(|r| (i.name(&r.node_image_key()), i.name(&r.node_image_tag())))
            .map_err(|e| e.to_string());
        // A digest is about the image it was resolved for: an edited image waits for its own.
        let status = job
            .status
            .as_ref()
            .filter(|s| s.resolved_image.as_deref() == Some(job.spec.image.as_str()));
        let digest = status
            .and_then(|s| s.digest.as_deref())
            .filter(|d| kruise_api::imageref::is_sha256_digest(d))
            .map(|d| i.name(d));
        let awaiting_digest = parsed.as_ref().is_ok_and(|r| !r.is_digest())
            && digest.is_none()
            && status.is_none_or(|s| s.digest_message.is_none());
        let always = t.completion_type() == CompletionPolicyType::Always;
        let pin_annotation = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(kruise_api::constants::PIN_ANNOTATION))
            .map(|v| v.trim().to_ascii_lowercase());
        let pin = match pin_annotation.as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => !always,
        };
        let owner = i.owner(&ObjectReference {
            api_version: Some(JOB_API_VERSION.into()),
            kind: Some(JOB_KIND.into()),
            name: job.metadata.name.clone(),
            namespace: job.metadata.namespace.clone(),
            uid: job.metadata.uid.clone(),
            ..Default::default()
        });
        Self {
            uid,
            order: (
                job.metadata.creation_timestamp.as_ref().map(|t| t.0),
                key.clone(),
            ),
            key,
            image,
            always_complete: always,
            parallelism: t.parallelism().unwrap_or(1) as usize,
            always_pull: t.image_pull_policy() == ImagePullPolicy::Always,
            owner,
            tag_policy: tag_policy(&job).map(|p| i.policy(&p)),
            sandbox: t.sandbox_config.as_ref().map(|s| i.sandbox(s)),
            deleting: job.metadata.deletion_timestamp.is_some(),
            node_rank: node_rank(&job, i),
            digest,
            awaiting_digest,
            pin,
            job,
        }
    }

    pub fn completed(&self) -> bool {
        self.job
            .status
            .as_ref()
            .is_some_and(|s| s.completion_time.is_some())
    }

    /// An `Always` job whose `activeDeadlineSeconds` has run out.
    pub fn deadline_passed(&self, now: Timestamp) -> bool {
        self.deadline(now).is_some_and(|left| left <= 0)
    }

    /// Seconds until an `Always` job's deadline (negative: past), if it has one and has started.
    pub fn deadline(&self, now: Timestamp) -> Option<i64> {
        let ads = self
            .job
            .spec
            .template
            .completion_policy
            .active_deadline_seconds?;
        let start = self.job.status.as_ref()?.start_time.as_ref()?;
        self.always_complete
            .then(|| ads - (now.as_second() - start.0.as_second()))
    }

    /// Whether the job adds itself to more nodes: live, not finished, image valid.
    pub fn placing(&self, now: Timestamp) -> bool {
        !self.deleting
            && !self.completed()
            && !self.deadline_passed(now)
            && self.image.is_ok()
            && !self.awaiting_digest
    }
}

/// The tag-level policy of a new entry, default values left out (smaller objects).
/// The job's preferred node order, from [`NODE_ORDER_ANNOTATION`] (comma-separated names).
fn node_rank(job: &ImagePullJob, i: &mut Interner) -> Option<Arc<HashMap<Name, u32>>> {
    let list = job
        .metadata
        .annotations
        .as_ref()?
        .get(NODE_ORDER_ANNOTATION)?;
    let mut rank = HashMap::new();
    for (n, node) in list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .enumerate()
    {
        rank.entry(i.name(node)).or_insert(n as u32);
    }
    Some(Arc::new(rank))
}

fn tag_policy(job: &ImagePullJob) -> Option<ImageTagPullPolicy> {
    let t = &job.spec.template;
    let always = t.completion_type() == CompletionPolicyType::Always;
    let p = ImageTagPullPolicy {
        timeout_seconds: Some(t.timeout_seconds()).filter(|v| *v != DEFAULT_TIMEOUT_SECONDS),
        backoff_limit: Some(t.backoff_limit()).filter(|v| *v != DEFAULT_BACKOFF_LIMIT),
        ttl_seconds_after_finished: None,
        active_deadline_seconds: if always {
            t.completion_policy.active_deadline_seconds
        } else {
            None
        },
    };
    (p != ImageTagPullPolicy::default()).then_some(p)
}

/// Why a node counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The daemon reported the pull failed.
    Pull,
    /// No answer for the tag version within the response window.
    NotResponding,
    /// The tag's deadline (plus grace) passed.
    PastDeadline,
    /// The NodeImage has no room for another image.
    Full,
}

/// Where a job stands on one node it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Not written there yet.
    Unplaced,
    /// Chosen, waiting (at most the placement window) for other jobs to join the same write.
    Reserved(Timestamp),
    /// Written, no result yet for its version.
    Pending,
    Succeeded,
    Failed(Failure),
}

impl Cell {
    /// Taking one of the job's `parallelism` slots.
    pub fn active(self) -> bool {
        matches!(self, Cell::Pending | Cell::Reserved(_))
    }
}

/// The job's cell on a node, from the node's spec (as planned) and status, and when a pending
/// cell would become overdue.
pub fn cell(
    job: &JobInfo,
    spec: &Spec,
    status: &Status,
    response: Duration,
    now: Timestamp,
) -> (Cell, Option<Timestamp>) {
    let Ok((key, tag)) = &job.image else {
        return (Cell::Unplaced, None);
    };
    let Some(entry) = owned(spec, key, tag, &job.uid) else {
        if full_without(spec, key) {
            return (Cell::Failed(Failure::Full), None);
        }
        return (Cell::Unplaced, None);
    };
    if moved_digest(job, entry) {
        // Placed again, at the job's parallelism, with the new digest.
        return (Cell::Unplaced, None);
    }
    match result(status, key, tag, entry.version) {
        Some(true) => return (Cell::Succeeded, None),
        Some(false) => return (Cell::Failed(Failure::Pull), None),
        None => {}
    }
    let created = entry.created_at.map_or(now.as_second(), |c| c.as_second());
    let age = now.as_second() - created;
    // Waiting or pulling at this version: the daemon has answered.
    let reported = status
        .get(key, tag)
        .is_some_and(|r| r.version == entry.version);
    let window = response.as_secs() as i64;
    let deadline = entry
        .pull_policy
        .as_ref()
        .and_then(|p| p.active_deadline_seconds)
        .map(|a| a.saturating_add(DEADLINE_GRACE_SECONDS));
    if !reported && age >= window {
        return (Cell::Failed(Failure::NotResponding), None);
    }
    if deadline.is_some_and(|d| age >= d) {
        return (Cell::Failed(Failure::PastDeadline), None);
    }
    let overdue = [
        (!reported).then_some(created + window),
        deadline.map(|d| created + d),
    ]
    .into_iter()
    .flatten()
    .min()
    .and_then(|s| Timestamp::from_second(s).ok());
    (Cell::Pending, overdue)
}

/// The entry this job wrote first holds another digest than the job's (its tag moved). An entry
/// with no digest (written before the job was resolved, or by OpenKruise) has not moved: it is
/// given the job's digest without a new pull round (see `own_entry`).
pub fn moved_digest(job: &JobInfo, entry: &super::spec::Tag) -> bool {
    job.digest.is_some()
        && entry.digest.is_some()
        && entry.digest != job.digest
        && entry.owners.first().and_then(|o| o.uid.as_deref()) == Some(&*job.uid)
}

/// Placement order of a node for a job: the job's own order first (its workload's update order;
/// equal for every node of other jobs), then nodes more jobs want (each write then carries more
/// tags, and jobs of different selectors meet on the nodes they share), then by name.
pub type OrderKey = (u32, Reverse<u32>, Name);

/// A job's cells and running counts.
#[derive(Debug)]
pub struct JobState {
    pub info: JobInfo,
    pub cells: HashMap<Name, Cell>,
    /// Unplaced targets in placement order.
    pub unplaced: BTreeSet<OrderKey>,
    /// The demand each unplaced node was ordered by.
    pub unplaced_demand: HashMap<Name, u32>,
    pub active: usize,
    pub succeeded: usize,
    pub failed: BTreeSet<Name>,
    pub not_responding: BTreeSet<Name>,
    pub full: BTreeSet<Name>,
    /// For a podSelector job: its matching active pods per node.
    pub pods: HashMap<Name, u32>,
    /// How long this job's pulls have taken (seconds, a moving average), once one finished.
    pub pull_seconds: Option<f64>,
    /// The bytes of its succeeded nodes' pulls (registry, peers), kept equal to the sum of their
    /// current reports by the engine (`Engine::job_bytes`), so a status never walks the nodes.
    pub bytes: Bytes,
}

impl JobState {
    pub fn new(info: JobInfo) -> Self {
        Self {
            info,
            cells: HashMap::new(),
            unplaced: BTreeSet::new(),
            unplaced_demand: HashMap::new(),
            active: 0,
            succeeded: 0,
            failed: BTreeSet::new(),
            not_responding: BTreeSet::new(),
            full: BTreeSet::new(),
            pods: HashMap::new(),
            pull_seconds: None,
            bytes: Bytes::default(),
        }
    }

    /// A pull of this job finished after `secs`.
    pub fn pulled_in(&mut self, secs: f64) {
        self.pull_seconds = Some(match self.pull_seconds {
            Some(avg) => avg * 0.9 + secs * 0.1,
            None => secs,
        });
    }

    /// How long this job's next node may wait for other jobs: a quarter of its pulls' time
    /// (waiting costs it that share of its pace at most), 2 s until a pull has finished, never
    /// more than `cap`.
    pub fn window(&self, cap: Duration) -> Duration {
        let own = self
            .pull_seconds
            .map_or(Duration::from_secs(2), |s| Duration::from_secs_f64(s / 4.0));
        own.min(cap)
    }

    fn count(&mut self, node: &Name, cell: Cell, demand: u32, add: bool) {
        let d = |n: &mut usize| if add { *n += 1 } else { *n -= 1 };
        let set = |s: &mut BTreeSet<Name>| {
            if add {
                s.insert(node.clone());
            } else {
                s.remove(node);
            }
        };
        match cell {
            Cell::Unplaced => {
                if add {
                    self.unplaced.insert(self.key(node, demand));
                    self.unplaced_demand.insert(node.clone(), demand);
                } else if let Some(old) = self.unplaced_demand.remove(node) {
                    self.unplaced.remove(&self.key(node, old));
                    // Placed nodes leave for good: give back the table a fan-out grew.
                    if self.unplaced_demand.capacity() > 4 * self.unplaced_demand.len() + 64 {
                        self.unplaced_demand.shrink_to_fit();
                    }
                }
            }
            Cell::Reserved(_) | Cell::Pending => d(&mut self.active),
            Cell::Succeeded => d(&mut self.succeeded),
            Cell::Failed(why) => {
                set(&mut self.failed);
                match why {
                    Failure::NotResponding => set(&mut self.not_responding),
                    Failure::Full => set(&mut self.full),
                    Failure::Pull | Failure::PastDeadline => {}
                }
            }
        }
    }

    /// Sets the cell of a target; returns whether it changed.
    pub fn set(&mut self, node: &Name, cell: Cell, demand: u32) -> bool {
        let old = self.cells.insert(node.clone(), cell);
        if old == Some(cell) {
            return false;
        }
        if let Some(old) = old {
            self.count(node, old, demand, false);
        }
        self.count(node, cell, demand, true);
        true
    }

    /// Stops targeting a node.
    pub fn remove(&mut self, node: &Name) -> bool {
        match self.cells.remove(node) {
            Some(old) => {
                self.count(node, old, 0, false);
                true
            }
            None => false,
        }
    }

    /// Where `node` comes in this job's placement order when `demand` jobs want it.
    pub fn key(&self, node: &Name, demand: u32) -> OrderKey {
        let rank = self
            .info
            .node_rank
            .as_ref()
            .map_or(0, |r| r.get(node).copied().unwrap_or(u32::MAX));
        (rank, Reverse(demand), node.clone())
    }

    /// Re-orders an unplaced node whose demand changed.
    pub fn reorder(&mut self, node: &Name, demand: u32) {
        if let Some(old) = self.unplaced_demand.get(node).copied() {
            if old != demand {
                self.unplaced.remove(&self.key(node, old));
                self.unplaced.insert(self.key(node, demand));
                self.unplaced_demand.insert(node.clone(), demand);
            }
        }
    }

    pub fn desired(&self) -> usize {
        self.cells.len()
    }

    /// Slots free under `parallelism`.
    pub fn free(&self) -> usize {
        self.info.parallelism.saturating_sub(self.active)
    }
}
