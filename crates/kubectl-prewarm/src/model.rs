//! What the plugin reads (ImagePullJobs, NodeImages, Nodes, as the API serves them) and where a
//! job stands on each node it targets. The standing is the manager's own decision, made by its
//! code: [`JobInfo`] reads the job as the planner does, [`cell`] classifies one node from its
//! NodeImage spec and status, and the node order is the planner's [`JobState::key`]. Pure: the
//! clock is a field of the snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{
    CompletionPolicyType, ImagePullJob, ImageTagSpec, ImageTagStatus, NodeImage, TagPhase,
};
use kruise_manager::engine::jobs::{cell, Cell, JobInfo, JobState, OrderKey};
use kruise_manager::engine::spec::{spec_from_api, status_from_api, Interner};
use serde::Serialize;

/// The manager's settings the plugin cannot read from the API (its flags), at their defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--nodeimage-creation-delay`.
    pub creation_delay: Duration,
    /// `--node-response-timeout`.
    pub response_timeout: Duration,
    /// `--resolve-digests`: a job's tag waits for its digest before it reaches any node.
    pub resolve_digests: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            creation_delay: Duration::from_secs(30),
            response_timeout: Duration::from_secs(600),
            resolve_digests: true,
        }
    }
}

/// Everything the commands read, at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The jobs asked about first, then any others read (they only order the queue).
    pub jobs: Vec<ImagePullJob>,
    pub node_images: BTreeMap<String, NodeImage>,
    pub nodes: BTreeMap<String, Node>,
    pub now: Timestamp,
    pub settings: Settings,
}

/// A node's phase for one job, in the words `nodes` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Not written to the node yet (behind the job's parallelism, or the job stopped placing).
    Queued,
    /// Written; the daemon has not started the pull (or has not answered).
    Waiting,
    Pulling,
    Succeeded,
    Failed,
}

/// One target node of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: String,
    pub phase: Phase,
    /// 0–100, as the daemon reports it.
    pub progress: i32,
    /// `2/4` from the daemon's message, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the node entered its phase, as far as the objects say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    pub pinned: bool,
}

/// A job as the manager plans it, and its standing on each target node.
pub struct Analysis {
    pub info: JobInfo,
    /// Target node → its cell.
    pub cells: BTreeMap<String, Cell>,
}

/// Which of a job's selectors leaves out a node with `labels`, in words; `None` when the
/// selector takes it. A `podSelector` job is not decided here (it follows its pods).
pub fn selector_miss(
    job: &ImagePullJob,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    use kruise_manager::selector::matcher;
    let sel = job.spec.template.selector.as_ref()?;
    if let Some(names) = sel.names.as_ref().filter(|n| !n.is_empty()) {
        return (!names.iter().any(|n| n == node))
            .then(|| format!("selector.names lists {} node(s), not {node}", names.len()));
    }
    for (k, v) in sel.match_labels.iter().flatten() {
        let one = Some(BTreeMap::from([(k.clone(), v.clone())]));
        if !matcher(&one, &None)(labels) {
            return Some(format!(
                "selector.matchLabels wants {k}={v}; the node has {}",
                label_text(labels, k)
            ));
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        if !matcher(&None, &Some(vec![e.clone()]))(labels) {
            let values = e.values.as_deref().unwrap_or_default().join(",");
            return Some(format!(
                "selector.matchExpressions wants {} {:?} [{values}]; the node has {}",
                e.key,
                e.operator,
                label_text(labels, &e.key)
            ));
        }
    }
    None
}

fn label_text(labels: &BTreeMap<String, String>, key: &str) -> String {
    match labels.get(key) {
        Some(v) => format!("{key}={v}"),
        None => format!("no label {key}"),
    }
}

/// `(NodeImage key, tag)` of the job's image, or why it does not parse.
pub fn key_tag(info: &JobInfo) -> Result<(&str, &str), &str> {
    match &info.image {
        Ok((k, t)) => Ok((k, t)),
        Err(e) => Err(e),
    }
}

/// The job's entry in a NodeImage spec, when it owns one.
pub fn entry<'a>(info: &JobInfo, ni: &'a NodeImage) -> Option<&'a ImageTagSpec> {
    let (key, tag) = key_tag(info).ok()?;
    ni.spec.images.get(key)?.tags.iter().find(|t| {
        t.tag == tag
            && t.owner_references
                .iter()
                .any(|o| o.uid.as_deref() == Some(&*info.uid))
    })
}

/// The daemon's report of the job's tag on a node, whatever its version.
pub fn report<'a>(info: &JobInfo, ni: &'a NodeImage) -> Option<&'a ImageTagStatus> {
    let (key, tag) = key_tag(info).ok()?;
    ni.status
        .as_ref()?
        .image_statuses
        .get(key)?
        .tags
        .iter()
        .find(|t| t.tag == tag)
}

/// The daemon's report for the version the spec asks for.
pub fn current_report<'a>(info: &JobInfo, ni: &'a NodeImage) -> Option<&'a ImageTagStatus> {
    let version = entry(info, ni)?.version;
    report(info, ni).filter(|r| r.version == version)
}

/// Whether the manager targets `ni` for the job (its `is_target`): every live NodeImage the
/// selector takes; for a `podSelector` job, the nodes it has written to.
pub fn is_target(info: &JobInfo, ni: &NodeImage) -> bool {
    if ni.metadata.deletion_timestamp.is_some() || info.deleting {
        return false;
    }
    let job = &info.job;
    if job.spec.template.pod_selector.is_some() {
        return entry(info, ni).is_some();
    }
    let name = ni.metadata.name.as_deref().unwrap_or_default();
    let none = BTreeMap::new();
    let labels = ni.metadata.labels.as_ref().unwrap_or(&none);
    selector_miss(job, name, labels).is_none()
}

/// Reads the job as the planner does and classifies every target node.
pub fn analyse(snap: &Snapshot, job: &ImagePullJob) -> Analysis {
    let mut i = Interner::default();
    let mut info = JobInfo::new(Arc::new(job.clone()), &mut i);
    // As the manager's index reads it: only a manager that resolves digests waits for one.
    info.awaiting_digest &= snap.settings.resolve_digests;
    let mut cells = BTreeMap::new();
    for (name, ni) in &snap.node_images {
        if !is_target(&info, ni) {
            continue;
        }
        let spec = spec_from_api(&ni.spec, &mut i);
        let status = status_from_api(ni.status.as_ref(), &mut i);
        let (c, _) = cell(
            &info,
            &spec,
            &status,
            snap.settings.response_timeout,
            snap.now,
        );
        cells.insert(name.clone(), c);
    }
    Analysis { info, cells }
}

/// The live, unfinished jobs of the snapshot, read as the planner reads them.
fn live_jobs(snap: &Snapshot) -> Vec<JobInfo> {
    let mut i = Interner::default();
    snap.jobs
        .iter()
        .map(|j| JobInfo::new(Arc::new(j.clone()), &mut i))
        .filter(|info| !info.deleting && !info.completed())
        .collect()
}

/// How many of `jobs` target `node`: the planner's "demand", which orders nodes.
pub fn demand(snap: &Snapshot, jobs: &[JobInfo], node: &str) -> u32 {
    let Some(ni) = snap.node_images.get(node) else {
        return 0;
    };
    jobs.iter().filter(|info| is_target(info, ni)).count() as u32
}

/// The job's queued nodes in the order the manager places them.
pub fn queue(snap: &Snapshot, a: &Analysis) -> Vec<String> {
    let state = JobState::new(a.info.clone());
    let jobs = live_jobs(snap);
    let mut keys: Vec<OrderKey> = a
        .cells
        .iter()
        .filter(|(_, c)| matches!(c, Cell::Unplaced))
        .map(|(n, _)| state.key(&Arc::from(n.as_str()), demand(snap, &jobs, n)))
        .collect();
    keys.sort();
    keys.into_iter().map(|k| k.2.to_string()).collect()
}

/// `attempt 2 of 4 failed: …` → `2/4`; `failed after 4 attempts: …` → `4/4`.
pub fn attempts(message: &str) -> Option<String> {
    let words: Vec<&str> = message.split_whitespace().collect();
    for w in words.windows(4) {
        if w[0] == "attempt" && w[2] == "of" {
            let of = w[3].trim_end_matches(|c: char| !c.is_ascii_digit());
            return Some(format!("{}/{of}", w[1]));
        }
        if w[0] == "failed" && w[1] == "after" && w[3].starts_with("attempt") {
            return Some(format!("{}/{}", w[2], w[2]));
        }
    }
    None
}

/// One row per target node, by node name.
pub fn rows(snap: &Snapshot, a: &Analysis) -> Vec<NodeRow> {
    a.cells
        .iter()
        .map(|(node, c)| row(snap, a, node, *c))
        .collect()
}

fn row(snap: &Snapshot, a: &Analysis, node: &str, c: Cell) -> NodeRow {
    let ni = &snap.node_images[node];
    let placed = entry(&a.info, ni);
    let rep = current_report(&a.info, ni);
    let phase = match c {
        Cell::Unplaced | Cell::Reserved(_) => Phase::Queued,
        Cell::Succeeded => Phase::Succeeded,
        Cell::Failed(_) => Phase::Failed,
        Cell::Pending if rep.is_some_and(|r| r.phase == TagPhase::Pulling) => Phase::Pulling,
        Cell::Pending => Phase::Waiting,
    };
    let message = rep.and_then(|r| r.message.clone()).or_else(|| match c {
        Cell::Failed(f) => Some(crate::why::failure_text(f).to_string()),
        _ => None,
    });
    let since = rep
        .and_then(|r| r.completion_time.as_ref().or(r.start_time.as_ref()))
        .or(placed.and_then(|p| p.created_at.as_ref()))
        .map(|t| t.0);
    NodeRow {
        node: node.to_string(),
        phase,
        progress: match phase {
            Phase::Succeeded => 100,
            _ => rep.map_or(0, |r| r.progress),
        },
        attempts: message.as_deref().and_then(attempts),
        message,
        since,
        pinned: rep.is_some_and(|r| r.pinned),
    }
}

/// Whether a job is done: completed (an `Always` job), or a `Never` job with every current
/// target finished.
pub fn finished(job: &ImagePullJob) -> bool {
    let Some(s) = &job.status else {
        return false;
    };
    if s.completion_time.is_some() {
        return true;
    }
    job.spec.template.completion_type() == CompletionPolicyType::Never
        && s.desired > 0
        && s.active == 0
        && s.succeeded + s.failed >= s.desired
}

/// The image's size as the kubelets report it (`Node.status.images`), if any node lists it.
pub fn image_size(snap: &Snapshot, job: &ImagePullJob) -> Option<u64> {
    let wanted = names_of(job);
    snap.nodes
        .values()
        .filter_map(|n| n.status.as_ref()?.images.as_ref())
        .flatten()
        .find(|img| {
            img.names
                .iter()
                .flatten()
                .any(|n| wanted.iter().any(|w| w == n))
        })
        .and_then(|img| u64::try_from(img.size_bytes?).ok())
}

/// The names a runtime may list the job's image under.
fn names_of(job: &ImagePullJob) -> Vec<String> {
    let mut out = vec![job.spec.image.clone()];
    if let Ok(r) = kruise_api::imageref::ImageRef::parse(&job.spec.image) {
        out.push(r.to_string());
        if let Some(d) = job.status.as_ref().and_then(|s| s.digest.as_deref()) {
            out.push(format!("{}@{d}", r.name()));
        }
    }
    out
}
