//! The one view of a rolling workload that [`super::decide`] reads, whatever its kind: plain
//! data, filled by [`super::adapters`] from the workload's JSON and by
//! [`super::store::RolloutPod::view`] from its pods. Also the label and annotation names the
//! pre-download controller reads and writes (OpenKruise's where it has them).

use std::collections::BTreeMap;

use kruise_api::ImagePullJobPodSelector;

pub use kruise_api::constants::{
    CREATED_MARK, IGNORED_MARK, JOB_REVISION_LABEL, MARK_FROM_ANNOTATION,
    MIN_UPDATED_READY_ANNOTATION, NODE_ORDER_ANNOTATION, OPT_IN_ANNOTATION, PARALLELISM_ANNOTATION,
    TIMEOUT_ANNOTATION,
};

/// The pod label naming a pod's revision, for every kind but Deployment.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The pod (and ReplicaSet) label naming a Deployment pod's revision.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The hash label on a ControllerRevision.
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// A ReplicaSet's revision number within its Deployment.
pub const DEPLOYMENT_REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Workload kinds that can pre-download images for a rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Kind {
    #[default]
    CloneSet,
    AdvancedStatefulSet,
    AdvancedDaemonSet,
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    /// The `kind` of the object, as in an ownerReference.
    pub fn api_kind(self) -> &'static str {
        match self {
            Kind::CloneSet => "CloneSet",
            Kind::AdvancedStatefulSet | Kind::StatefulSet => "StatefulSet",
            Kind::AdvancedDaemonSet | Kind::DaemonSet => "DaemonSet",
            Kind::Deployment => "Deployment",
        }
    }

    pub const ALL: [Kind; 6] = [
        Kind::CloneSet,
        Kind::AdvancedStatefulSet,
        Kind::AdvancedDaemonSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
    ];

    /// A metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Kind::CloneSet => "cloneset",
            Kind::AdvancedStatefulSet => "advanced_statefulset",
            Kind::AdvancedDaemonSet => "advanced_daemonset",
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
        }
    }

    /// OpenKruise's own kinds: always opted in, and subject to its replica floor.
    pub fn is_kruise(self) -> bool {
        matches!(
            self,
            Kind::CloneSet | Kind::AdvancedStatefulSet | Kind::AdvancedDaemonSet
        )
    }

    /// Pods are named `<workload>-<ordinal>` and updated from the highest ordinal down.
    pub fn is_ordinal(self) -> bool {
        matches!(self, Kind::AdvancedStatefulSet | Kind::StatefulSet)
    }

    /// One pod per node, updated node by node.
    pub fn is_daemon(self) -> bool {
        matches!(self, Kind::AdvancedDaemonSet | Kind::DaemonSet)
    }
}

/// A workload in the middle (or at the end) of a rollout, in the terms pre-download needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollout {
    pub kind: Kind,
    /// e.g. `apps.kruise.io/v1beta1`.
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The workload's pod selector, already in the job's shape (operators checked).
    pub selector: ImagePullJobPodSelector,
    /// Desired pods (DaemonSets: `status.desiredNumberScheduled`).
    pub replicas: i32,
    /// The revision being rolled out; `None` while it is not known yet.
    pub update_revision: Option<Revision>,
    /// The name of the revision the rollout started from, if the workload says.
    pub current_revision: Option<String>,
    /// Every other revision the adapter was given; [`super::decide`] keeps those that still
    /// have pods (the adapter sees no pods).
    pub old_revisions: Vec<Revision>,
    /// The update can happen in place (CloneSet and Advanced StatefulSet: an in-place policy
    /// and only images changed; every other kind: `true`, a recreated pod still starts faster
    /// when its node already has the image).
    pub in_place: bool,
    /// Pods that stay on old revisions, resolved against `replicas`.
    pub partition: i32,
    /// Resolved against `replicas` with the rounding of the kind's own controller.
    pub max_unavailable: i32,
    /// Updated ready pods to wait for before pre-downloading; resolved (percent rounds up).
    pub min_updated_ready: i32,
    /// Updated ready pods per the status; `Some(0)` when the status is stale; `None` when the
    /// kind's status does not count them (apps/v1, Advanced DaemonSet): counted from pods.
    pub updated_ready: Option<i32>,
    /// The status names the update revision (its counts are this rollout's); kinds without
    /// such a status: `true`.
    pub status_current: bool,
    /// Nodes pulling at once; `None`: the job default (1).
    pub parallelism: Option<i32>,
    /// Per-node pull timeout; `None`: OpenKruise's pre-download default (300 s).
    pub timeout_seconds: Option<i32>,
    pub template_labels: BTreeMap<String, String>,
    pub template_annotations: BTreeMap<String, String>,
    pub pull_secrets: Vec<String>,
    /// OpenKruise kinds: always; apps/v1 kinds: by annotation or the cluster-wide switch.
    pub opted_in: bool,
    /// The rollout finished (every pod on the update revision, status observed).
    pub complete: bool,
    /// The pod label whose value names a pod's revision.
    pub revision_key: String,
}

/// One revision of the workload: a ControllerRevision, or a ReplicaSet for a Deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Revision {
    /// ControllerRevision or ReplicaSet name.
    pub name: String,
    /// The revision's hash. Pods carry either this or `name` under the revision key
    /// (CloneSet and StatefulSets write the name, DaemonSets and ReplicaSets the hash).
    pub hash: String,
    /// Order of revisions (`ControllerRevision.revision`, `deployment.kubernetes.io/revision`);
    /// a rollback renumbers the revision it returns to, so the highest is the newest.
    pub number: i64,
    /// `(container name, image)` of the template's `containers` (not initContainers).
    pub containers: Vec<(String, String)>,
    /// The revision object's labels (where the marks live) and annotations.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Revision {
    /// Whether a pod whose revision-key value is `value` belongs to this revision.
    pub fn owns(&self, value: &str) -> bool {
        value == self.name || (!self.hash.is_empty() && value == self.hash)
    }

    pub fn images(&self) -> impl Iterator<Item = &str> {
        self.containers.iter().map(|(_, image)| image.as_str())
    }
}

/// What decisions need of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub node: Option<String>,
    /// The value of the rollout's revision key.
    pub revision: Option<String>,
    pub ready: bool,
    pub terminating: bool,
    /// The StatefulSet-style name suffix, if the name has one.
    pub ordinal: Option<i32>,
    /// Creation time, Unix seconds.
    pub created: Option<i64>,
}

/// The number after the last `-` of a pod name (`web-12` → 12).
pub fn ordinal(name: &str) -> Option<i32> {
    let (_, suffix) = name.rsplit_once('-')?;
    if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    suffix.parse().ok()
}

/// The value of [`JOB_REVISION_LABEL`] for a revision: its name when that is a valid label
/// value (at most 63 characters), otherwise a prefix and a hash of the name, so that a long
/// ReplicaSet name still yields a label the API server accepts and that stays unique.
pub fn revision_label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let prefix: String = name.chars().take(54).collect();
    let prefix = prefix.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{prefix}-{:08x}", fnv32a(name))
}

/// FNV-1a, 32 bits: a short, stable suffix for truncated names (not for security).
pub(crate) fn fnv32a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
