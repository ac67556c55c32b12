//! A job's status from its running counts, plus what only the manager can see: nodes whose
//! daemon never answered, tags past their deadline, the job's own deadline and TTL. Transitions
//! become Events with stable reasons.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImagePullJobStatus, ReferenceObject};

use super::jobs::{Cell, JobState};

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

/// The status of `job` at `now`; `synced` maps source secrets (`namespace/name`) to their copies.
pub fn compute(
    job: &JobState,
    synced: &BTreeMap<String, ReferenceObject>,
    response_secs: u64,
    now: Timestamp,
) -> Computed {
    let info = &job.info;
    let old = info.job.status.clone().unwrap_or_default();
    let t = &info.job.spec.template;
    let mut out = Computed::default();
    let event = |warning, reason, note: String| JobEvent {
        job: info.key.to_string(),
        warning,
        reason,
        note,
    };
    if let Some(done) = &old.completion_time {
        if let Some(ttl) = t.completion_policy.ttl_seconds_after_finished {
            let left = ttl as i64 - secs_since(now, done);
            if left <= 0 {
                out.delete = true;
            } else {
                out.wake_at = at(now, left);
            }
        }
        out.status = old;
        return out;
    }
    let desired = job.desired() as i32;
    let mut new = ImagePullJobStatus {
        start_time: old.start_time.clone().or(Some(Time(now))),
        desired,
        ..Default::default()
    };
    if old.start_time.is_none() {
        out.events.push(event(
            false,
            super::status::REASON_STARTED,
            format!("pulling {} on {} node(s)", info.job.spec.image, desired),
        ));
    }
    if let Err(e) = &info.image {
        new.message = Some(format!("spec.image: {e}"));
        if old.message != new.message {
            out.events.push(event(true, REASON_INVALID, e.clone()));
        }
        out.status = new;
        return out;
    }
    for node in job
        .not_responding
        .iter()
        .filter(|n| !old.failed_nodes.iter().any(|f| **f == ***n))
    {
        out.events.push(event(
            true,
            REASON_NOT_RESPONDING,
            format!(
                "node {node} has not reported pulling {} within {response_secs}s",
                info.job.spec.image
            ),
        ));
    }
    for node in job
        .full
        .iter()
        .filter(|n| !old.failed_nodes.iter().any(|f| **f == ***n))
    {
        out.events.push(event(
            true,
            REASON_NODE_IMAGE_FULL,
            format!(
                "node {node}'s NodeImage already lists {} images, the most it may hold; {} was not added there (delete jobs that target the node, or wait for their TTL)",
                kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE,
                info.job.spec.image
            ),
        ));
    }
    let succeeded = job.succeeded as i32;
    let failed = job.failed.len() as i32;
    let finished = succeeded + failed;
    new.succeeded = succeeded;
    new.active = job.active as i32;
    let deadline_left = info.always_complete.then(|| {
        t.completion_policy
            .active_deadline_seconds
            .map(|ads| ads - secs_since(now, new.start_time.as_ref().expect("set above")))
    });
    match deadline_left.flatten() {
        Some(left) if left <= 0 && (finished < desired || desired == 0) => {
            let mut nodes: Vec<String> = job
                .cells
                .iter()
                .filter(|(_, c)| !matches!(c, Cell::Succeeded))
                .map(|(n, _)| n.to_string())
                .collect();
            nodes.sort();
            new.failed = desired - succeeded;
            new.active = 0;
            new.failed_nodes = nodes;
            new.completion_time = Some(Time(now));
            new.message = Some("job exceeds activeDeadlineSeconds".into());
            out.events.push(event(
                true,
                REASON_DEADLINE,
                format!(
                    "{} of {} node(s) did not finish before activeDeadlineSeconds",
                    new.failed, new.desired
                ),
            ));
        }
        left => {
            new.failed = failed;
            new.failed_nodes = job.failed.iter().map(|n| n.to_string()).collect();
            if info.always_complete && desired > 0 && finished == desired {
                new.completion_time = Some(Time(now));
                new.message = Some("job has completed".into());
                out.events.push(event(
                    false,
                    REASON_COMPLETED,
                    format!("{} succeeded, {} failed", new.succeeded, new.failed),
                ));
            } else if desired == 0 {
                new.message = Some("job is running, no node matches it yet".into());
            } else {
                new.message = Some(format!(
                    "job is running, progress {:.1}%",
                    100.0 * finished as f64 / desired as f64
                ));
            }
            if let Some(left) = left {
                out.wake_at = at(now, left);
            }
        }
    }
    let ns = info.job.metadata.namespace.clone().unwrap_or_default();
    let missing: Vec<String> = t
        .pull_secrets
        .iter()
        .flatten()
        .map(|n| format!("{ns}/{n}"))
        .filter(|src| !synced.contains_key(src))
        .collect();
    if !missing.is_empty() {
        let note = format!("pull secret {} not found (it must exist in the job's namespace, of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg)", missing.join(", "));
        new.message = Some(format!("{}; {note}", new.message.unwrap_or_default()));
        if !old
            .message
            .as_deref()
            .is_some_and(|m| m.contains("pull secret"))
        {
            out.events.push(event(true, REASON_SECRET_MISSING, note));
        }
    }
    out.status = new;
    out
}
