//! The manager's decisions, as a state machine with no I/O: watch events, write results and the
//! time go in; API writes come out. Each event updates a compact index of what decisions read
//! (Node labels and readiness, NodeImage specs and per-tag results, jobs, pods, secrets) and
//! marks what it changed; an event that changes nothing there (a kubelet heartbeat, a progress
//! report, an unrelated pod) marks nothing and costs no planning. A round then replans only what
//! was marked: the cells of the jobs on a changed node, a job whose spec changed, a node whose
//! labels changed, the timers that came due.
//!
//! Rules (OpenKruise's, without its races): a job targets all NodeImages, named ones, those
//! whose labels match, or the nodes of its active pods; it adds its tag to at most `parallelism`
//! nodes still pulling; nodes are taken in one order for every job (the nodes more jobs want
//! first), and a node's placements wait briefly for the other jobs that want it, so jobs
//! created together reach each node in one write; a job joining a tag adds itself as an owner
//! without restarting the others' pulls; tags of deleted or edited jobs are withdrawn; status is
//! counted from the daemon's results for the tag version on each node. With `--peer-port`, a
//! pull that starts names the peers to copy from, and the registry serves each image's first
//! few nodes only (`peers`).

mod bytes;
mod index;
pub mod jobs;
pub mod lifecycle;
pub mod peers;
pub mod place;
mod placement;
mod round;
pub mod spec;
pub mod status;
pub mod timers;
mod writes;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImageListPullJob, ImagePullJob, NodeImage, ReferenceObject};
use serde_json::Value;

use crate::lean::{LeanNode, LeanPod};
use jobs::JobState;
use lifecycle::NodeRec;
use spec::{Interner, Name, Spec, Status};
use timers::Timers;

pub use status::JobEvent;
pub use writes::status_patch;

/// `namespace/name` of a job.
pub fn job_key(job: &ImagePullJob) -> String {
    format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or_default(),
        job.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Settings of the manager that shape decisions.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nodeimage_creation_delay: Duration,
    /// How long a node's daemon may stay silent about a tag before the node counts as failed.
    pub response_timeout: Duration,
    /// The longest a placement waits for the other jobs that want the same node, so they share
    /// one write (a job waits a quarter of its own pulls' time at most); zero places at once.
    pub placement_window: Duration,
    /// The least time between two status writes of one job (its completion is never held).
    pub status_interval: Duration,
    /// The namespace whose jobs this installation handles; empty: all. A tag owned by a job of
    /// another namespace is another installation's, and is left alone.
    pub job_namespace: String,
    /// Resolve each job's tag to one digest before placing it (`--resolve-digests`).
    pub resolve_digests: bool,
    /// How often a `Never` job's tag is resolved again; a moved tag rolls its new digest across
    /// the nodes at the job's parallelism (`--digest-check-interval`).
    pub digest_check_interval: Duration,
    /// The port daemons serve blobs to peers on (`--peer-port`); 0: no peer sources are planned
    /// and no registry budget applies.
    pub peer_port: u16,
    /// With peers on, how many nodes may pull one registry host's images from the registry at
    /// once, cluster-wide (`--registry-budget`).
    pub registry_budget: u32,
    /// With peers on, how many nodes one seed serves at once (`--peer-fanout`).
    pub peer_fanout: u32,
}

impl Settings {
    /// Peer sources are planned.
    pub fn peers_on(&self) -> bool {
        self.peer_port != 0
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nodeimage_creation_delay: Duration::from_secs(30),
            response_timeout: Duration::from_secs(600),
            placement_window: Duration::from_secs(10),
            status_interval: Duration::from_secs(5),
            resolve_digests: false,
            digest_check_interval: Duration::from_secs(24 * 3600),
            job_namespace: String::new(),
            peer_port: 0,
            registry_budget: 3,
            peer_fanout: 2,
        }
    }
}

/// A watch event, as kube's watcher gives them (`Init`…`InitDone` is a full relist).
#[derive(Debug, Clone)]
pub enum Event<K> {
    Apply(K),
    Delete(K),
    Init,
    InitApply(K),
    InitDone,
}

/// What goes into the engine.
#[derive(Debug)]
pub enum Input {
    Node(Event<LeanNode>),
    NodeImage(Event<NodeImage>),
    Job(Event<ImagePullJob>),
    ListJob(Event<ImageListPullJob>),
    Pod(Event<LeanPod>),
    /// Registry-credential Secrets in the jobs' namespaces, of either type (two watches).
    DockerConfigJson(Event<Secret>),
    DockerCfg(Event<Secret>),
    /// Secrets in `kruise-daemon-config` (the copies).
    Copy(Event<Secret>),
    Done(Done),
    /// Whether this replica leads (only a leader writes).
    Lead(bool),
}

/// The kinds of watched object, to know when all have been listed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    NodeImage,
    Job,
    ListJob,
    Pod,
    DockerConfigJson,
    DockerCfg,
    Copy,
}

pub const KINDS: [Kind; 8] = [
    Kind::Node,
    Kind::NodeImage,
    Kind::Job,
    Kind::ListJob,
    Kind::Pod,
    Kind::DockerConfigJson,
    Kind::DockerCfg,
    Kind::Copy,
];

/// A write the engine asks for. One at a time per object: the next waits for the last's result.
#[derive(Debug, Clone)]
pub enum Write {
    CreateNodeImage {
        name: String,
        labels: BTreeMap<String, String>,
        node_uid: String,
        spec: kruise_api::NodeImageSpec,
    },
    /// A merge patch carrying the resourceVersion it was computed from.
    PatchNodeImage {
        name: String,
        patch: Value,
    },
    DeleteNodeImage {
        name: String,
        uid: String,
    },
    /// A status merge patch carrying the resourceVersion it was computed from; its events are
    /// published once it is written.
    JobStatus {
        uid: String,
        namespace: String,
        name: String,
        patch: Value,
        events: Vec<JobEvent>,
    },
    DeleteJob {
        uid: String,
        namespace: String,
        name: String,
    },
    /// OpenKruise's deletion-protection finalizer off a job being deleted.
    ReleaseFinalizer {
        uid: String,
        namespace: String,
        name: String,
        patch: Value,
    },
    /// Resolve a job's tag to a digest (a manifest HEAD with its pull secrets) and write it, or
    /// why it could not be resolved, into the job's status; answered as a `JobStatus` write.
    ResolveDigest(crate::digests::Request),
    /// The pull-secret copies there should be, and those there are.
    Secrets {
        want: BTreeMap<String, Secret>,
        have: Vec<Secret>,
    },
    /// One list job's children and status.
    List {
        list: Arc<ImageListPullJob>,
        children: Vec<Arc<ImagePullJob>>,
    },
}

/// How a write ended.
#[derive(Debug, Clone)]
pub enum WriteError {
    /// 409: the object changed since the plan.
    Conflict,
    /// 404: the object is gone.
    NotFound,
    Failed(String),
}

/// A write's result, fed back to the engine.
#[derive(Debug)]
pub enum Done {
    /// The NodeImage as written (none after a delete).
    NodeImage {
        name: String,
        result: Result<Option<Box<NodeImage>>, WriteError>,
    },
    JobStatus {
        uid: String,
        result: Result<Box<ImagePullJob>, WriteError>,
    },
    /// A job deleted after its TTL, or released from a finalizer.
    Job {
        uid: String,
        result: Result<(), WriteError>,
    },
    Secrets {
        failed: usize,
    },
    List {
        uid: String,
        requeue: Option<Duration>,
        failed: usize,
    },
}

/// A NodeImage as the engine holds it.
#[derive(Debug, Clone)]
pub struct NodeImageRec {
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub deleting: bool,
    pub spec: Spec,
    /// Bumped whenever the stored spec changes, so a planned spec knows what it was based on.
    pub spec_generation: u64,
    pub status: Status,
}

/// A spec planned for a node and not yet confirmed written.
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: Spec,
    /// The stored spec generation it was planned from.
    pub base: u64,
    /// New labels to write with it.
    pub labels: Option<BTreeMap<String, String>>,
}

/// A Pod as the engine holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRec {
    pub labels: BTreeMap<String, String>,
    /// Its node while it is active (scheduled, not finished, not being deleted).
    pub node: Option<Name>,
}

/// What a round did, for metrics and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoundStats {
    pub jobs_rebuilt: usize,
    pub cells_refreshed: usize,
    pub nodes_planned: usize,
    pub writes: usize,
}

pub struct Engine {
    pub settings: Settings,
    interner: Interner,
    nodes: HashMap<Name, NodeRec>,
    pub images: HashMap<Name, NodeImageRec>,
    planned: HashMap<Name, Planned>,
    jobs: HashMap<Name, JobState>,
    /// Job uid by `namespace/name`.
    job_uids: HashMap<Name, Name>,
    pods: HashMap<(Name, Name), PodRec>,
    lists: HashMap<Name, Arc<ImageListPullJob>>,
    sources: BTreeMap<String, Secret>,
    copies: BTreeMap<String, Secret>,
    /// Source secret (`namespace/name`) → its copy, for copies that exist or are being made.
    synced: BTreeMap<String, ReferenceObject>,
    /// Jobs targeting each node.
    node_jobs: HashMap<Name, HashSet<Name>>,
    /// How many live jobs target each node (the placement order).
    demand: HashMap<Name, u32>,
    /// The nodes whose spec (as planned) has an entry owned by each job uid.
    owned: HashMap<Name, HashSet<Name>>,
    /// Who holds which image, the seeds' loads and the registry hosts' pulls (peers on only).
    peers: peers::Peers,

    // What the next round replans.
    dirty_jobs: BTreeSet<Name>,
    dirty_views: BTreeSet<Name>,
    dirty_cells: BTreeSet<(Name, Name)>,
    dirty_lifecycle: BTreeSet<Name>,
    dirty_membership: BTreeSet<Name>,
    /// Jobs and nodes whose target relation may have changed (a podSelector job's pod moved).
    dirty_targets: BTreeSet<(Name, Name)>,
    dirty_status: BTreeSet<Name>,
    dirty_place: BTreeSet<Name>,
    dirty_writes: BTreeSet<Name>,
    dirty_lists: BTreeSet<Name>,
    secrets_dirty: bool,
    /// Nodes whose reservations' placement window ended.
    placement_due: BTreeSet<Name>,
    /// `Never` jobs whose tag is due to be resolved again (it may have moved).
    recheck_digest: BTreeSet<Name>,
    /// Resolutions sent for a job still waiting for its digest.
    digest_tries: HashMap<Name, u32>,
    /// Nodes whose planned spec needs its final touches (tags sorted, pull secrets).
    to_finish: BTreeSet<Name>,
    rounds: u64,
    /// Owners found on a node that no watched job has (deleted while no manager ran).
    unknown_owners: BTreeSet<Name>,

    timers: Timers,
    writes: writes::InFlight,
    /// Per kind: listed once (ready), and the objects seen in a relist in progress.
    listed: HashSet<Kind>,
    relisting: HashMap<Kind, HashSet<String>>,
    leading: bool,
    /// When the first change since the last round arrived.
    pub changed_since: Option<Timestamp>,
    pub last_round: RoundStats,
}

impl Engine {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            interner: Interner::default(),
            nodes: HashMap::new(),
            images: HashMap::new(),
            planned: HashMap::new(),
            jobs: HashMap::new(),
            job_uids: HashMap::new(),
            pods: HashMap::new(),
            lists: HashMap::new(),
            sources: BTreeMap::new(),
            copies: BTreeMap::new(),
            synced: BTreeMap::new(),
            node_jobs: HashMap::new(),
            demand: HashMap::new(),
            owned: HashMap::new(),
            peers: peers::Peers::default(),
            dirty_jobs: BTreeSet::new(),
            dirty_views: BTreeSet::new(),
            dirty_cells: BTreeSet::new(),
            dirty_lifecycle: BTreeSet::new(),
            dirty_membership: BTreeSet::new(),
            dirty_targets: BTreeSet::new(),
            dirty_status: BTreeSet::new(),
            dirty_place: BTreeSet::new(),
            dirty_writes: BTreeSet::new(),
            dirty_lists: BTreeSet::new(),
            secrets_dirty: false,
            placement_due: BTreeSet::new(),
            recheck_digest: BTreeSet::new(),
            digest_tries: HashMap::new(),
            to_finish: BTreeSet::new(),
            rounds: 0,
            unknown_owners: BTreeSet::new(),
            timers: Timers::default(),
            writes: writes::InFlight::default(),
            listed: HashSet::new(),
            relisting: HashMap::new(),
            leading: false,
            changed_since: None,
            last_round: RoundStats::default(),
        }
    }

    /// Every kind has been listed once: decisions can be made.
    pub fn ready(&self) -> bool {
        KINDS.iter().all(|k| self.listed.contains(k))
    }

    pub fn leading(&self) -> bool {
        self.leading
    }

    /// Something is marked for the next round.
    pub fn has_work(&self) -> bool {
        !(self.dirty_jobs.is_empty()
            && self.dirty_views.is_empty()
            && self.dirty_cells.is_empty()
            && self.dirty_lifecycle.is_empty()
            && self.dirty_membership.is_empty()
            && self.dirty_targets.is_empty()
            && self.dirty_status.is_empty()
            && self.dirty_place.is_empty()
            && self.dirty_writes.is_empty()
            && self.dirty_lists.is_empty()
            && !self.secrets_dirty
            && self.placement_due.is_empty()
            && self.to_finish.is_empty()
            && self.unknown_owners.is_empty())
    }

    /// The earliest timer.
    pub fn next_timer(&self) -> Option<Timestamp> {
        self.timers.next()
    }

    /// Sizes of what the engine holds, for metrics.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            nodes: self.nodes.len(),
            node_images: self.images.len(),
            jobs: self.jobs.len(),
            pods: self.pods.len(),
            cells: self.jobs.values().map(|j| j.cells.len()).sum(),
            tags: self
                .images
                .values()
                .map(|n| n.spec.values().map(|i| i.tags.len()).sum::<usize>())
                .sum(),
            planned: self.planned.len(),
            timers: self.timers.len(),
            interned: self.interner.len(),
        }
    }

    fn mark(&mut self, now: Timestamp) {
        self.changed_since.get_or_insert(now);
    }
}

/// Sizes of the engine's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    pub nodes: usize,
    pub node_images: usize,
    pub jobs: usize,
    pub pods: usize,
    pub cells: usize,
    pub tags: usize,
    pub planned: usize,
    pub timers: usize,
    pub interned: usize,
}
