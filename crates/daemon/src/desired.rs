//! Pure: what the node's NodeImage asks for, and which workers to start and stop to get there.
//! No I/O and no clock; `controller` feeds it the watched object and applies its answer.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ObjectReference;
use kruise_api::imageref::pull_reference;
use kruise_api::{
    ImagePullPolicy, ImageTagStatus, NodeImage, ReferenceObject, SandboxConfig, TagPhase,
};

/// `(image key, tag)`: one worker each.
pub type TagKey = (String, String);

/// Everything one pull round needs, taken from a NodeImage tag entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TagTask {
    pub image: String,
    pub tag: String,
    pub version: i64,
    /// The reference to pull: `key:tag`, `key@sha256:…` or `key:tag@sha256:…`; with a digest
    /// the manager resolved, `key@sha256:…` of that digest.
    pub reference: String,
    /// With a resolved digest: `key:tag`, the name the digest pull is given afterwards (the name
    /// pods use). A runtime that cannot name images pulls this instead.
    pub name_as: Option<String>,
    /// Pin the image against the kubelet's image GC while the tag is in the spec.
    pub pin: bool,
    pub policy: ImagePullPolicy,
    pub timeout: Duration,
    pub backoff_limit: u32,
    /// `createdAt + activeDeadlineSeconds`: no attempt runs past it.
    pub deadline: Option<SystemTime>,
    pub pull_secrets: Vec<ReferenceObject>,
    pub sandbox: SandboxConfig,
    pub owners: Vec<ObjectReference>,
    /// The NodeImage's uid, so its Events are listed by `kubectl describe nodeimage`.
    pub node_image_uid: Option<String>,
    /// Peers to copy the image's blobs from before pulling, in order (planned by the manager).
    pub sources: Vec<kruise_api::PeerSource>,
}

impl TagTask {
    pub fn key(&self) -> TagKey {
        (self.image.clone(), self.tag.clone())
    }
}

/// Every tag the spec lists.
pub fn desired_tags(ni: &NodeImage) -> BTreeMap<TagKey, TagTask> {
    let mut out = BTreeMap::new();
    for (image, spec) in &ni.spec.images {
        for t in &spec.tags {
            let policy = t.pull_policy.clone().unwrap_or_default();
            let created = t.created_at.as_ref().map(|c| SystemTime::from(c.0));
            let deadline = match (created, policy.active_deadline_seconds) {
                (Some(c), Some(ads)) if ads > 0 => c.checked_add(Duration::from_secs(ads as u64)),
                _ => None,
            };
            let (reference, name_as) = references(image, &t.tag, t.digest.as_deref());
            let task = TagTask {
                image: image.clone(),
                tag: t.tag.clone(),
                version: t.version,
                reference,
                name_as,
                pin: t.pin,
                policy: t.image_pull_policy.unwrap_or_default(),
                timeout: Duration::from_secs(policy.timeout_seconds().max(1) as u64),
                backoff_limit: policy.backoff_limit().max(0) as u32,
                deadline,
                pull_secrets: spec.pull_secrets.clone(),
                sandbox: spec.sandbox_config.clone().unwrap_or_default(),
                owners: t.owner_references.clone(),
                node_image_uid: ni.metadata.uid.clone(),
                sources: t.sources.clone(),
            };
            out.insert(task.key(), task);
        }
    }
    out
}

/// What to pull and what to name it: `key:tag` as written, or with the manager's `digest`,
/// `key@digest` named `key:tag` afterwards (a tag that carries its own digest keeps it).
fn references(key: &str, tag: &str, digest: Option<&str>) -> (String, Option<String>) {
    let written = pull_reference(key, tag);
    match digest {
        Some(d) if !tag.contains(':') && d.starts_with("sha256:") => {
            (format!("{key}@{d}"), Some(written))
        }
        _ => (written, None),
    }
}

impl TagTask {
    /// The name a pin goes on: `key:tag` (the name pods use), or the digest reference written.
    /// containerd keeps a pull of `key:tag@sha256:…` under `key@sha256:…` only (it drops the
    /// tag), so that is the name pinned for such an entry.
    pub fn pod_reference(&self) -> String {
        if let Some(name) = &self.name_as {
            return name.clone();
        }
        match kruise_api::imageref::ImageRef::parse(&self.reference) {
            Ok(r) if r.tag().is_some() && r.digest().is_some() => {
                format!("{}@{}", r.name(), r.digest().unwrap_or_default())
            }
            _ => self.reference.clone(),
        }
    }
}

/// Results already reported for the spec version, which a (re)started worker adopts instead of
/// pulling again: finished tags (Succeeded or Failed, with a completion time) only.
pub fn finished_statuses(ni: &NodeImage) -> BTreeMap<TagKey, ImageTagStatus> {
    let mut out = BTreeMap::new();
    for (image, status) in ni.status.iter().flat_map(|s| &s.image_statuses) {
        for t in &status.tags {
            let finished = matches!(t.phase, TagPhase::Succeeded | TagPhase::Failed)
                && t.completion_time.is_some();
            if finished {
                out.insert((image.clone(), t.tag.clone()), t.clone());
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a worker; `adopt` is a finished result of the same version to keep.
    Start {
        task: Box<TagTask>,
        adopt: Option<ImageTagStatus>,
    },
    /// Hand a running worker its tag's changed entry of the same version (pull secrets, pull
    /// policy, sandbox config, owners): used from its next attempt on, without cancelling a pull.
    Update { task: Box<TagTask> },
    /// Stop (and cancel) the worker; `removed` when the tag left the spec (its status goes too).
    Stop { key: TagKey, removed: bool },
}

/// The actions that turn `running` (key → the task its worker has) into `desired`.
pub fn plan(
    running: &BTreeMap<TagKey, TagTask>,
    desired: &BTreeMap<TagKey, TagTask>,
    finished: &BTreeMap<TagKey, ImageTagStatus>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (key, current) in running {
        match desired.get(key) {
            None => actions.push(Action::Stop {
                key: key.clone(),
                removed: true,
            }),
            Some(t) if t.version != current.version => actions.push(Action::Stop {
                key: key.clone(),
                removed: false,
            }),
            Some(t) if t != current => actions.push(Action::Update {
                task: Box::new(t.clone()),
            }),
            Some(_) => {}
        }
    }
    for (key, task) in desired {
        if running.get(key).map(|t| t.version) == Some(task.version) {
            continue;
        }
        let adopt = finished
            .get(key)
            .filter(|s| s.version == task.version)
            .cloned();
        actions.push(Action::Start {
            task: Box::new(task.clone()),
            adopt,
        });
    }
    actions
}

#[cfg(test)]
mod tests;
