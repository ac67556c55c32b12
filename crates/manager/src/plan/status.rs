//! A job's status, counted from the daemons' results for the tag version on each target node,
//! plus what only the manager can see: nodes whose daemon never answered, tags past their
//! deadline, the job's own deadline and TTL. Transitions become Events.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{
    CompletionPolicyType, ImagePullJob, ImagePullJobStatus, NodeImage, NodeImageSpec,
};

use super::tags::{entry_state, full_without, image_of, NodeState, Overdue};
use super::{job_key, Plan, Settings, Snapshot};

/// An Event the manager publishes on a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
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

fn secs_since(now: Timestamp, t: &Time) -> i64 {
    now.as_second() - t.0.as_second()
}

/// An `Always` job whose `activeDeadlineSeconds` has run out.
pub fn deadline_passed(job: &ImagePullJob, now: Timestamp) -> bool {
    let t = &job.spec.template;
    let start = job.status.as_ref().and_then(|s| s.start_time.as_ref());
    match (
        t.completion_type(),
        t.completion_policy.active_deadline_seconds,
        start,
    ) {
        (CompletionPolicyType::Always, Some(ads), Some(start)) => secs_since(now, start) >= ads,
        _ => false,
    }
}

#[derive(Default)]
struct Tally {
    succeeded: i32,
    failed: Vec<String>,
    active: i32,
    pending: Vec<String>,
    unsynced: Vec<String>,
    not_responding: Vec<String>,
    /// Nodes whose NodeImage has no room for this image.
    full: Vec<String>,
}

fn tally(
    job: &ImagePullJob,
    targets: &[String],
    specs: &BTreeMap<String, NodeImageSpec>,
    by_name: &BTreeMap<&str, &NodeImage>,
    settings: &Settings,
    now: Timestamp,
    plan: &mut Plan,
) -> Tally {
    let mut t = Tally::default();
    let Some((key, tag)) = image_of(job) else {
        return t;
    };
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    for node in targets {
        let entry = specs
            .get(node)
            .and_then(|s| s.images.get(&key))
            .and_then(|i| {
                i.tags.iter().find(|e| {
                    e.tag == tag
                        && e.owner_references
                            .iter()
                            .any(|r| r.uid.as_deref() == Some(uid))
                })
            });
        let Some(entry) = entry else {
            if specs.get(node).is_some_and(|s| full_without(s, &key)) {
                t.full.push(node.clone());
                t.failed.push(node.clone());
            } else {
                t.unsynced.push(node.clone());
            }
            continue;
        };
        match entry_state(
            by_name.get(node.as_str()).copied(),
            &key,
            entry,
            settings,
            now,
        ) {
            (NodeState::Succeeded, _, _) => t.succeeded += 1,
            (NodeState::Failed, overdue, _) => {
                if overdue == Some(Overdue::NotResponding) {
                    t.not_responding.push(node.clone());
                }
                t.failed.push(node.clone());
            }
            (NodeState::Pending, _, until) => {
                t.active += 1;
                t.pending.push(node.clone());
                if let Some(u) = until {
                    plan.requeue(Duration::from_secs(u.max(1) as u64));
                }
            }
        }
    }
    t
}

#[allow(clippy::too_many_arguments)]
pub fn compute(
    s: &Snapshot,
    settings: &Settings,
    job: &ImagePullJob,
    targets: &[String],
    specs: &BTreeMap<String, NodeImageSpec>,
    now: Timestamp,
    plan: &mut Plan,
) {
    let key = job_key(job);
    let old = job.status.clone().unwrap_or_default();
    let t = &job.spec.template;
    if let Some(done) = &old.completion_time {
        if let Some(ttl) = t.completion_policy.ttl_seconds_after_finished {
            let left = ttl as i64 - secs_since(now, done);
            if left <= 0 {
                let ns = job.metadata.namespace.clone().unwrap_or_default();
                plan.delete_jobs
                    .push((ns, job.metadata.name.clone().unwrap_or_default()));
            } else {
                plan.requeue(Duration::from_secs(left as u64));
            }
        }
        plan.job_status.insert(key, old);
        return;
    }
    let event = |warning, reason, note: String| JobEvent {
        job: key.clone(),
        warning,
        reason,
        note,
    };
    let mut new = ImagePullJobStatus {
        start_time: old.start_time.clone().or(Some(Time(now))),
        desired: targets.len() as i32,
        ..Default::default()
    };
    if old.start_time.is_none() {
        plan.events.push(event(
            false,
            REASON_STARTED,
            format!("pulling {} on {} node(s)", job.spec.image, targets.len()),
        ));
    }
    if let Err(e) = kruise_api::imageref::ImageRef::parse(&job.spec.image) {
        new.message = Some(format!("spec.image: {e}"));
        if old.message != new.message {
            plan.events.push(event(true, REASON_INVALID, e.to_string()));
        }
        plan.job_status.insert(key, new);
        return;
    }
    let by_name: BTreeMap<&str, &NodeImage> = s
        .node_images
        .iter()
        .filter_map(|n| n.metadata.name.as_deref().map(|k| (k, n.as_ref())))
        .collect();
    let mut tally = tally(job, targets, specs, &by_name, settings, now, plan);
    for node in tally
        .not_responding
        .iter()
        .filter(|n| !old.failed_nodes.contains(n))
    {
        plan.events.push(event(
            true,
            REASON_NOT_RESPONDING,
            format!(
                "node {node} has not reported pulling {} within {}s",
                job.spec.image,
                settings.response_timeout.as_secs()
            ),
        ));
    }
    for node in tally.full.iter().filter(|n| !old.failed_nodes.contains(n)) {
        plan.events.push(event(
            true,
            REASON_NODE_IMAGE_FULL,
            format!(
                "node {node}'s NodeImage already lists {} images, the most it may hold; {} was not added there (delete jobs that target the node, or wait for their TTL)",
                kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE,
                job.spec.image
            ),
        ));
    }
    new.succeeded = tally.succeeded;
    new.active = tally.active;
    let always = t.completion_type() == CompletionPolicyType::Always;
    let finished = tally.succeeded + tally.failed.len() as i32;
    if deadline_passed(
        &ImagePullJob {
            status: Some(new.clone()),
            ..job.clone()
        },
        now,
    ) && (finished < new.desired || new.desired == 0)
    {
        let mut failed = std::mem::take(&mut tally.failed);
        failed.extend(tally.unsynced.iter().cloned());
        failed.extend(tally.pending.iter().cloned());
        failed.sort();
        new.failed = new.desired - new.succeeded;
        new.active = 0;
        new.failed_nodes = failed;
        new.completion_time = Some(Time(now));
        new.message = Some("job exceeds activeDeadlineSeconds".into());
        plan.events.push(event(
            true,
            REASON_DEADLINE,
            format!(
                "{} of {} node(s) did not finish before activeDeadlineSeconds",
                new.failed, new.desired
            ),
        ));
    } else {
        tally.failed.sort();
        new.failed = tally.failed.len() as i32;
        new.failed_nodes = tally.failed;
        if always && new.desired > 0 && finished == new.desired {
            new.completion_time = Some(Time(now));
            new.message = Some("job has completed".into());
            plan.events.push(event(
                false,
                REASON_COMPLETED,
                format!("{} succeeded, {} failed", new.succeeded, new.failed),
            ));
        } else if new.desired == 0 {
            new.message = Some("job is running, no node matches it yet".into());
        } else {
            new.message = Some(format!(
                "job is running, progress {:.1}%",
                100.0 * finished as f64 / new.desired as f64
            ));
        }
        if let (true, Some(ads), Some(start)) = (
            always,
            t.completion_policy.active_deadline_seconds,
            &new.start_time,
        ) {
            plan.requeue(Duration::from_secs(
                (ads - secs_since(now, start)).max(1) as u64
            ));
        }
    }
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let missing: Vec<String> = t
        .pull_secrets
        .iter()
        .flatten()
        .map(|n| format!("{ns}/{n}"))
        .filter(|src| !s.synced_secrets.contains_key(src))
        .collect();
    if !missing.is_empty() {
        let note = format!("pull secret {} not found (it must exist in the job's namespace, of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg)", missing.join(", "));
        new.message = Some(format!("{}; {note}", new.message.unwrap_or_default()));
        if !old
            .message
            .as_deref()
            .is_some_and(|m| m.contains("pull secret"))
        {
            plan.events.push(event(true, REASON_SECRET_MISSING, note));
        }
    }
    plan.job_status.insert(key, new);
}
