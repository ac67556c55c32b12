//! Which tags go into which NodeImage: the jobs' targets, placement under `parallelism`, joining
//! shared tags, and withdrawing what no live job wants.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kruise_api::constants::{DEFAULT_BACKOFF_LIMIT, DEFAULT_TIMEOUT_SECONDS};
use kruise_api::imageref::ImageRef;
use kruise_api::{
    CompletionPolicyType, ImagePullJob, ImagePullPolicy, ImageSpec, ImageTagPullPolicy,
    ImageTagSpec, NodeImage, NodeImageSpec, TagPhase,
};

use super::Snapshot;

const JOB_API_VERSION: &str = "apps.kruise.io/v1beta1";
const JOB_KIND: &str = "ImagePullJob";

/// Extra time the manager leaves the daemon beyond a tag's deadline before calling it failed.
pub const DEADLINE_GRACE_SECONDS: i64 = 60;

fn is_job_owner(r: &ObjectReference) -> bool {
    r.kind.as_deref() == Some(JOB_KIND)
        && r.api_version
            .as_deref()
            .is_some_and(|a| a.starts_with("apps.kruise.io/"))
}

/// Current specs with the ownership of jobs that are gone removed, and tags nobody owns dropped.
pub fn start_specs(s: &Snapshot, live: &BTreeSet<&str>) -> BTreeMap<String, NodeImageSpec> {
    let mut specs = BTreeMap::new();
    for ni in s
        .node_images
        .iter()
        .filter(|ni| ni.metadata.deletion_timestamp.is_none())
    {
        let mut spec = ni.spec.clone();
        for image in spec.images.values_mut() {
            for tag in &mut image.tags {
                tag.owner_references.retain(|r| {
                    !is_job_owner(r) || r.uid.as_deref().is_some_and(|u| live.contains(u))
                });
            }
            image.tags.retain(|t| !t.owner_references.is_empty());
        }
        spec.images.retain(|_, i| !i.tags.is_empty());
        specs.insert(ni.metadata.name.clone().unwrap_or_default(), spec);
    }
    specs
}

/// The NodeImages a job targets, in name order.
pub fn targets(s: &Snapshot, job: &ImagePullJob) -> Vec<String> {
    let t = &job.spec.template;
    let ns = job.metadata.namespace.as_deref().unwrap_or_default();
    let live = s
        .node_images
        .iter()
        .filter(|ni| ni.metadata.deletion_timestamp.is_none());
    let mut names: Vec<String> = if let Some(ps) = &t.pod_selector {
        let selector = crate::selector::matcher(&ps.match_labels, &ps.match_expressions);
        let nodes: BTreeSet<&str> = s
            .pods
            .iter()
            .filter(|p| p.active && p.namespace == ns && selector(&p.labels))
            .map(|p| p.node_name.as_str())
            .collect();
        live.filter_map(|ni| ni.metadata.name.clone())
            .filter(|n| nodes.contains(n.as_str()))
            .collect()
    } else if let Some(sel) = &t.selector {
        match sel.names.as_ref().filter(|n| !n.is_empty()) {
            Some(names) => live
                .filter_map(|ni| ni.metadata.name.clone())
                .filter(|n| names.contains(n))
                .collect(),
            None => {
                let selector = crate::selector::matcher(&sel.match_labels, &sel.match_expressions);
                live.filter(|ni| selector(&ni.metadata.labels.clone().unwrap_or_default()))
                    .filter_map(|ni| ni.metadata.name.clone())
                    .collect()
            }
        }
    } else {
        live.filter_map(|ni| ni.metadata.name.clone()).collect()
    };
    names.sort();
    names
}

/// `(NodeImage key, tag)` of a job's image, if it parses.
pub fn image_of(job: &ImagePullJob) -> Option<(String, String)> {
    ImageRef::parse(&job.spec.image)
        .ok()
        .map(|r| (r.node_image_key(), r.node_image_tag()))
}

/// Where a node stands for one tag entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Succeeded,
    Failed,
    /// Written, no result yet for its version.
    Pending,
}

/// Why a pending node counts as failed anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdue {
    /// No result for the tag version within the response window.
    NotResponding,
    /// The tag's deadline (plus grace) passed.
    PastDeadline,
}

/// A node's state for one tag entry as the job counts it, with the manager's own failures, and
/// the seconds until a pending node would become overdue.
pub fn entry_state(
    ni: Option<&NodeImage>,
    key: &str,
    entry: &ImageTagSpec,
    settings: &super::Settings,
    now: Timestamp,
) -> (NodeState, Option<Overdue>, Option<i64>) {
    let state = node_state(ni, key, &entry.tag, entry.version);
    if state != NodeState::Pending {
        return (state, None, None);
    }
    let age = entry
        .created_at
        .as_ref()
        .map_or(0, |c| now.as_second() - c.0.as_second());
    let reported = ni
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.image_statuses.get(key))
        .and_then(|i| i.tags.iter().find(|x| x.tag == entry.tag))
        .is_some_and(|x| x.version == entry.version);
    let response = settings.response_timeout.as_secs() as i64;
    let deadline = entry
        .pull_policy
        .as_ref()
        .and_then(|p| p.active_deadline_seconds)
        .map(|a| a.saturating_add(DEADLINE_GRACE_SECONDS));
    if !reported && age >= response {
        return (NodeState::Failed, Some(Overdue::NotResponding), None);
    }
    if deadline.is_some_and(|d| age >= d) {
        return (NodeState::Failed, Some(Overdue::PastDeadline), None);
    }
    let until = [
        (!reported).then_some(response - age),
        deadline.map(|d| d - age),
    ]
    .into_iter()
    .flatten()
    .min();
    (NodeState::Pending, None, until)
}

/// The daemon's result for `tag` of `key` at `version` on `ni`.
pub fn node_state(ni: Option<&NodeImage>, key: &str, tag: &str, version: i64) -> NodeState {
    let status = ni
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.image_statuses.get(key))
        .and_then(|i| i.tags.iter().find(|t| t.tag == tag));
    match status {
        Some(t) if t.version == version && t.phase == TagPhase::Succeeded => NodeState::Succeeded,
        Some(t) if t.version == version && t.phase == TagPhase::Failed => NodeState::Failed,
        _ => NodeState::Pending,
    }
}

fn owner_ref(job: &ImagePullJob) -> ObjectReference {
    ObjectReference {
        api_version: Some(JOB_API_VERSION.into()),
        kind: Some(JOB_KIND.into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The tag-level policy of a new entry, default values left out (smaller objects).
fn tag_policy(job: &ImagePullJob) -> Option<ImageTagPullPolicy> {
    let t = &job.spec.template;
    let cp = &t.completion_policy;
    let always = t.completion_type() == CompletionPolicyType::Always;
    let p = ImageTagPullPolicy {
        timeout_seconds: Some(t.timeout_seconds()).filter(|v| *v != DEFAULT_TIMEOUT_SECONDS),
        backoff_limit: Some(t.backoff_limit()).filter(|v| *v != DEFAULT_BACKOFF_LIMIT),
        ttl_seconds_after_finished: None,
        active_deadline_seconds: if always {
            cp.active_deadline_seconds
        } else {
            None
        },
    };
    (p != ImageTagPullPolicy::default()).then_some(p)
}

/// Adds `job` to its tag on up to `parallelism` nodes still pulling, and withdraws it from tags
/// it no longer wants.
pub fn place(
    s: &Snapshot,
    settings: &super::Settings,
    job: &ImagePullJob,
    targets: &[String],
    specs: &mut BTreeMap<String, NodeImageSpec>,
    now: Timestamp,
) {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let wanted = image_of(job);
    let target_set: BTreeSet<&str> = targets.iter().map(String::as_str).collect();
    // Withdraw from tags this job no longer wants (image or selector edited).
    for (node, spec) in specs.iter_mut() {
        for (key, image) in spec.images.iter_mut() {
            for tag in &mut image.tags {
                let keep = wanted
                    .as_ref()
                    .is_some_and(|(k, t)| k == key && *t == tag.tag)
                    && target_set.contains(node.as_str());
                if !keep {
                    tag.owner_references
                        .retain(|r| r.uid.as_deref() != Some(uid.as_str()));
                }
            }
            image.tags.retain(|t| !t.owner_references.is_empty());
        }
        spec.images.retain(|_, i| !i.tags.is_empty());
    }
    let Some((key, tag)) = wanted else { return };
    let status = job.status.clone().unwrap_or_default();
    if status.completion_time.is_some() {
        return;
    }
    if super::status::deadline_passed(job, now) {
        return;
    }
    sync_policy(job, &key, &tag, targets, specs, now);
    let by_name: BTreeMap<&str, &NodeImage> = s
        .node_images
        .iter()
        .filter_map(|n| n.metadata.name.as_deref().map(|k| (k, n.as_ref())))
        .collect();
    let parallelism = job.spec.template.parallelism().unwrap_or(1) as usize;
    let owned = |spec: &NodeImageSpec| -> Option<ImageTagSpec> {
        spec.images
            .get(&key)?
            .tags
            .iter()
            .find(|t| {
                t.tag == tag
                    && t.owner_references
                        .iter()
                        .any(|r| r.uid.as_deref() == Some(uid.as_str()))
            })
            .cloned()
    };
    close_silent_tags(job, &key, &tag, targets, specs, &by_name, settings, now);
    let mut active = targets
        .iter()
        .filter(|n| {
            specs.get(*n).and_then(owned).is_some_and(|e| {
                entry_state(by_name.get(n.as_str()).copied(), &key, &e, settings, now).0
                    == NodeState::Pending
            })
        })
        .count();
    for node in targets {
        if active >= parallelism {
            break;
        }
        let Some(spec) = specs.get_mut(node) else {
            continue;
        };
        if owned(spec).is_some() || full_without(spec, &key) {
            continue;
        }
        let ni = by_name.get(node.as_str()).copied();
        if join(spec, ni, job, &key, &tag, now) == NodeState::Pending {
            active += 1;
        }
    }
}

/// The NodeImage holds as many images as it may (the CRD refuses more), none of them `key`: the
/// job counts the node as failed instead of sending a patch that would be refused every round.
pub fn full_without(spec: &NodeImageSpec, key: &str) -> bool {
    !spec.images.contains_key(key)
        && spec.images.len() >= kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE
}

/// A node whose daemon never answered counts as failed, and its slot goes to another node; a
/// daemon coming back later would then pull beyond `parallelism`. So an Always job closes such a
/// tag when it alone owns it: the tag's deadline becomes the response window, already past, and a
/// returning daemon reports it failed at once instead of pulling. (The manager never writes the
/// daemon's status; the entry is its only channel.)
#[allow(clippy::too_many_arguments)]
fn close_silent_tags(
    job: &ImagePullJob,
    key: &str,
    tag: &str,
    targets: &[String],
    specs: &mut BTreeMap<String, NodeImageSpec>,
    by_name: &BTreeMap<&str, &NodeImage>,
    settings: &super::Settings,
    now: Timestamp,
) {
    if job.spec.template.completion_type() != CompletionPolicyType::Always {
        return;
    }
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let window = settings.response_timeout.as_secs() as i64;
    for node in targets {
        let ni = by_name.get(node.as_str()).copied();
        let entry = specs
            .get_mut(node)
            .and_then(|s| s.images.get_mut(key))
            .and_then(|i| i.tags.iter_mut().find(|t| t.tag == tag));
        let Some(entry) = entry else { continue };
        let sole_owner =
            matches!(entry.owner_references.as_slice(), [r] if r.uid.as_deref() == Some(uid));
        if sole_owner
            && entry_state(ni, key, entry, settings, now).1 == Some(Overdue::NotResponding)
        {
            let policy = entry.pull_policy.get_or_insert_with(Default::default);
            if policy
                .active_deadline_seconds
                .is_none_or(|ads| ads > window)
            {
                policy.active_deadline_seconds = Some(window);
            }
        }
    }
}

/// Adds the job to the tag entry on one node (creating it if needed); returns the node's state
/// for the tag afterwards.
fn join(
    spec: &mut NodeImageSpec,
    ni: Option<&NodeImage>,
    job: &ImagePullJob,
    key: &str,
    tag: &str,
    now: Timestamp,
) -> NodeState {
    let image = spec
        .images
        .entry(key.to_string())
        .or_insert_with(|| ImageSpec {
            pull_secrets: vec![],
            tags: vec![],
            sandbox_config: None,
        });
    if image.sandbox_config.is_none() {
        image.sandbox_config = job.spec.template.sandbox_config.clone();
    }
    let always = job.spec.template.image_pull_policy() == ImagePullPolicy::Always;
    if let Some(entry) = image.tags.iter_mut().find(|t| t.tag == tag) {
        entry.owner_references.push(owner_ref(job));
        let state = node_state(ni, key, tag, entry.version);
        // A finished tag is pulled again only for a job that asks for Always; joining never
        // restarts a pull in progress.
        if state == NodeState::Failed || (always && state == NodeState::Succeeded) {
            entry.version += 1;
            entry.created_at = Some(Time(now));
            entry.image_pull_policy = Some(ImagePullPolicy::Always);
            return NodeState::Pending;
        }
        return state;
    }
    let reported = ni
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.image_statuses.get(key))
        .and_then(|i| i.tags.iter().find(|t| t.tag == tag))
        .map(|t| t.version + 1)
        .unwrap_or(0);
    image.tags.push(ImageTagSpec {
        tag: tag.to_string(),
        created_at: Some(Time(now)),
        pull_policy: tag_policy(job),
        owner_references: vec![owner_ref(job)],
        version: reported,
        image_pull_policy: always.then_some(ImagePullPolicy::Always),
    });
    NodeState::Pending
}

/// Tags sorted, pull secrets of each image = the synced secrets of the jobs owning its tags.
pub fn finish_specs(specs: &mut BTreeMap<String, NodeImageSpec>, s: &Snapshot) {
    let jobs: BTreeMap<&str, &ImagePullJob> = s
        .jobs
        .iter()
        .filter_map(|j| j.metadata.uid.as_deref().map(|u| (u, j.as_ref())))
        .collect();
    for spec in specs.values_mut() {
        for image in spec.images.values_mut() {
            image.tags.sort_by(|a, b| a.tag.cmp(&b.tag));
            let mut secrets: Vec<_> = image
                .tags
                .iter()
                .flat_map(|t| &t.owner_references)
                .filter_map(|r| r.uid.as_deref().and_then(|u| jobs.get(u)))
                .flat_map(|j| {
                    let ns = j.metadata.namespace.clone().unwrap_or_default();
                    j.spec
                        .template
                        .pull_secrets
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |name| format!("{ns}/{name}"))
                })
                .filter_map(|source| s.synced_secrets.get(&source).cloned())
                .collect();
            secrets.sort();
            secrets.dedup();
            image.pull_secrets = secrets;
        }
    }
}

/// Edits of the first owner's pull policy reach the tag entries already written; switching to
/// `Always` asks for a new round.
fn sync_policy(
    job: &ImagePullJob,
    key: &str,
    tag: &str,
    targets: &[String],
    specs: &mut BTreeMap<String, NodeImageSpec>,
    now: Timestamp,
) {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let policy = tag_policy(job);
    let always = job.spec.template.image_pull_policy() == ImagePullPolicy::Always;
    for node in targets {
        let entry = specs
            .get_mut(node)
            .and_then(|s| s.images.get_mut(key))
            .and_then(|i| i.tags.iter_mut().find(|t| t.tag == tag));
        let Some(entry) = entry else { continue };
        if entry
            .owner_references
            .first()
            .and_then(|r| r.uid.as_deref())
            != Some(uid)
        {
            continue;
        }
        entry.pull_policy = policy.clone();
        let want = always.then_some(ImagePullPolicy::Always);
        if entry.image_pull_policy != want {
            entry.image_pull_policy = want;
            if always {
                entry.version += 1;
                entry.created_at = Some(Time(now));
            }
        }
    }
}
