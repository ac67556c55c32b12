//! Watch events into the engine's index: each kind's records updated, and only what an event
//! really changed marked for the next round (a Node whose labels or readiness changed, or for
//! its address the jobs waiting for a seed, a NodeImage whose labels, spec or per-tag results
//! changed, or for its bytes alone the statuses of the jobs that count them, a job, the
//! podSelector jobs a Pod's move concerns, the secrets). Relists (`Init` … `InitDone`) delete
//! what they no longer list.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImageListPullJob, ImagePullJob, NodeImage};
use kube::ResourceExt;

use super::jobs::{JobInfo, JobState};
use super::lifecycle::NodeRec;
use super::spec::{spec_from_api, status_from_api, Name};
use super::{Engine, Event, Input, Kind, NodeImageRec, PodRec};
use crate::lean::{LeanNode, LeanPod};

/// Whether resourceVersion `a` is older than or the same as `b` (etcd revisions are numbers; an
/// unparsable one is taken as newer, so nothing is ever stuck).
pub fn not_newer(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a <= b,
        _ => false,
    }
}

fn source_type(kind: Kind) -> &'static str {
    match kind {
        Kind::DockerCfg => "kubernetes.io/dockercfg",
        _ => "kubernetes.io/dockerconfigjson",
    }
}

fn secret_key(s: &Secret) -> String {
    format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())
}

impl Engine {
    /// Takes one input; marks what it changed.
    pub fn input(&mut self, input: Input, now: Timestamp) {
        self.peers_at(now);
        match input {
            Input::Node(e) => self.event(Kind::Node, e, now, |n| n.name_any()),
            Input::NodeImage(e) => self.event(Kind::NodeImage, e, now, |n| n.name_any()),
            Input::Job(e) => self.event(Kind::Job, e, now, super::job_key),
            Input::ListJob(e) => self.event(Kind::ListJob, e, now, |l| l.uid().unwrap_or_default()),
            Input::Pod(e) => self.event(Kind::Pod, e, now, |p| {
                format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
            }),
            Input::DockerConfigJson(e) => self.event(Kind::DockerConfigJson, e, now, secret_key),
            Input::DockerCfg(e) => self.event(Kind::DockerCfg, e, now, secret_key),
            Input::Copy(e) => self.event(Kind::Copy, e, now, |s| s.name_any()),
            Input::Done(d) => self.done(d, now),
            Input::Lead(leading) => {
                let became = leading && !self.leading;
                self.leading = leading;
                if became {
                    self.mark_all(now);
                }
            }
        }
    }

    fn event<K: Applied>(
        &mut self,
        kind: Kind,
        e: Event<K>,
        now: Timestamp,
        key: impl Fn(&K) -> String,
    ) {
        match e {
            Event::Apply(o) => o.apply(self, kind, now),
            Event::Delete(o) => {
                let k = key(&o);
                self.delete(kind, &k, now);
            }
            Event::Init => {
                self.relisting.insert(kind, HashSet::new());
            }
            Event::InitApply(o) => {
                self.relisting.entry(kind).or_default().insert(key(&o));
                o.apply(self, kind, now);
            }
            Event::InitDone => {
                let seen = self.relisting.remove(&kind).unwrap_or_default();
                for k in self.keys(kind) {
                    if !seen.contains(&k) {
                        self.delete(kind, &k, now);
                    }
                }
                let was_ready = self.ready();
                self.listed.insert(kind);
                if !was_ready && self.ready() {
                    self.mark_all(now);
                }
            }
        }
    }

    fn keys(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Node => self.nodes.keys().map(|k| k.to_string()).collect(),
            Kind::NodeImage => self.images.keys().map(|k| k.to_string()).collect(),
            Kind::Job => self.job_uids.keys().map(|k| k.to_string()).collect(),
            Kind::ListJob => self.lists.keys().map(|k| k.to_string()).collect(),
            Kind::Pod => self
                .pods
                .keys()
                .map(|(ns, n)| format!("{ns}/{n}"))
                .collect(),
            Kind::DockerConfigJson | Kind::DockerCfg => {
                let type_ = source_type(kind);
                self.sources
                    .iter()
                    .filter(|(_, s)| s.type_.as_deref() == Some(type_))
                    .map(|(k, _)| k.clone())
                    .collect()
            }
            Kind::Copy => self.copies.keys().cloned().collect(),
        }
    }

    fn delete(&mut self, kind: Kind, key: &str, now: Timestamp) {
        match kind {
            Kind::Node => {
                if self.nodes.remove(key).is_some() {
                    let name = self.interner.name(key);
                    // Without its address, the node serves no peer.
                    self.wake_holder(&name);
                    self.dirty_lifecycle.insert(name);
                    self.mark(now);
                }
            }
            Kind::NodeImage => self.delete_node_image(key, now),
            Kind::Job => {
                if let Some(uid) = self.job_uids.get(key).cloned() {
                    self.delete_job(&uid, now);
                }
            }
            Kind::ListJob => {
                if self.lists.remove(key).is_some() {
                    self.mark(now);
                }
            }
            Kind::Pod => {
                let (ns, name) = key.split_once('/').unwrap_or(("", key));
                let k = (self.interner.name(ns), self.interner.name(name));
                if let Some(old) = self.pods.remove(&k) {
                    self.pod_moved(&k.0, Some(&old), None, now);
                }
            }
            Kind::DockerConfigJson | Kind::DockerCfg => {
                if self.sources.remove(key).is_some() {
                    self.secrets_dirty = true;
                    self.mark(now);
                }
            }
            Kind::Copy => {
                if self.copies.remove(key).is_some() {
                    self.secrets_dirty = true;
                    self.mark(now);
                }
            }
        }
    }

    /// Everything to be replanned: the engine just became ready, or the leader.
    pub(super) fn mark_all(&mut self, now: Timestamp) {
        self.dirty_jobs.extend(self.jobs.keys().cloned());
        self.dirty_lifecycle.extend(self.nodes.keys().cloned());
        self.dirty_lifecycle.extend(self.images.keys().cloned());
        self.dirty_lists.extend(self.lists.keys().cloned());
        self.unknown_owners.extend(self.images.keys().cloned());
        self.secrets_dirty = true;
        self.mark(now);
    }

    pub(super) fn apply_node(&mut self, n: &LeanNode, now: Timestamp) {
        let name = self.interner.name(&n.name_any());
        let rec = NodeRec {
            uid: n.uid().unwrap_or_default(),
            labels: n.labels().clone(),
            ready_since: n.ready_since(),
            address: n.internal_ip(),
        };
        // A heartbeat: nothing the decisions read changed.
        let old = self.nodes.get(&name);
        if old == Some(&rec) {
            return;
        }
        let lifecycle = old.is_none_or(|o| {
            (&o.uid, &o.labels, o.ready_since) != (&rec.uid, &rec.labels, rec.ready_since)
        });
        let address = old.map(|o| o.address) != Some(rec.address);
        self.nodes.insert(name.clone(), rec);
        if address {
            // The node may serve peers now (or from another address, for pulls that start).
            self.wake_holder(&name);
        }
        if lifecycle {
            self.dirty_lifecycle.insert(name);
        }
        self.mark(now);
    }

    /// A NodeImage as watched or as our write returned it.
    pub(super) fn apply_node_image(&mut self, ni: &NodeImage, ours: bool, now: Timestamp) {
        let name = self.interner.name(&ni.name_any());
        let uid = ni.uid().unwrap_or_default();
        let rv = ni.resource_version().unwrap_or_default();
        if let Some(old) = self.images.get(&name) {
            if old.uid == uid && not_newer(&rv, &old.resource_version) {
                return;
            }
            if old.uid != uid {
                self.delete_node_image(&name, now);
            }
        }
        let roles = self.peer_roles(&name);
        let counted = self.bytes_out(&name);
        let spec = spec_from_api(&ni.spec, &mut self.interner);
        let status = status_from_api(ni.status.as_ref(), &mut self.interner);
        let labels = ni.labels().clone();
        let deleting = ni.metadata.deletion_timestamp.is_some();
        let old = self.images.remove(&name);
        let before = self.owners_of(&name);
        let mut generation = 1;
        let mut view_changed = true;
        match &old {
            None => {
                self.dirty_membership.insert(name.clone());
                self.dirty_lifecycle.insert(name.clone());
                self.unknown_owners.insert(name.clone());
            }
            Some(old) => {
                generation = old.spec_generation;
                if old.labels != labels || old.deleting != deleting {
                    self.dirty_membership.insert(name.clone());
                    self.dirty_lifecycle.insert(name.clone());
                }
                let spec_changed = old.spec != spec;
                if spec_changed {
                    generation += 1;
                    self.unknown_owners.insert(name.clone());
                }
                // Bytes alone are no decision: they only move the sums of the jobs concerned.
                view_changed = spec_changed || !old.status.same_results(&status);
                // A patch that met a conflict goes out again with the newer version.
                if self.writes.conflicted.get(&name).is_some_and(|c| *c != rv) {
                    self.writes.conflicted.remove(&name);
                    self.dirty_writes.insert(name.clone());
                }
            }
        }
        // A planned spec: confirmed, rebased onto our own write, or dropped when somebody else
        // wrote the spec it was planned from.
        let spec_changed = old.as_ref().is_none_or(|o| o.spec != spec);
        if let Some(p) = self.planned.get_mut(&name) {
            if p.spec == spec && p.labels.as_ref().is_none_or(|l| *l == labels) {
                self.planned.remove(&name);
            } else if spec_changed && ours {
                p.base = generation;
            } else if spec_changed {
                self.planned.remove(&name);
                view_changed = true;
            }
        }
        self.images.insert(
            name.clone(),
            NodeImageRec {
                uid,
                resource_version: rv,
                labels,
                deleting,
                spec,
                spec_generation: generation,
                status,
            },
        );
        self.bytes_back(&name, counted, now);
        if view_changed {
            self.view_changed(&name, before, roles);
            self.mark(now);
        }
    }

    pub(super) fn delete_node_image(&mut self, name: &str, now: Timestamp) {
        let name = self.interner.name(name);
        let before = self.owners_of(&name);
        let roles = self.peer_roles(&name);
        let counted = self.bytes_out(&name);
        if self.images.remove(&name).is_none() {
            return;
        }
        self.bytes_back(&name, counted, now);
        self.planned.remove(&name);
        self.writes.conflicted.remove(&name);
        self.view_changed(&name, before, roles);
        self.dirty_membership.insert(name.clone());
        self.dirty_lifecycle.insert(name);
        self.mark(now);
    }

    pub(super) fn apply_job(&mut self, job: ImagePullJob, now: Timestamp) {
        let job = Arc::new(job);
        let key = self.interner.name(&super::job_key(&job));
        let uid = self
            .interner
            .name(job.metadata.uid.as_deref().unwrap_or_default());
        if let Some(old_uid) = self.job_uids.get(&key).cloned().filter(|u| *u != uid) {
            // Deleted and re-created under the same name: the old one's tags go.
            self.delete_job(&old_uid, now);
        }
        for o in job.owner_references() {
            self.dirty_lists.insert(self.interner.name(&o.uid));
        }
        let mut info = JobInfo::new(job.clone(), &mut self.interner);
        // Without resolution the nodes resolve the tag: nothing to wait for; nor after tries
        // whose result the API server did not keep.
        let tries = self.digest_tries.get(&uid).copied().unwrap_or(0);
        info.awaiting_digest &=
            self.settings.resolve_digests && tries <= super::writes::MAX_DIGEST_TRIES;
        if !info.awaiting_digest {
            self.digest_tries.remove(&uid);
        }
        if info.digest.is_some() && !info.always_complete && !self.jobs.contains_key(&uid) {
            // Known already (a restart, a new leader): its periodic check starts now.
            let every = self.settings.digest_check_interval;
            self.timers.at(
                super::round::after(now, every),
                super::timers::Timer::Resolve(uid.clone()),
            );
        }
        match self.jobs.get_mut(&uid) {
            None => {
                self.job_uids.insert(key, uid.clone());
                self.jobs.insert(uid.clone(), JobState::new(info));
                self.dirty_jobs.insert(uid.clone());
                self.secrets_dirty = true;
            }
            Some(state) => {
                let old = &state.info.job;
                if job
                    .resource_version()
                    .is_some_and(|rv| old.resource_version().is_some_and(|o| not_newer(&rv, &o)))
                {
                    return;
                }
                let spec_changed = old.spec != job.spec;
                let deleting = info.deleting != state.info.deleting;
                let completed = info.completed() != state.info.completed();
                // A digest arriving lets the job place; a pin change rewrites its entries.
                let guarantees = info.awaiting_digest != state.info.awaiting_digest
                    || info.digest != state.info.digest
                    || info.pin != state.info.pin;
                if guarantees {
                    self.dirty_place.insert(uid.clone());
                    self.dirty_jobs.insert(uid.clone());
                    // Its entries everywhere get the new pin (and digest) in their final touches.
                    if let Some(nodes) = self.owned.get(&uid) {
                        self.to_finish.extend(nodes.iter().cloned());
                    }
                    // The cells on nodes that hold another digest are placed again.
                    self.dirty_cells
                        .extend(state.cells.keys().map(|n| (uid.clone(), n.clone())));
                }
                if info.digest.is_some()
                    && info.digest != state.info.digest
                    && !info.always_complete
                {
                    let every = self.settings.digest_check_interval;
                    self.timers.at(
                        super::round::after(now, every),
                        super::timers::Timer::Resolve(uid.clone()),
                    );
                }
                if old.spec.template.pull_secrets != job.spec.template.pull_secrets {
                    self.secrets_dirty = true;
                }
                let image_changed = info.image != state.info.image;
                state.info = info;
                if image_changed {
                    // Its cells now count another tag's reports.
                    self.recount_bytes(&uid);
                }
                if spec_changed || deleting || completed {
                    self.dirty_jobs.insert(uid.clone());
                }
            }
        }
        self.dirty_status.insert(uid);
        self.mark(now);
    }

    pub(super) fn delete_job(&mut self, uid: &Name, now: Timestamp) {
        let Some(state) = self.jobs.remove(uid) else {
            return;
        };
        self.digest_tries.remove(uid);
        self.job_uids.remove(&state.info.key);
        for o in state.info.job.owner_references() {
            self.dirty_lists.insert(self.interner.name(&o.uid));
        }
        let nodes: Vec<Name> = state.cells.keys().cloned().collect();
        for n in &nodes {
            self.untarget(uid, n);
        }
        self.withdraw_everywhere(uid);
        self.writes.jobs.remove(uid);
        self.secrets_dirty = true;
        self.mark(now);
    }

    pub(super) fn apply_pod(&mut self, p: &LeanPod, now: Timestamp) {
        let ns = self.interner.name(&p.namespace().unwrap_or_default());
        let key = (ns.clone(), self.interner.name(&p.name_any()));
        let node = p
            .active()
            .then(|| p.spec.node_name.as_deref().map(|n| self.interner.name(n)))
            .flatten();
        let rec = PodRec {
            labels: p.labels().clone(),
            node,
        };
        let old = self.pods.insert(key, rec.clone());
        if old.as_ref() == Some(&rec) {
            return;
        }
        self.pod_moved(&ns, old.as_ref(), Some(&rec), now);
    }

    /// A pod's node or labels changed: the podSelector jobs of its namespace count it again.
    fn pod_moved(&mut self, ns: &str, old: Option<&PodRec>, new: Option<&PodRec>, now: Timestamp) {
        let mut touched = Vec::new();
        for (uid, state) in self.jobs.iter_mut() {
            let Some(ps) = &state.info.job.spec.template.pod_selector else {
                continue;
            };
            if state.info.job.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let selector = crate::selector::matcher(&ps.match_labels, &ps.match_expressions);
            let node_of = |p: Option<&PodRec>| {
                p.filter(|p| selector(&p.labels))
                    .and_then(|p| p.node.clone())
            };
            let (before, after) = (node_of(old), node_of(new));
            if before == after {
                continue;
            }
            if let Some(n) = before {
                let c = state.pods.entry(n.clone()).or_default();
                *c = c.saturating_sub(1);
                if *c == 0 {
                    state.pods.remove(&n);
                }
                touched.push((uid.clone(), n));
            }
            if let Some(n) = after {
                *state.pods.entry(n.clone()).or_default() += 1;
                touched.push((uid.clone(), n));
            }
        }
        if !touched.is_empty() {
            self.dirty_targets.extend(touched);
            self.mark(now);
        }
    }

    pub(super) fn apply_secret(&mut self, s: &Secret, copy: bool, now: Timestamp) {
        let map = if copy {
            &mut self.copies
        } else {
            &mut self.sources
        };
        let key = if copy { s.name_any() } else { secret_key(s) };
        let mut s = s.clone();
        s.metadata.managed_fields = None;
        // Sources come without their data (watched as metadata): a changed resourceVersion is
        // what says their data may have changed.
        let same = map.get(&key).is_some_and(|o| {
            o.type_ == s.type_
                && o.data == s.data
                && o.metadata.annotations == s.metadata.annotations
                && o.metadata.labels == s.metadata.labels
                && (copy || o.metadata.resource_version == s.metadata.resource_version)
        });
        map.insert(key, s);
        if !same {
            self.secrets_dirty = true;
            self.mark(now);
        }
    }

    pub(super) fn apply_list(&mut self, l: &ImageListPullJob, now: Timestamp) {
        let uid = self.interner.name(&l.uid().unwrap_or_default());
        let l = Arc::new(l.clone());
        if let Some(old) = self.lists.get(&uid) {
            if old
                .resource_version()
                .is_some_and(|o| l.resource_version().is_some_and(|n| not_newer(&n, &o)))
            {
                return;
            }
        }
        self.lists.insert(uid.clone(), l);
        self.dirty_lists.insert(uid);
        self.mark(now);
    }

    /// Uids of the jobs owning entries in a node's spec (as planned).
    pub(super) fn owners_of(&self, node: &Name) -> HashSet<Name> {
        self.view(node)
            .into_iter()
            .flat_map(|s| s.values())
            .flat_map(|i| &i.tags)
            .flat_map(|t| &t.owners)
            .filter(|o| o.is_job())
            .filter_map(|o| o.uid.clone())
            .collect()
    }

    /// A node's spec (as planned) or results changed: its owner index and peer roles (`before`
    /// the change: `owners`, `roles`) follow, and the cells of the jobs on it are looked at
    /// again.
    pub(super) fn view_changed(
        &mut self,
        node: &Name,
        before: HashSet<Name>,
        roles: super::peers::Roles,
    ) {
        self.peers_changed(node, roles);
        let after = self.owners_of(node);
        for uid in before.difference(&after) {
            if let Some(set) = self.owned.get_mut(uid) {
                set.remove(node);
                if set.is_empty() {
                    self.owned.remove(uid);
                }
            }
        }
        for uid in after.difference(&before) {
            self.owned
                .entry(uid.clone())
                .or_default()
                .insert(node.clone());
        }
        self.dirty_views.insert(node.clone());
    }

    /// Sources by `namespace/name` (for the secret copies).
    pub(super) fn sources(&self) -> &BTreeMap<String, Secret> {
        &self.sources
    }
}

/// An object the engine indexes.
trait Applied {
    fn apply(self, e: &mut Engine, kind: Kind, now: Timestamp);
}

impl Applied for LeanNode {
    fn apply(self, e: &mut Engine, _: Kind, now: Timestamp) {
        e.apply_node(&self, now)
    }
}

impl Applied for NodeImage {
    fn apply(self, e: &mut Engine, _: Kind, now: Timestamp) {
        e.apply_node_image(&self, false, now)
    }
}

impl Applied for ImagePullJob {
    fn apply(self, e: &mut Engine, _: Kind, now: Timestamp) {
        e.apply_job(self, now)
    }
}

impl Applied for ImageListPullJob {
    fn apply(self, e: &mut Engine, _: Kind, now: Timestamp) {
        e.apply_list(&self, now)
    }
}

impl Applied for LeanPod {
    fn apply(self, e: &mut Engine, _: Kind, now: Timestamp) {
        e.apply_pod(&self, now)
    }
}

impl Applied for Secret {
    fn apply(self, e: &mut Engine, kind: Kind, now: Timestamp) {
        e.apply_secret(&self, kind == Kind::Copy, now)
    }
}
