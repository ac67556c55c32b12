//! The controller's in-memory view, fed by watch events: workloads by uid, and their
//! revisions, pods and pre-download jobs indexed by the uid of the object that controls them.
//! Applying an event returns the workloads it may change the decision of; nothing else is
//! reconciled. Objects are kept as lean as the decisions allow: a pod is a few strings, a
//! revision its images and marks ([`RevisionRecord`]), a workload its JSON without the pod
//! template's spec ([`lean_workload`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kruise_api::ImagePullJob;
use serde::Deserialize;
use serde_json::Value;

use super::model::{ordinal, Kind, PodView};
use super::revisions::RevisionRecord;
use super::ExistingJob;

pub type Uid = String;

/// A watch event, as the controller's watches deliver them.
#[derive(Debug)]
pub enum Event<T> {
    Init,
    Apply(T),
    Delete(T),
    InitDone,
}

impl<A> Event<A> {
    pub fn map<B>(self, f: impl FnOnce(A) -> B) -> Event<B> {
        match self {
            Event::Init => Event::Init,
            Event::Apply(a) => Event::Apply(f(a)),
            Event::Delete(a) => Event::Delete(f(a)),
            Event::InitDone => Event::InitDone,
        }
    }
}

/// A Pod, as pre-download reads it.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RolloutPod {
    #[serde(deserialize_with = "crate::lean::lean_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PodStatus {
    pub phase: Option<String>,
    #[serde(default)]
    pub conditions: Vec<PodCondition>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

impl RolloutPod {
    /// Only the labels that name a revision are kept: a pod costs a few strings.
    pub fn trimmed(mut self) -> Self {
        if let Some(l) = &mut self.metadata.labels {
            l.retain(|k, _| {
                k == super::model::CONTROLLER_REVISION_HASH || k == super::model::POD_TEMPLATE_HASH
            });
        }
        if let Some(o) = &mut self.metadata.owner_references {
            o.retain(|o| o.controller == Some(true));
        }
        // The resourceVersion changes on every write; the decision does not.
        self.metadata.resource_version = None;
        self.status
            .conditions
            .retain(|c| c.type_ == "Ready" && c.status == "True");
        self
    }

    pub fn view(&self, revision_key: &str) -> PodView {
        let name = self.metadata.name.clone().unwrap_or_default();
        PodView {
            ordinal: ordinal(&name),
            name,
            node: self.spec.node_name.clone().filter(|n| !n.is_empty()),
            revision: self
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(revision_key).cloned()),
            ready: self.status.conditions.iter().any(|c| c.type_ == "Ready"),
            terminating: self.metadata.deletion_timestamp.is_some()
                || matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed")),
            created: self
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
        }
    }
}

crate::lean::lean_resource!(
    RolloutPod,
    "Pod",
    "pods",
    kube::core::NamespaceResourceScope
);

/// The uid of the object that controls `refs`, when it is one of `kinds`.
pub fn controller_of(refs: &[OwnerReference], kinds: &[&str]) -> Option<Uid> {
    refs.iter()
        .find(|o| o.controller == Some(true) && kinds.contains(&o.kind.as_str()))
        .map(|o| o.uid.clone())
}

/// A ControllerRevision or ReplicaSet as its watch decodes it: its uid, the workload it
/// belongs to, and what the adapters read of it.
#[derive(Debug)]
pub struct WatchedRevision {
    pub uid: Uid,
    pub owner: Option<Uid>,
    pub record: RevisionRecord,
}

impl WatchedRevision {
    /// A ControllerRevision (as JSON) of a CloneSet, StatefulSet or DaemonSet.
    pub fn controller_revision(v: &Value) -> Self {
        Self {
            uid: uid_of(v),
            owner: controller_of(&owner_refs(v), REVISION_OWNERS),
            record: RevisionRecord::controller_revision(v),
        }
    }

    /// A ReplicaSet (as JSON) of a Deployment.
    pub fn replica_set(v: &Value) -> Self {
        Self {
            uid: uid_of(v),
            owner: controller_of(&owner_refs(v), &["Deployment"]),
            record: RevisionRecord::replica_set(v),
        }
    }
}

fn owner_refs(v: &Value) -> Vec<OwnerReference> {
    v.pointer("/metadata/ownerReferences")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

fn uid_of(v: &Value) -> Uid {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Objects of one watch by uid, with the uid of their controller, surviving a relist.
struct Table<T> {
    items: HashMap<Uid, (Option<Uid>, T)>,
    by_owner: HashMap<Uid, BTreeSet<Uid>>,
    relisted: Option<HashSet<Uid>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            items: HashMap::new(),
            by_owner: HashMap::new(),
            relisted: None,
        }
    }
}

impl<T: PartialEq> Table<T> {
    /// Stores `item`; returns the owners whose view changed (old and new), none if equal.
    fn upsert(&mut self, uid: Uid, owner: Option<Uid>, item: T) -> Vec<Uid> {
        if let Some(seen) = &mut self.relisted {
            seen.insert(uid.clone());
        }
        let new = (owner, item);
        if self.items.get(&uid) == Some(&new) {
            return Vec::new();
        }
        let mut touched = self.remove(&uid);
        if let Some(o) = &new.0 {
            self.by_owner
                .entry(o.clone())
                .or_default()
                .insert(uid.clone());
            touched.push(o.clone());
        }
        self.items.insert(uid, new);
        touched
    }

    fn remove(&mut self, uid: &Uid) -> Vec<Uid> {
        let Some((owner, _)) = self.items.remove(uid) else {
            return Vec::new();
        };
        let Some(o) = owner else { return Vec::new() };
        if let Some(set) = self.by_owner.get_mut(&o) {
            set.remove(uid);
            if set.is_empty() {
                self.by_owner.remove(&o);
            }
        }
        vec![o]
    }

    fn init(&mut self) {
        self.relisted = Some(HashSet::new());
    }

    /// The relist is complete: what it did not list is gone.
    fn init_done(&mut self) -> Vec<Uid> {
        let Some(seen) = self.relisted.take() else {
            return Vec::new();
        };
        let gone: Vec<Uid> = self
            .items
            .keys()
            .filter(|u| !seen.contains(*u))
            .cloned()
            .collect();
        gone.iter().flat_map(|u| self.remove(u)).collect()
    }

    fn owned(&self, owner: &Uid) -> impl Iterator<Item = &T> {
        self.by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|u| self.items.get(u).map(|(_, t)| t))
    }

    fn apply(&mut self, e: Event<(Uid, Option<Uid>, T)>) -> Vec<Uid> {
        match e {
            Event::Init => {
                self.init();
                Vec::new()
            }
            Event::Apply((uid, owner, item)) => self.upsert(uid, owner, item),
            Event::Delete((uid, _, _)) => self.remove(&uid),
            Event::InitDone => self.init_done(),
        }
    }
}

/// Owner kinds whose ControllerRevisions are kept.
const REVISION_OWNERS: &[&str] = &["CloneSet", "StatefulSet", "DaemonSet"];
/// Owner kinds whose pods are kept (a Deployment's pods belong to its ReplicaSets).
const POD_OWNERS: &[&str] = &["CloneSet", "StatefulSet", "DaemonSet", "ReplicaSet"];
const JOB_OWNERS: &[&str] = &["CloneSet", "StatefulSet", "DaemonSet", "Deployment"];

/// Everything the controller knows.
#[derive(Default)]
pub struct Store {
    workloads: HashMap<Kind, Table<Arc<Value>>>,
    revisions: Table<RevisionRecord>,
    replicasets: Table<RevisionRecord>,
    pods: Table<RolloutPod>,
    jobs: Table<ExistingJob>,
    /// Workload uid → kind (which table holds it).
    kinds: HashMap<Uid, Kind>,
}

impl Store {
    /// A workload event (its object as JSON, apiVersion and kind set); returns the workloads
    /// to reconcile. A workload is indexed under its own uid, so the table reports it (and,
    /// after a relist, the ones gone) as touched.
    pub fn workload(&mut self, kind: Kind, e: Event<Value>) -> Vec<Uid> {
        let e = e.map(|v| {
            let uid = uid_of(&v);
            (uid.clone(), Some(uid), Arc::new(lean_workload(v)))
        });
        if let Event::Apply((uid, _, _)) = &e {
            self.kinds.insert(uid.clone(), kind);
        }
        let touched = self.workloads.entry(kind).or_default().apply(e);
        for uid in &touched {
            if !self.workloads[&kind].items.contains_key(uid) {
                self.kinds.remove(uid);
            }
        }
        touched
    }

    /// The kind's CRD is gone: its workloads are forgotten (their jobs stay until their owner
    /// is deleted, which the garbage collector does).
    pub fn forget_kind(&mut self, kind: Kind) {
        if let Some(t) = self.workloads.remove(&kind) {
            for uid in t.items.keys() {
                self.kinds.remove(uid);
            }
        }
    }

    pub fn revision(&mut self, e: Event<WatchedRevision>) -> Vec<Uid> {
        self.revisions.apply(e.map(|r| (r.uid, r.owner, r.record)))
    }

    pub fn replicaset(&mut self, e: Event<WatchedRevision>) -> Vec<Uid> {
        self.replicasets
            .apply(e.map(|r| (r.uid, r.owner, r.record)))
    }

    pub fn pod(&mut self, e: Event<RolloutPod>) -> Vec<Uid> {
        let e = e.map(|p| {
            let owner = controller_of(
                p.metadata.owner_references.as_deref().unwrap_or_default(),
                POD_OWNERS,
            );
            (
                p.metadata.uid.clone().unwrap_or_default(),
                owner,
                p.trimmed(),
            )
        });
        let owners = self.pods.apply(e);
        // A ReplicaSet's pods belong to its Deployment.
        owners
            .into_iter()
            .map(|o| self.deployment_of(&o).unwrap_or(o))
            .collect()
    }

    pub fn job(&mut self, e: Event<ImagePullJob>) -> Vec<Uid> {
        let e = e.map(|j| {
            let owner = j
                .metadata
                .owner_references
                .as_deref()
                .and_then(|r| controller_of(r, JOB_OWNERS));
            let existing = ExistingJob {
                name: j.metadata.name.clone().unwrap_or_default(),
                image: j.spec.image.clone(),
                revision: j
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(super::model::JOB_REVISION_LABEL).cloned()),
            };
            (j.metadata.uid.clone().unwrap_or_default(), owner, existing)
        });
        self.jobs.apply(e)
    }

    fn deployment_of(&self, replicaset: &Uid) -> Option<Uid> {
        self.replicasets.items.get(replicaset)?.0.clone()
    }

    pub fn kind(&self, uid: &Uid) -> Option<Kind> {
        self.kinds.get(uid).copied()
    }

    pub fn workload_object(&self, uid: &Uid) -> Option<Arc<Value>> {
        let kind = self.kinds.get(uid)?;
        Some(self.workloads.get(kind)?.items.get(uid)?.1.clone())
    }

    /// The workload's revisions: its ControllerRevisions, or a Deployment's ReplicaSets.
    pub fn revisions_of(&self, uid: &Uid) -> Vec<&RevisionRecord> {
        let table = if self.kinds.get(uid) == Some(&Kind::Deployment) {
            &self.replicasets
        } else {
            &self.revisions
        };
        table.owned(uid).collect()
    }

    /// The workload's pods (a Deployment's through its ReplicaSets) as the rollout sees them.
    pub fn pods_of(&self, uid: &Uid, revision_key: &str) -> Vec<PodView> {
        let mut owners = vec![uid.clone()];
        if self.kinds.get(uid) == Some(&Kind::Deployment) {
            owners.extend(
                self.replicasets
                    .by_owner
                    .get(uid)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        let mut pods: Vec<PodView> = owners
            .iter()
            .flat_map(|o| self.pods.owned(o))
            .map(|p| p.view(revision_key))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    pub fn jobs_of(&self, uid: &Uid) -> Vec<ExistingJob> {
        self.jobs.owned(uid).cloned().collect()
    }

    /// Workloads held, by kind (for the metrics).
    pub fn counts(&self) -> Vec<(Kind, usize)> {
        Kind::ALL
            .iter()
            .map(|k| (*k, self.workloads.get(k).map_or(0, |t| t.items.len())))
            .collect()
    }
}

/// A workload's JSON without what no decision reads and what makes it large: managed fields,
/// the last-applied annotation, and its pod template's spec but for `imagePullSecrets` (the
/// images are read from its revisions).
pub fn lean_workload(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    if let Some(spec) = v
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        spec.retain(|k, _| k == "imagePullSecrets");
    }
    v
}
