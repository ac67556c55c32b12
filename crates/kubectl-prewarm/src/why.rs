//! `why JOB NODE`: the one reason a node does not have a job's image yet, from the same rules the
//! manager plans by (see [`crate::model`]) and what the node's daemon reported. Pure.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kruise_api::constants::{MAX_IMAGES_PER_NODEIMAGE, VIRTUAL_KUBELET_LABEL};
use kruise_api::{ImagePullJob, TagPhase};
use kruise_manager::engine::jobs::{Cell, Failure};
use serde::Serialize;

use crate::model::{self, Analysis, Snapshot};

/// Prefix of the daemon's message for a pull held by `--image-fs-max-percent`.
pub const DISK_WAIT_PREFIX: &str = "waiting for disk space";

/// In the daemon's message while it waits to try again: `attempt 1 of 4 failed: …; retrying in 2s`.
const RETRY_MARK: &str = "; retrying in ";
/// …or while the runtime is down: `…; waiting for the container runtime to come back`.
const RUNTIME_WAIT_MARK: &str = "waiting for the container runtime";

/// Why a node is not done, or that it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Reason {
    NoSuchNode,
    JobDeleting,
    InvalidImage {
        error: String,
    },
    SelectorMismatch {
        detail: String,
    },
    NotPodTarget,
    VirtualNode,
    NodeNotReady {
        since: Option<Timestamp>,
        detail: String,
    },
    NodeImageMissing {
        ready_since: Option<Timestamp>,
        due: Option<Timestamp>,
    },
    NodeImageDeleting,
    NodeImageFull {
        images: usize,
    },
    JobCompleted,
    DeadlinePassed,
    AwaitingDigest,
    Paused,
    Queued {
        place: usize,
        queued: usize,
        parallelism: usize,
        active: usize,
    },
    DaemonSilent {
        since: Option<Timestamp>,
        failed: bool,
    },
    DiskLimit {
        message: String,
    },
    Retrying {
        message: String,
        since: Option<Timestamp>,
    },
    WaitingForSlot {
        since: Option<Timestamp>,
    },
    Pulling {
        progress: i32,
        since: Option<Timestamp>,
    },
    PullFailed {
        message: Option<String>,
        at: Option<Timestamp>,
    },
    PastDeadline,
    Succeeded {
        at: Option<Timestamp>,
    },
}

impl Reason {
    /// A short name for scripts and tests (`-o json` carries it as `reason`).
    pub fn name(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        v["reason"].as_str().unwrap_or_default().to_string()
    }
}

/// What the manager's [`Failure`] means, in words.
pub fn failure_text(f: Failure) -> &'static str {
    match f {
        Failure::Pull => "the pull failed",
        Failure::NotResponding => "the node's daemon did not answer in time",
        Failure::PastDeadline => "the job's activeDeadlineSeconds passed",
        Failure::Full => "the NodeImage holds 256 images, none of them this one",
    }
}

/// Ready condition of a Node: whether True, since when, and its reason and message.
fn readiness(node: &Node) -> (bool, Option<Timestamp>, String) {
    let cond = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match cond {
        None => (false, None, "the node reports no Ready condition".into()),
        Some(c) => {
            let detail = [c.reason.as_deref(), c.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            (
                c.status == "True",
                c.last_transition_time.as_ref().map(|t| t.0),
                format!("Ready={} {detail}", c.status).trim().to_string(),
            )
        }
    }
}

/// The one reason `node` is not done for `job`.
pub fn why(snap: &Snapshot, job: &ImagePullJob, node_name: &str) -> Reason {
    let node = snap.nodes.get(node_name);
    let ni = snap.node_images.get(node_name);
    if node.is_none() && ni.is_none() {
        return Reason::NoSuchNode;
    }
    let a = model::analyse(snap, job);
    if a.info.deleting {
        return Reason::JobDeleting;
    }
    if let Err(e) = &a.info.image {
        return Reason::InvalidImage { error: e.clone() };
    }
    if let Some(r) = selection(job, node_name, node, ni) {
        return r;
    }
    let Some(ni) = ni else {
        return missing_node_image(snap, node);
    };
    if ni.metadata.deletion_timestamp.is_some() {
        return Reason::NodeImageDeleting;
    }
    if job.spec.template.pod_selector.is_some() && !a.cells.contains_key(node_name) {
        return Reason::NotPodTarget;
    }
    let c = a.cells.get(node_name).copied().unwrap_or(Cell::Unplaced);
    match c {
        Cell::Succeeded => Reason::Succeeded {
            at: model::current_report(&a.info, ni)
                .and_then(|r| r.completion_time.as_ref())
                .map(|t| t.0),
        },
        Cell::Failed(f) => failed(&a, ni, f),
        Cell::Pending => pending(&a, ni, node),
        Cell::Unplaced | Cell::Reserved(_) => unplaced(snap, &a, node_name),
    }
}

/// The selector's verdict, and virtual-kubelet nodes (which never get a NodeImage).
fn selection(
    job: &ImagePullJob,
    name: &str,
    node: Option<&Node>,
    ni: Option<&kruise_api::NodeImage>,
) -> Option<Reason> {
    // The manager matches the NodeImage's labels (a mirror of the Node's); without one, the
    // Node's own.
    let labels = ni
        .and_then(|n| n.metadata.labels.clone())
        .or_else(|| node.and_then(|n| n.metadata.labels.clone()))
        .unwrap_or_default();
    if let Some(detail) = model::selector_miss(job, name, &labels) {
        return Some(Reason::SelectorMismatch { detail });
    }
    let (k, v) = VIRTUAL_KUBELET_LABEL;
    let virt = node
        .and_then(|n| n.metadata.labels.as_ref())
        .is_some_and(|l| l.get(k).map(String::as_str) == Some(v));
    (ni.is_none() && virt).then_some(Reason::VirtualNode)
}

/// No NodeImage yet: the node is not Ready, or the manager's creation delay has not passed.
fn missing_node_image(snap: &Snapshot, node: Option<&Node>) -> Reason {
    let Some(node) = node else {
        return Reason::NoSuchNode;
    };
    let (ready, since, detail) = readiness(node);
    if !ready {
        return Reason::NodeNotReady { since, detail };
    }
    let delay = SignedDuration::try_from(snap.settings.creation_delay).unwrap_or_default();
    Reason::NodeImageMissing {
        ready_since: since,
        due: since.and_then(|s| s.checked_add(delay).ok()),
    }
}

fn failed(a: &Analysis, ni: &kruise_api::NodeImage, f: Failure) -> Reason {
    match f {
        Failure::Full => Reason::NodeImageFull {
            images: ni.spec.images.len(),
        },
        Failure::PastDeadline => Reason::PastDeadline,
        Failure::NotResponding => Reason::DaemonSilent {
            since: model::entry(&a.info, ni)
                .and_then(|e| e.created_at.as_ref())
                .map(|t| t.0),
            failed: true,
        },
        Failure::Pull => {
            let r = model::current_report(&a.info, ni);
            Reason::PullFailed {
                message: r.and_then(|r| r.message.clone()),
                at: r.and_then(|r| r.completion_time.as_ref()).map(|t| t.0),
            }
        }
    }
}

/// Written to the node, no result yet: what the daemon says, or its silence.
fn pending(a: &Analysis, ni: &kruise_api::NodeImage, node: Option<&Node>) -> Reason {
    let created = model::entry(&a.info, ni)
        .and_then(|e| e.created_at.as_ref())
        .map(|t| t.0);
    let Some(r) = model::current_report(&a.info, ni) else {
        if let Some((false, since, detail)) = node.map(readiness) {
            return Reason::NodeNotReady { since, detail };
        }
        return Reason::DaemonSilent {
            since: created,
            failed: false,
        };
    };
    let since = r.start_time.as_ref().map(|t| t.0).or(created);
    match (r.phase, r.message.as_deref()) {
        (_, Some(m)) if m.contains(RETRY_MARK) || m.contains(RUNTIME_WAIT_MARK) => {
            Reason::Retrying {
                message: m.to_string(),
                since,
            }
        }
        (TagPhase::Pulling, _) => Reason::Pulling {
            progress: r.progress,
            since,
        },
        (_, Some(m)) if m.starts_with(DISK_WAIT_PREFIX) => Reason::DiskLimit {
            message: m.to_string(),
        },
        _ => Reason::WaitingForSlot { since },
    }
}

/// Not written to the node: the job stopped placing, or the node waits its turn.
fn unplaced(snap: &Snapshot, a: &Analysis, node: &str) -> Reason {
    if a.info.completed() {
        return Reason::JobCompleted;
    }
    if a.info.deadline_passed(snap.now) {
        return Reason::DeadlinePassed;
    }
    if a.info.awaiting_digest {
        return Reason::AwaitingDigest;
    }
    if a.info.parallelism == 0 {
        return Reason::Paused;
    }
    let queue = model::queue(snap, a);
    Reason::Queued {
        place: queue
            .iter()
            .position(|n| n == node)
            .map_or(queue.len(), |p| p + 1),
        queued: queue.len(),
        parallelism: a.info.parallelism,
        active: a.cells.values().filter(|c| c.active()).count(),
    }
}

/// `3m20s ago` (or `in …`) from `now`.
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    let text = crate::render::duration(secs.unsigned_abs());
    if secs >= 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

fn at(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(
        || "an unknown time".into(),
        |t| format!("{t} ({})", ago(t, now)),
    )
}

/// The reason in a sentence an operator can act on.
pub fn explain(r: &Reason, snap: &Snapshot) -> String {
    let now = snap.now;
    let response = crate::render::duration(snap.settings.response_timeout.as_secs());
    match r {
        Reason::NoSuchNode => "there is no Node and no NodeImage of that name".into(),
        Reason::JobDeleting => "the job is being deleted; its tags are being withdrawn".into(),
        Reason::InvalidImage { error } => format!("the job's image does not parse: {error}; fix spec.image"),
        Reason::SelectorMismatch { detail } => format!("the job does not select this node: {detail}"),
        Reason::NotPodTarget => "the job follows its pods (podSelector) and none runs on this node".into(),
        Reason::VirtualNode => "virtual-kubelet nodes (label type=virtual-kubelet) get no NodeImage".into(),
        Reason::NodeNotReady { since, detail } => format!("the node is not Ready ({detail}) since {}; its daemon cannot pull", at(*since, now)),
        Reason::NodeImageMissing { ready_since, due } => format!(
            "the node has no NodeImage yet: the manager creates one {} after the node is Ready (Ready since {}, due {}); past that, check that kruise-manager runs and leads",
            crate::render::duration(snap.settings.creation_delay.as_secs()), at(*ready_since, now), at(*due, now)),
        Reason::NodeImageDeleting => "the node's NodeImage is being deleted (the Node is gone)".into(),
        Reason::NodeImageFull { images } => format!(
            "the node's NodeImage is full: {images} images, the limit is {MAX_IMAGES_PER_NODEIMAGE}, and none is this one; finish or delete jobs whose images it holds (kubectl prewarm node NODE)"),
        Reason::JobCompleted => "the job completed before it reached this node".into(),
        Reason::DeadlinePassed => "the job's activeDeadlineSeconds passed before it reached this node".into(),
        Reason::AwaitingDigest => "the manager is resolving the image's tag to a digest; nodes get it after that".into(),
        Reason::Paused => "the job is paused: parallelism is 0".into(),
        Reason::Queued { place, queued, parallelism, active } => format!(
            "queued behind the job's parallelism: {active} of {parallelism} slots pulling, this node is #{place} of {queued} in line"),
        Reason::DaemonSilent { since, failed: true } => format!(
            "the node's daemon has not answered since {}; the manager counted the node failed after {response} (--node-response-timeout): check the kruise-daemon pod on this node", at(*since, now)),
        Reason::DaemonSilent { since, failed: false } => format!(
            "the node's daemon has not answered since {}; the manager counts the node failed {response} after that (--node-response-timeout)", at(*since, now)),
        Reason::DiskLimit { message } => format!("the disk limit holds the pull: {message}"),
        Reason::Retrying { message, since } => format!(
            "an attempt failed and the daemon tries again (pulling since {}): {message}",
            at(*since, now)
        ),
        Reason::WaitingForSlot { since } => format!(
            "waiting for a pull slot on the node (kruise-daemon --max-concurrent-pulls) since {}", at(*since, now)),
        Reason::Pulling { progress, since } => format!("pulling, {progress}% done, since {}", at(*since, now)),
        Reason::PullFailed { message, at: when } => format!(
            "the pull failed at {}: {}; the daemon retried up to the job's backoffLimit; a Never job's node retries at its next image check, an Always job's does not (recreate the job to try again)",
            at(*when, now), message.as_deref().unwrap_or("(no message)")),
        Reason::PastDeadline => "the job's activeDeadlineSeconds passed while this node was pulling".into(),
        Reason::Succeeded { at: when } => format!("done: the image is on the node (succeeded at {})", at(*when, now)),
    }
}
