//! A job's status from its running counts (nodes, and bytes from the registry and from peers),
//! plus what only the manager can see: nodes whose daemon never answered, tags past their
//! deadline, the job's own deadline and TTL. Transitions become Events with stable reasons.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImagePullJobStatus, ReferenceObject};

use super::jobs::{Cell, JobState};
use super::Name;

/// An Event the manager publishes on a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// `namespace/name`.
    pub job: String,
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

pub const REASON_STARTED: &str = "PullJobStarted";
pub const REASON_COMPLETED: &str = "PullJobCompleted";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const REASON_NOT_RESPONDING: &str = "NodeNotResponding";
pub const REASON_SECRET_MISSING: &str = "PullSecretNotFound";
pub const REASON_INVALID: &str = "InvalidImage";
pub const REASON_NODE_IMAGE_FULL: &str = "NodeImageFull";

/// What a job's status should be now.
#[derive(Debug, Default)]
pub struct Computed {
    pub status: ImagePullJobStatus,
    pub events: Vec<JobEvent>,
    /// When the status would change by time alone (the job's deadline, its TTL).
    pub wake_at: Option<Timestamp>,
    /// The TTL after completion has passed: delete the job.
    pub delete: bool,
}

fn secs_since(now: Timestamp, t: &Time) -> i64 {
    now.as_second() - t.0.as_second()
}

fn at(now: Timestamp, secs: i64) -> Option<Timestamp> {
    Timestamp::from_second(now.as_second() + secs.max(1)).ok()
}

/// The status of `job` at `now`; `synced` maps source secrets (`namespace/name`) to their copies;
/// `peers`: peer sources are planned, and the bytes from the registry and from peers are shown
/// (also without peers once some node reported bytes: zeros alone keep OpenKruise's shape).
pub fn compute(
    job: &JobState,
    synced: &BTreeMap<String, ReferenceObject>,
    response_secs: u64,
    peers: bool,
    now: Timestamp,
) -> Computed {
    let info = &job.info;
    let old = info.job.status.clone().unwrap_or_default();
    if old.completion_time.is_some() {
        return after_completion(job, old, now);
    }
    let mut out = Computed::default();
    let desired = job.desired() as i32;
    let mut new = ImagePullJobStatus {
        start_time: old.start_time.clone().or(Some(Time(now))),
        desired,
        // The digest is the resolver's: carried as it is.
        digest: old.digest.clone(),
        short_digest: old.short_digest.clone(),
        digest_message: old.digest_message.clone(),
        resolved_image: old.resolved_image.clone(),
        ..Default::default()
    };
    if old.start_time.is_none() {
        let note = format!("pulling {} on {} node(s)", info.job.spec.image, desired);
        out.events.push(event(job, false, REASON_STARTED, note));
    }
    if let Err(e) = &info.image {
        new.message = Some(format!("spec.image: {e}"));
        if old.message != new.message {
            out.events.push(event(job, true, REASON_INVALID, e.clone()));
        }
        out.status = new;
        return out;
    }
    out.events
        .extend(nodes_newly_failed(job, &old, response_secs));
    progress(job, &mut new, &mut out, now);
    if peers || !job.bytes.is_zero() {
        new.registry_bytes = Some(job.bytes.registry.min(i64::MAX as u64) as i64);
        new.peer_bytes = Some(job.bytes.peer.min(i64::MAX as u64) as i64);
    }
    missing_secrets(job, synced, &old, &mut new, &mut out);
    out.status = new;
    out
}

/// A job the manager could not resolve takes the digest its first node got, so the nodes that
/// pull after it pull the same image.
pub fn take_node_digest(job: &JobState, out: &mut Computed, node: &str, digest: &str) {
    let image = &job.info.job.spec.image;
    let note = format!(
        "the manager could not resolve {image}; node {node} pulled it as {digest}, which the \
         other nodes now pull too"
    );
    out.status.digest = Some(digest.to_string());
    out.status.short_digest = Some(kruise_api::short_digest(digest));
    out.status.digest_message = Some(note.clone());
    out.events.push(event(
        job,
        false,
        kruise_api::constants::REASON_DIGEST_RESOLVED,
        note,
    ));
}

fn event(job: &JobState, warning: bool, reason: &'static str, note: String) -> JobEvent {
    JobEvent {
        job: job.info.key.to_string(),
        warning,
        reason,
        note,
    }
}

/// A completed job keeps its status; it is deleted once its TTL has passed.
fn after_completion(job: &JobState, old: ImagePullJobStatus, now: Timestamp) -> Computed {
    let mut out = Computed::default();
    let ttl = job
        .info
        .job
        .spec
        .template
        .completion_policy
        .ttl_seconds_after_finished;
    if let (Some(done), Some(ttl)) = (&old.completion_time, ttl) {
        let left = ttl as i64 - secs_since(now, done);
        if left <= 0 {
            out.delete = true;
        } else {
            out.wake_at = at(now, left);
        }
    }
    out.status = old;
    out
}

/// A Warning for each node counted failed since the last status: its daemon never answered, or
/// its NodeImage is full.
fn nodes_newly_failed(
    job: &JobState,
    old: &ImagePullJobStatus,
    response_secs: u64,
) -> Vec<JobEvent> {
    let image = &job.info.job.spec.image;
    let new = |n: &&Name| !old.failed_nodes.iter().any(|f| **f == ***n);
    let silent = job.not_responding.iter().filter(new).map(|node| {
        let note = format!("node {node} has not reported pulling {image} within {response_secs}s");
        event(job, true, REASON_NOT_RESPONDING, note)
    });
    let full = job.full.iter().filter(new).map(|node| {
        let note = format!(
            "node {node}'s NodeImage already lists {} images, the most it may hold; {image} was not added there (delete jobs that target the node, or wait for their TTL)",
            kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE,
        );
        event(job, true, REASON_NODE_IMAGE_FULL, note)
    });
    silent.chain(full).collect()
}

/// Counts, the completion and the message: past `activeDeadlineSeconds` the job gives up on the
/// nodes not done; an `Always` job is complete once every node finished.
fn progress(job: &JobState, new: &mut ImagePullJobStatus, out: &mut Computed, now: Timestamp) {
    let info = &job.info;
    let (desired, succeeded, failed) = (new.desired, job.succeeded as i32, job.failed.len() as i32);
    let finished = succeeded + failed;
    new.succeeded = succeeded;
    new.active = job.active as i32;
    let deadline_left = info.always_complete.then(|| {
        let started = new.start_time.as_ref().map_or(0, |t| secs_since(now, t));
        let policy = &info.job.spec.template.completion_policy;
        policy.active_deadline_seconds.map(|ads| ads - started)
    });
    let left = deadline_left.flatten();
    if left.is_some_and(|l| l <= 0) && (finished < desired || desired == 0) {
        return deadline_passed(job, new, out, now);
    }
    new.failed = failed;
    new.failed_nodes = job.failed.iter().map(|n| n.to_string()).collect();
    if info.always_complete && desired > 0 && finished == desired {
        new.completion_time = Some(Time(now));
        new.message = Some("job has completed".into());
        let note = format!("{} succeeded, {} failed", new.succeeded, new.failed);
        out.events.push(event(job, false, REASON_COMPLETED, note));
    } else if desired == 0 {
        new.message = Some("job is running, no node matches it yet".into());
    } else {
        let percent = 100.0 * finished as f64 / desired as f64;
        new.message = Some(format!("job is running, progress {percent:.1}%"));
    }
    if let Some(left) = left {
        out.wake_at = at(now, left);
    }
}

/// Past `activeDeadlineSeconds`: every node not succeeded counts as failed, and the job ends.
fn deadline_passed(
    job: &JobState,
    new: &mut ImagePullJobStatus,
    out: &mut Computed,
    now: Timestamp,
) {
    let mut nodes: Vec<String> = job
        .cells
        .iter()
        .filter(|(_, c)| !matches!(c, Cell::Succeeded))
        .map(|(n, _)| n.to_string())
        .collect();
    nodes.sort();
    new.failed = new.desired - new.succeeded;
    new.active = 0;
    new.failed_nodes = nodes;
    new.completion_time = Some(Time(now));
    new.message = Some("job exceeds activeDeadlineSeconds".into());
    let note = format!(
        "{} of {} node(s) did not finish before activeDeadlineSeconds",
        new.failed, new.desired
    );
    out.events.push(event(job, true, REASON_DEADLINE, note));
}

/// Pull secrets the job names that have no copy: said in the message, and once as a Warning.
fn missing_secrets(
    job: &JobState,
    synced: &BTreeMap<String, ReferenceObject>,
    old: &ImagePullJobStatus,
    new: &mut ImagePullJobStatus,
    out: &mut Computed,
) {
    let ns = job.info.job.metadata.namespace.clone().unwrap_or_default();
    let missing: Vec<String> = (job.info.job.spec.template.pull_secrets.iter().flatten())
        .map(|n| format!("{ns}/{n}"))
        .filter(|src| !synced.contains_key(src))
        .collect();
    if missing.is_empty() {
        return;
    }
    let note = format!("pull secret {} not found (it must exist in the job's namespace, of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg)", missing.join(", "));
    new.message = Some(format!(
        "{}; {note}",
        new.message.take().unwrap_or_default()
    ));
    let said = old
        .message
        .as_deref()
        .is_some_and(|m| m.contains("pull secret"));
    if !said {
        out.events
            .push(event(job, true, REASON_SECRET_MISSING, note));
    }
}
