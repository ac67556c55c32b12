//! The decision: given a [`Rollout`], its pods and the pre-download jobs it already has, which
//! ImagePullJobs to create, which to delete and which mark to put on the update revision.
//! Pure: no client, no clock of its own. OpenKruise's rules (CloneSet, Advanced StatefulSet,
//! Advanced DaemonSet pre-download), with three of its bugs fixed: a revision is marked
//! "created" only once every job exists (§9 item 21), a mark only counts for the rollout it
//! was written for (rollback, #1419), and the nodes' update order travels with the job
//! (§9 item 14).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kruise_api::{
    CompletionPolicy, CompletionPolicyType, ImagePullJob, ImagePullJobSpec, ImagePullJobTemplate,
    ImagePullPolicy, LabelSelectorOperator, LabelSelectorRequirement, PullPolicy, SandboxConfig,
};
use serde_json::{json, Value};

use super::model::{
    fnv32a, revision_label_value, Kind, PodView, Revision, Rollout, CREATED_MARK, IGNORED_MARK,
    JOB_REVISION_LABEL, MARK_FROM_ANNOTATION, NODE_ORDER_ANNOTATION, POD_TEMPLATE_HASH,
    REVISION_HASH_LABEL,
};

/// OpenKruise's pre-download job shape: a short per-node timeout and one retry, since the
/// rollout does not wait for the pull; finished jobs go after 10 minutes.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 300;
pub const BACKOFF_LIMIT: i32 = 1;
pub const TTL_SECONDS_AFTER_FINISHED: i32 = 600;
/// OpenKruise does not pre-download for CloneSets and Advanced StatefulSets this small.
pub const MINIMUM_REPLICAS: i32 = 3;
/// The node-order annotation stops before this many bytes (annotations share 256 KiB).
pub const NODE_ORDER_BUDGET: usize = 128 * 1024;

/// A pre-download job the workload already controls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExistingJob {
    pub name: String,
    pub image: String,
    /// Its [`JOB_REVISION_LABEL`]; `None` on jobs OpenKruise created.
    pub revision: Option<String>,
}

/// The label put on the update revision (with [`MARK_FROM_ANNOTATION`], see [`mark_patch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Every job of the revision exists.
    Created,
    /// Pre-download was decided against for the revision.
    Ignored,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Mark::Created => CREATED_MARK,
            Mark::Ignored => IGNORED_MARK,
        }
    }
}

/// Why pre-download is decided against (the revision is marked [`Mark::Ignored`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignore {
    /// A CloneSet or Advanced StatefulSet of at most [`MINIMUM_REPLICAS`] pods.
    FewReplicas,
    /// No partition and maxUnavailable covers every pod: everything updates at once.
    OneBatch,
    /// The pods will be recreated, not updated in place.
    NotInPlace,
    /// Every image of the update revision already runs on the pods to update.
    NoNewImage,
}

/// What the decision amounts to, for logs and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An apps/v1 workload that did not opt in: its jobs, if any, are deleted.
    NotOptedIn,
    /// The rollout is complete or back on the current revision: every job is deleted.
    Finished,
    /// The workload's status does not name the update revision yet.
    UpdateRevisionUnknown,
    /// The update revision carries a valid mark: nothing more to create.
    AlreadyMarked(Mark),
    Ignored(Ignore),
    /// No pod is waiting for the update.
    NothingToUpdate,
    /// Waiting for enough updated pods to be ready (the min-updated-ready gate).
    Waiting {
        updated_ready: i32,
        threshold: i32,
    },
    /// This many jobs are missing and are to be created.
    Creating(usize),
    /// Every job exists; the revision is to be marked created.
    AllCreated,
}

/// What to do for one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub create: Vec<ImagePullJob>,
    /// Names of jobs (in the workload's namespace) to delete.
    pub delete: Vec<String>,
    /// The mark to write on the update revision (with [`mark_patch`]).
    pub mark: Option<Mark>,
    pub outcome: Outcome,
}

impl Decision {
    fn just(outcome: Outcome) -> Self {
        Decision {
            create: Vec::new(),
            delete: Vec::new(),
            mark: None,
            outcome,
        }
    }

    fn marked(outcome: Outcome, mark: Mark) -> Self {
        Decision {
            mark: Some(mark),
            ..Decision::just(outcome)
        }
    }
}

/// Decides for `r`, given its pods and the pre-download jobs it controls. No rule depends on
/// time.
pub fn decide(r: &Rollout, pods: &[PodView], existing: &[ExistingJob]) -> Decision {
    let every = || existing.iter().map(|j| j.name.clone()).collect();
    if !r.opted_in {
        return Decision {
            delete: every(),
            ..Decision::just(Outcome::NotOptedIn)
        };
    }
    if r.complete {
        return Decision {
            delete: every(),
            ..Decision::just(Outcome::Finished)
        };
    }
    let Some(update) = &r.update_revision else {
        return Decision::just(Outcome::UpdateRevisionUnknown);
    };
    if r.current_revision.as_deref() == Some(update.name.as_str()) {
        return Decision {
            delete: every(),
            ..Decision::just(Outcome::Finished)
        };
    }
    // Jobs of another revision belong to a rollout that a newer one (or a rollback) replaced.
    let (ours, stale): (Vec<&ExistingJob>, Vec<&ExistingJob>) =
        existing.iter().partition(|j| pulls_for(j, update));
    let decision = plan(r, update, pods, &ours);
    Decision {
        delete: stale.into_iter().map(|j| j.name.clone()).collect(),
        ..decision
    }
}

/// The decision for the update revision, once cleanup is set aside.
fn plan(r: &Rollout, update: &Revision, pods: &[PodView], ours: &[&ExistingJob]) -> Decision {
    if let Some(mark) = valid_mark(r, update) {
        return Decision::just(Outcome::AlreadyMarked(mark));
    }
    if r.replicas <= 0 {
        return Decision::just(Outcome::NothingToUpdate);
    }
    if let Some(why) = ignore(r) {
        return Decision::marked(Outcome::Ignored(why), Mark::Ignored);
    }
    // A partition that holds every pod does not wait: the usual canary lowers it by one
    // next, and the canary's node (first in the job's order) should have the image by then.
    // OpenKruise's job covers every pod not on the update revision too.
    if !pods.iter().any(|p| waits_for(update, p)) {
        return Decision::just(Outcome::NothingToUpdate);
    }
    let images = new_images(r, update, pods);
    if images.is_empty() {
        return Decision::marked(Outcome::Ignored(Ignore::NoNewImage), Mark::Ignored);
    }
    let ready = r
        .updated_ready
        .unwrap_or_else(|| updated_ready(update, pods));
    if ready < r.min_updated_ready {
        let threshold = r.min_updated_ready;
        return Decision::just(Outcome::Waiting {
            updated_ready: ready,
            threshold,
        });
    }
    let missing: Vec<_> = images
        .into_iter()
        .map(|(container, image)| (job_name(&update.name, container), image))
        .filter(|(name, image)| !ours.iter().any(|j| &j.name == name || j.image == *image))
        .collect();
    if missing.is_empty() {
        return Decision::marked(Outcome::AllCreated, Mark::Created);
    }
    let order = node_order_value(&update_order(r, pods));
    let create: Vec<_> = missing
        .into_iter()
        .map(|(name, image)| job(r, update, name, image, &order))
        .collect();
    Decision {
        outcome: Outcome::Creating(create.len()),
        create,
        delete: Vec::new(),
        mark: None,
    }
}

/// Whether a job pulls for `update`: by our label, or (OpenKruise's jobs, unlabelled) by
/// OpenKruise's naming `<revision>-<container>`.
fn pulls_for(job: &ExistingJob, update: &Revision) -> bool {
    match &job.revision {
        Some(v) => *v == revision_label_value(&update.name),
        None => job
            .name
            .strip_prefix(update.name.as_str())
            .is_some_and(|rest| rest.starts_with('-')),
    }
}

/// The mark on the update revision, if it was written for this rollout: ours carry the
/// current revision they were written against; OpenKruise's carry nothing and are trusted.
fn valid_mark(r: &Rollout, update: &Revision) -> Option<Mark> {
    let mark = if update.labels.contains_key(CREATED_MARK) {
        Mark::Created
    } else if update.labels.contains_key(IGNORED_MARK) {
        Mark::Ignored
    } else {
        return None;
    };
    match update.annotations.get(MARK_FROM_ANNOTATION) {
        None => Some(mark),
        Some(from) if *from == r.current_revision.as_deref().unwrap_or_default() => Some(mark),
        Some(_) => None, // written for an earlier rollout to this revision
    }
}

/// OpenKruise's reasons not to pre-download, decided once per revision.
fn ignore(r: &Rollout) -> Option<Ignore> {
    let small_matters = matches!(r.kind, Kind::CloneSet | Kind::AdvancedStatefulSet);
    if small_matters && r.replicas <= MINIMUM_REPLICAS {
        Some(Ignore::FewReplicas)
    } else if r.partition == 0 && r.max_unavailable >= r.replicas {
        Some(Ignore::OneBatch)
    } else if !r.in_place {
        Some(Ignore::NotInPlace)
    } else {
        None
    }
}

/// A pod the update has not reached yet (terminating pods are not waiting for anything).
fn waits_for(update: &Revision, p: &PodView) -> bool {
    !p.terminating && !on_revision(update, p)
}

fn on_revision(rev: &Revision, p: &PodView) -> bool {
    p.revision.as_deref().is_some_and(|v| rev.owns(v))
}

/// Ready, live pods on the update revision (kinds whose status does not count them).
fn updated_ready(update: &Revision, pods: &[PodView]) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.ready && !p.terminating && on_revision(update, p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The `(container, image)` pairs of the update revision worth a job, one per image, in
/// template order. An image is worth one unless every old revision that still has waiting
/// pods already runs it (in any container: a node with the image needs no pull). Waiting pods
/// of an unknown revision (history pruned) may lack any image.
pub fn new_images<'a>(
    r: &Rollout,
    update: &'a Revision,
    pods: &[PodView],
) -> Vec<(&'a str, &'a str)> {
    let waiting: Vec<&PodView> = pods.iter().filter(|p| waits_for(update, p)).collect();
    let olds: Vec<&Revision> = r
        .old_revisions
        .iter()
        .filter(|rev| waiting.iter().any(|p| on_revision(rev, p)))
        .collect();
    let unknown = waiting
        .iter()
        .any(|p| !r.old_revisions.iter().any(|rev| on_revision(rev, p)));
    let mut seen = HashSet::new();
    update
        .containers
        .iter()
        .filter(|(_, image)| seen.insert(image.as_str()))
        .filter(|(_, image)| unknown || olds.iter().any(|rev| !rev.images().any(|i| i == image)))
        .map(|(c, image)| (c.as_str(), image.as_str()))
        .collect()
}

/// The nodes of the pods still to update, in the order the workload updates them, each once.
/// Only scheduled, live pods not on the update revision count.
/// - StatefulSets: highest ordinal first, those the partition holds included (lowering it
///   updates the next highest, whose node then already has the image).
/// - CloneSet: its default order (Kubernetes `ActivePods`): not ready first, then newest
///   first; priority and scatter strategies are not modelled.
/// - DaemonSets: not ready first (both controllers replace unavailable pods first), then
///   node name.
/// - The pods a CloneSet or Advanced DaemonSet partition keeps are still listed (the job's
///   pod selector covers them too); which ones the partition keeps is not modelled.
/// - Deployment: pods of the oldest ReplicaSet first (it is scaled down first), then as
///   CloneSet. New pods may land on other nodes; these are where the old ones run.
pub fn update_order(r: &Rollout, pods: &[PodView]) -> Vec<String> {
    let mut waiting: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.node.is_some() && !p.terminating)
        .filter(|p| {
            !r.update_revision
                .as_ref()
                .is_some_and(|u| on_revision(u, p))
        })
        .collect();
    // Pods without a creation time count as newest, as in Kubernetes.
    let newest_first = |p: &PodView| Reverse(p.created.unwrap_or(i64::MAX));
    match r.kind {
        _ if r.kind.is_ordinal() => {
            waiting.sort_by_key(|p| (Reverse(p.ordinal.unwrap_or(-1)), p.name.clone()))
        }
        _ if r.kind.is_daemon() => waiting.sort_by_key(|p| (p.ready, p.node.clone())),
        Kind::Deployment => waiting.sort_by_key(|p| {
            let number = r
                .old_revisions
                .iter()
                .find(|rev| on_revision(rev, p))
                .map(|rev| rev.number);
            (
                number.unwrap_or(i64::MIN),
                p.ready,
                newest_first(p),
                p.name.clone(),
            )
        }),
        _ => waiting.sort_by_key(|p| (p.ready, newest_first(p), p.name.clone())),
    }
    let mut seen = HashSet::new();
    waiting
        .into_iter()
        .filter_map(|p| p.node.clone())
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// The node-order annotation: as many nodes as fit in [`NODE_ORDER_BUDGET`]; nodes left out
/// are pulled after the listed ones, in no particular order.
fn node_order_value(nodes: &[String]) -> String {
    let mut out = String::new();
    for n in nodes {
        if out.len() + n.len() + 1 > NODE_ORDER_BUDGET {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(n);
    }
    out
}

/// `<revision>-<container>` as a DNS subdomain: lower case, `[a-z0-9.-]`, alphanumeric at
/// both ends, at most 253 characters (a long name keeps a hash of the whole so it stays
/// unique).
pub fn job_name(revision: &str, container: &str) -> String {
    let raw = format!("{revision}-{container}");
    let clean: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trim = |s: &str| {
        s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string()
    };
    let clean = trim(&clean);
    if clean.len() <= 253 {
        return clean;
    }
    format!("{}-{:08x}", trim(&clean[..244]), fnv32a(&raw))
}

/// The ImagePullJob for one image, in OpenKruise's shape plus our labels and node order.
fn job(r: &Rollout, update: &Revision, name: String, image: &str, order: &str) -> ImagePullJob {
    let labels = job_labels(r, update);
    let template = ImagePullJobTemplate {
        pull_secrets: (!r.pull_secrets.is_empty()).then(|| r.pull_secrets.clone()),
        selector: None,
        pod_selector: Some(pod_selector(r, update)),
        parallelism: Some(IntOrString::Int(r.parallelism.unwrap_or(1))),
        pull_policy: Some(PullPolicy {
            timeout_seconds: Some(r.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)),
            backoff_limit: Some(BACKOFF_LIMIT),
        }),
        completion_policy: CompletionPolicy {
            type_: Some(CompletionPolicyType::Always),
            active_deadline_seconds: None,
            ttl_seconds_after_finished: Some(TTL_SECONDS_AFTER_FINISHED),
        },
        sandbox_config: Some(SandboxConfig {
            labels: labels.clone(),
            annotations: r.template_annotations.clone(),
        }),
        // A node that still has the image (a rollback, #1419) costs nothing.
        image_pull_policy: Some(ImagePullPolicy::IfNotPresent),
    };
    let spec = ImagePullJobSpec {
        image: image.to_string(),
        template,
    };
    let mut job = ImagePullJob::new(&name, spec);
    job.metadata.namespace = Some(r.namespace.clone());
    job.metadata.labels = Some(labels);
    if !order.is_empty() {
        let order = BTreeMap::from([(NODE_ORDER_ANNOTATION.to_string(), order.to_string())]);
        job.metadata.annotations = Some(order);
    }
    job.metadata.owner_references = Some(vec![OwnerReference {
        api_version: r.api_version.clone(),
        kind: r.kind.api_kind().to_string(),
        name: r.name.clone(),
        uid: r.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    job
}

/// Template labels (so the job matches the workload's selector like everything it owns),
/// the update revision's hash, and our revision label.
fn job_labels(r: &Rollout, update: &Revision) -> BTreeMap<String, String> {
    let mut labels = r.template_labels.clone();
    // OpenKruise labels its jobs with the ControllerRevision's hash label; a Deployment's
    // ReplicaSets carry theirs as pod-template-hash.
    let hash_label = match r.kind {
        Kind::Deployment => POD_TEMPLATE_HASH,
        _ => REVISION_HASH_LABEL,
    };
    if !update.hash.is_empty() {
        labels.insert(hash_label.to_string(), update.hash.clone());
    }
    labels.insert(
        JOB_REVISION_LABEL.to_string(),
        revision_label_value(&update.name),
    );
    labels
}

/// The workload's selector, narrowed to pods not on the update revision. Pods carry the
/// revision's name or hash; values longer than a label value can be are left out (no pod
/// can carry them).
fn pod_selector(r: &Rollout, update: &Revision) -> kruise_api::ImagePullJobPodSelector {
    let mut values = vec![update.name.clone()];
    if !update.hash.is_empty() && update.hash != update.name {
        values.push(update.hash.clone());
    }
    values.retain(|v| v.len() <= 63);
    let mut selector = r.selector.clone();
    selector
        .match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: r.revision_key.clone(),
            operator: LabelSelectorOperator::NotIn,
            values: Some(values),
        });
    selector
}

/// A JSON merge patch putting `mark` on the update revision, with the current revision it was
/// decided against, and removing the other mark (a stale one from an earlier rollout).
pub fn mark_patch(r: &Rollout, mark: Mark) -> Value {
    let other = match mark {
        Mark::Created => IGNORED_MARK,
        Mark::Ignored => CREATED_MARK,
    };
    json!({
        "metadata": {
            "labels": { mark.label(): "true", other: null },
            "annotations": { MARK_FROM_ANNOTATION: r.current_revision.as_deref().unwrap_or_default() },
        }
    })
}
