//! One round: replans what the inputs marked, in an order where each step sees the last one's
//! result (secret copies, NodeImage lifecycle, owners that are gone, jobs whose spec changed,
//! nodes whose labels changed, the cells on changed nodes, placement, the final touches of every
//! planned spec, job statuses), then turns what changed into writes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kruise_api::ReferenceObject;

use super::jobs::{cell, Cell, Failure, JobState};
use super::lifecycle::{decide, Change, NodeImageView};
use super::place;
use super::spec::{Name, Owner, Spec, Status};
use super::timers::Timer;
use super::{Engine, Planned, RoundStats, Write};

/// When the entry `job` owns on a node was written (its pull round started).
fn first_owner_created(spec: &Spec, job: &super::jobs::JobInfo) -> Option<Timestamp> {
    let (k, t) = job.image.as_ref().ok()?;
    place::owned(spec, k, t, &job.uid)?.created_at
}

static EMPTY_SPEC: Spec = Spec::new();
static EMPTY_STATUS: std::sync::LazyLock<Status> = std::sync::LazyLock::new(Status::default);

pub(super) fn after(now: Timestamp, d: std::time::Duration) -> Timestamp {
    now.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(now)
}

impl Engine {
    /// Plans everything marked since the last round and returns the writes to make. A replica
    /// that does not lead, or has not listed everything yet, plans nothing.
    pub fn round(&mut self, now: Timestamp) -> Vec<Write> {
        self.peers_at(now);
        // The API keeps times to the second (createdAt, startTime): deciding at whole seconds
        // makes what is written equal to what was planned.
        let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
        self.changed_since = None;
        for t in self.timers.pop_due(now) {
            self.fire(t);
        }
        if !self.ready() || !self.leading {
            self.clear_marks();
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut stats = RoundStats::default();
        self.secrets_step(&mut out);
        self.lifecycle_step(now, &mut out);
        self.unknown_owners_step();
        for uid in std::mem::take(&mut self.dirty_jobs) {
            self.rebuild(&uid, now);
            stats.jobs_rebuilt += 1;
        }
        self.membership_step(now);
        stats.cells_refreshed += self.refresh_step(now);
        self.placement_step(now);
        for _ in 0..3 {
            if self.dirty_views.is_empty() && self.dirty_cells.is_empty() {
                break;
            }
            stats.cells_refreshed += self.refresh_step(now);
        }
        stats.nodes_planned = self.finish_step();
        self.status_step(now, &mut out);
        self.node_write_step(&mut out);
        self.list_step(&mut out);
        self.interner_maintenance();
        stats.writes = out.len();
        self.last_round = stats;
        out
    }

    fn fire(&mut self, t: Timer) {
        match t {
            Timer::Cell(job, node) => {
                self.dirty_cells.insert((job, node));
            }
            Timer::Job(job) => {
                self.dirty_status.insert(job.clone());
                self.dirty_place.insert(job);
            }
            Timer::Node(node) => {
                self.dirty_lifecycle.insert(node);
            }
            Timer::Placement(node) => {
                self.placement_due.insert(node);
            }
            Timer::Write(node) => {
                self.writes.conflicted.remove(&node);
                self.dirty_writes.insert(node);
            }
            Timer::Resolve(job) => {
                self.recheck_digest.insert(job.clone());
                self.dirty_status.insert(job);
            }
            Timer::Secrets => self.secrets_dirty = true,
            Timer::List(uid) => {
                self.dirty_lists.insert(uid);
            }
        }
    }

    /// A standby keeps its index and plans nothing; becoming the leader marks everything.
    fn clear_marks(&mut self) {
        self.dirty_jobs.clear();
        self.dirty_views.clear();
        self.dirty_cells.clear();
        self.dirty_lifecycle.clear();
        self.dirty_membership.clear();
        self.dirty_targets.clear();
        self.dirty_status.clear();
        self.dirty_place.clear();
        self.dirty_writes.clear();
        self.dirty_lists.clear();
        self.unknown_owners.clear();
        self.placement_due.clear();
        self.recheck_digest.clear();
        self.to_finish.clear();
        self.secrets_dirty = false;
    }

    /// A node's spec as planned (what the next write makes it), else as stored.
    pub(super) fn view(&self, node: &Name) -> Option<&Spec> {
        self.planned
            .get(node)
            .map(|p| &p.spec)
            .or_else(|| self.images.get(node).map(|r| &r.spec))
    }

    /// Edits a node's planned spec with `f` (given the node's results); when it changed
    /// anything, the node is written and its jobs' cells looked at again.
    pub(super) fn edit(&mut self, node: &Name, f: impl FnOnce(&mut Spec, &Status) -> bool) -> bool {
        let roles = self.peer_roles(node);
        let Some(rec) = self.images.get(node) else {
            return false;
        };
        let before = self.owners_of(node);
        let changed = match self.planned.get_mut(node) {
            Some(p) => f(&mut p.spec, &rec.status),
            None => {
                // Copied only when the edit changes something.
                let mut spec = rec.spec.clone();
                let changed = f(&mut spec, &rec.status);
                if changed {
                    let base = rec.spec_generation;
                    self.planned.insert(
                        node.clone(),
                        Planned {
                            spec,
                            base,
                            labels: None,
                        },
                    );
                }
                changed
            }
        };
        if changed {
            self.view_changed(node, before, roles);
            self.to_finish.insert(node.clone());
            self.dirty_writes.insert(node.clone());
        }
        changed
    }

    fn secrets_step(&mut self, out: &mut Vec<Write>) {
        if !std::mem::take(&mut self.secrets_dirty) {
            return;
        }
        let jobs: Vec<Arc<kruise_api::ImagePullJob>> =
            self.jobs.values().map(|j| j.info.job.clone()).collect();
        let want = crate::secrets::desired(&jobs, self.sources());
        let have: Vec<k8s_openapi::api::core::v1::Secret> = self.copies.values().cloned().collect();
        let mut synced = crate::secrets::references(&have);
        synced.retain(|source, _| self.sources().contains_key(source));
        for (source, r) in crate::secrets::references(&want.values().cloned().collect::<Vec<_>>()) {
            synced.entry(source).or_insert(r);
        }
        if synced != self.synced {
            let changed: BTreeSet<String> = synced
                .keys()
                .chain(self.synced.keys())
                .filter(|k| synced.get(*k) != self.synced.get(*k))
                .cloned()
                .collect();
            self.synced = synced;
            let affected: Vec<Name> = self
                .jobs
                .iter()
                .filter(|(_, j)| {
                    let ns = j.info.job.metadata.namespace.clone().unwrap_or_default();
                    j.info
                        .job
                        .spec
                        .template
                        .pull_secrets
                        .iter()
                        .flatten()
                        .any(|s| changed.contains(&format!("{ns}/{s}")))
                })
                .map(|(u, _)| u.clone())
                .collect();
            for uid in affected {
                if let Some(nodes) = self.owned.get(&uid) {
                    self.to_finish.extend(nodes.iter().cloned());
                }
                self.dirty_status.insert(uid);
            }
        }
        if !self.writes.secrets
            && crate::secrets::differs(&self.settings.job_namespace, &want, &have)
        {
            self.writes.secrets = true;
            out.push(Write::Secrets { want, have });
        }
    }

    fn lifecycle_step(&mut self, now: Timestamp, out: &mut Vec<Write>) {
        let delay = self.settings.nodeimage_creation_delay;
        for node in std::mem::take(&mut self.dirty_lifecycle) {
            if self.writes.node_images.contains_key(&node) {
                continue; // looked at again when the write returns
            }
            let view = self.images.get(&node).map(|r| NodeImageView {
                labels: &r.labels,
                deleting: r.deleting,
            });
            let (change, wake) = decide(self.nodes.get(&node), view, delay, now);
            if let Some(at) = wake {
                self.timers.at(at, Timer::Node(node.clone()));
            }
            match change {
                Some(Change::Create { labels, node_uid }) => {
                    self.writes.node_images.insert(node.clone(), String::new());
                    out.push(Write::CreateNodeImage {
                        name: node.to_string(),
                        labels,
                        node_uid,
                        spec: Default::default(),
                    });
                }
                Some(Change::Delete) => {
                    let uid = self
                        .images
                        .get(&node)
                        .map(|r| r.uid.clone())
                        .unwrap_or_default();
                    self.writes.node_images.insert(node.clone(), String::new());
                    out.push(Write::DeleteNodeImage {
                        name: node.to_string(),
                        uid,
                    });
                }
                Some(Change::Relabel { labels }) => {
                    if let Some(rec) = self.images.get(&node) {
                        let planned = self.planned.entry(node.clone()).or_insert_with(|| Planned {
                            spec: rec.spec.clone(),
                            base: rec.spec_generation,
                            labels: None,
                        });
                        planned.labels = Some(labels);
                        self.dirty_writes.insert(node);
                    }
                }
                None => {}
            }
        }
    }

    /// Whether an owner reference is a job of this installation (a job of another namespace
    /// belongs to another installation, which withdraws it).
    fn ours(&self, o: &Owner) -> bool {
        o.is_job()
            && (self.settings.job_namespace.is_empty()
                || o.namespace.as_deref() == Some(self.settings.job_namespace.as_str()))
    }

    /// Owners of ours that no watched job has: deleted while no manager ran.
    fn unknown_owners_step(&mut self) {
        for node in std::mem::take(&mut self.unknown_owners) {
            let gone: HashSet<Name> = self
                .view(&node)
                .into_iter()
                .flat_map(|s| s.values())
                .flat_map(|i| &i.tags)
                .flat_map(|t| &t.owners)
                .filter(|o| self.ours(o))
                .filter_map(|o| o.uid.clone())
                .filter(|uid| !self.jobs.contains_key(uid))
                .collect();
            if !gone.is_empty() {
                self.edit(&node, |spec, _| {
                    place::drop_owners(spec, |o| o.uid.as_ref().is_some_and(|u| gone.contains(u)))
                });
            }
        }
    }

    /// A podSelector job's matching active pods per node, counted afresh (a new job, or a new
    /// selector): pod events keep the count up to date from then on.
    fn recount_pods(&mut self, uid: &Name) {
        let Some(state) = self.jobs.get_mut(uid) else {
            return;
        };
        let Some(ps) = &state.info.job.spec.template.pod_selector else {
            state.pods.clear();
            return;
        };
        let ns = state
            .info
            .job
            .metadata
            .namespace
            .clone()
            .unwrap_or_default();
        let selector = crate::selector::matcher(&ps.match_labels, &ps.match_expressions);
        let mut pods: HashMap<Name, u32> = HashMap::new();
        for ((pod_ns, _), rec) in &self.pods {
            if **pod_ns != *ns || !selector(&rec.labels) {
                continue;
            }
            if let Some(node) = &rec.node {
                *pods.entry(node.clone()).or_default() += 1;
            }
        }
        state.pods = pods;
    }

    /// Whether `node` is one of `job`'s targets.
    pub(super) fn is_target(&self, job: &JobState, node: &Name) -> bool {
        let Some(ni) = self.images.get(node) else {
            return false;
        };
        if ni.deleting || job.info.deleting {
            return false;
        }
        let t = &job.info.job.spec.template;
        if t.pod_selector.is_some() {
            return job.pods.contains_key(node);
        }
        match &t.selector {
            None => true,
            Some(sel) => match sel.names.as_ref().filter(|n| !n.is_empty()) {
                Some(names) => names.iter().any(|n| **n == **node),
                None => {
                    crate::selector::matcher(&sel.match_labels, &sel.match_expressions)(&ni.labels)
                }
            },
        }
    }

    /// Jobs that keep cells: live and not finished (a finished job's status no longer changes).
    fn keeps_cells(job: &JobState) -> bool {
        !job.info.deleting && !job.info.completed()
    }

    fn demand_of(&self, node: &Name) -> u32 {
        self.demand.get(node).copied().unwrap_or(0)
    }

    /// `job` starts targeting `node`: a cell, and the node's demand goes up for everyone.
    fn target(&mut self, uid: &Name, node: &Name, now: Timestamp) {
        if self
            .jobs
            .get(uid)
            .is_none_or(|j| j.cells.contains_key(node))
        {
            return;
        }
        let d = self.demand.entry(node.clone()).or_default();
        *d += 1;
        let demand = *d;
        self.node_jobs
            .entry(node.clone())
            .or_default()
            .insert(uid.clone());
        for other in self.node_jobs.get(node).into_iter().flatten() {
            if let Some(j) = self.jobs.get_mut(other) {
                j.reorder(node, demand);
            }
        }
        self.peers_reordered(node);
        if let Some(j) = self.jobs.get_mut(uid) {
            j.set(node, Cell::Unplaced, demand);
        }
        self.dirty_status.insert(uid.clone());
        self.dirty_place.insert(uid.clone());
        self.refresh_cell(uid, node, now);
    }

    /// `job` stops targeting `node`.
    pub(super) fn untarget(&mut self, uid: &Name, node: &Name) {
        let was = self.jobs.get(uid).and_then(|j| j.cells.get(node).copied());
        self.cell_bytes(uid, node, was, None);
        if let Some(j) = self.jobs.get_mut(uid) {
            if !j.remove(node) {
                return;
            }
        }
        if let Some(set) = self.node_jobs.get_mut(node) {
            set.remove(uid);
            if set.is_empty() {
                self.node_jobs.remove(node);
            }
        }
        let demand = match self.demand.get_mut(node) {
            Some(d) => {
                *d = d.saturating_sub(1);
                *d
            }
            None => 0,
        };
        if demand == 0 {
            self.demand.remove(node);
        }
        for other in self.node_jobs.get(node).into_iter().flatten() {
            if let Some(j) = self.jobs.get_mut(other) {
                j.reorder(node, demand);
            }
        }
        self.peers_reordered(node);
        self.dirty_status.insert(uid.clone());
        self.dirty_place.insert(uid.clone());
    }

    /// Withdraws `uid` from every node where it owns an entry.
    pub(super) fn withdraw_everywhere(&mut self, uid: &Name) {
        let nodes: Vec<Name> = self
            .owned
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for n in nodes {
            self.edit(&n, |spec, _| place::withdraw(spec, uid, None));
        }
    }

    /// Replans a job from scratch: its targets, its cells, and the entries it no longer wants.
    fn rebuild(&mut self, uid: &Name, now: Timestamp) {
        self.recount_pods(uid);
        let Some(state) = self.jobs.get(uid) else {
            return;
        };
        let info = state.info.clone();
        let keep = Self::keeps_cells(state);
        let targets: BTreeSet<Name> = self
            .images
            .keys()
            .filter(|n| self.is_target(state, n))
            .cloned()
            .collect();
        let old: Vec<Name> = state.cells.keys().cloned().collect();
        for n in old {
            if !keep || !targets.contains(&n) {
                self.untarget(uid, &n);
            }
        }
        if keep {
            for n in &targets {
                self.target(uid, n, now);
            }
        }
        let wanted = info.image.as_ref().ok().cloned();
        let owned: Vec<Name> = self
            .owned
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for n in owned {
            let keep_tag = wanted
                .as_ref()
                .filter(|_| targets.contains(&n))
                .map(|(k, t)| (k.clone(), t.clone()));
            self.edit(&n, |spec, _| {
                place::withdraw(spec, uid, keep_tag.as_ref().map(|(k, t)| (&**k, &**t)))
            });
        }
        // Refreshing its cells carries its policy to the entries it wrote first.
        if keep {
            for n in &targets {
                self.refresh_cell(uid, n, now);
            }
        }
        self.dirty_place.insert(uid.clone());
        self.dirty_status.insert(uid.clone());
    }

    /// Nodes whose labels or existence changed, and podSelector jobs whose pods moved: which
    /// jobs target them now.
    fn membership_step(&mut self, now: Timestamp) {
        let mut pairs: BTreeSet<(Name, Name)> = std::mem::take(&mut self.dirty_targets);
        for node in std::mem::take(&mut self.dirty_membership) {
            pairs.extend(self.jobs.keys().map(|u| (u.clone(), node.clone())));
        }
        for (uid, node) in pairs {
            let Some(job) = self.jobs.get(&uid) else {
                continue;
            };
            let target = self.is_target(job, &node);
            let want = Self::keeps_cells(job) && target;
            let have = job.cells.contains_key(&node);
            if want && !have {
                self.target(&uid, &node, now);
            } else if !want && have {
                self.untarget(&uid, &node);
            }
            if !target && self.owned.get(&uid).is_some_and(|s| s.contains(&node)) {
                self.edit(&node, |spec, _| place::withdraw(spec, &uid, None));
            }
        }
    }

    /// Looks again at the cells on changed nodes and the cells whose timers fired; returns how
    /// many it looked at.
    fn refresh_step(&mut self, now: Timestamp) -> usize {
        let mut pairs: Vec<(Name, Name)> =
            std::mem::take(&mut self.dirty_cells).into_iter().collect();
        for node in std::mem::take(&mut self.dirty_views) {
            pairs.extend(
                self.node_jobs
                    .get(&node)
                    .into_iter()
                    .flatten()
                    .map(|u| (u.clone(), node.clone())),
            );
        }
        for (uid, node) in &pairs {
            self.refresh_cell(uid, node, now);
        }
        pairs.len()
    }

    /// Recomputes one cell; closes the tag of a silent node for an Always job.
    pub(super) fn refresh_cell(&mut self, uid: &Name, node: &Name, now: Timestamp) {
        let demand = self.demand_of(node);
        let response = self.settings.response_timeout;
        let Some(job) = self.jobs.get(uid) else {
            return;
        };
        let Some(current) = job.cells.get(node).copied() else {
            return;
        };
        let spec = self.view(node).unwrap_or(&EMPTY_SPEC);
        let status = self.images.get(node).map_or(&*EMPTY_STATUS, |r| &r.status);
        let (mut computed, overdue) = cell(&job.info, spec, status, response, now);
        if let (Cell::Reserved(t), Cell::Unplaced) = (current, computed) {
            computed = Cell::Reserved(t);
        }
        let placing = job.info.placing(now);
        let close = computed == Cell::Failed(Failure::NotResponding) && job.info.always_complete;
        let first_owner = job.info.image.as_ref().ok().and_then(|(k, t)| {
            let entry = spec.get(k)?.tag(t)?;
            (entry.owners.first().and_then(|o| o.uid.as_deref()) == Some(&**uid))
                .then(|| (k.clone(), t.clone()))
        });
        let info = job.info.clone();
        let finished = matches!(computed, Cell::Succeeded | Cell::Failed(Failure::Pull));
        let pulled_in = (current == Cell::Pending && finished)
            .then(|| first_owner_created(spec, &info))
            .flatten()
            .map(|c| (now.as_second() - c.as_second()) as f64);
        self.cell_bytes(uid, node, Some(current), Some(computed));
        if computed == Cell::Failed(Failure::NotResponding) {
            self.peer_entry_silent(node);
        }
        let job = self.jobs.get_mut(uid).expect("looked up above");
        if let Some(secs) = pulled_in {
            job.pulled_in(secs);
        }
        if job.set(node, computed, demand) {
            self.dirty_status.insert(uid.clone());
            self.dirty_place.insert(uid.clone());
        }
        let timer = Timer::Cell(uid.clone(), node.clone());
        match overdue {
            Some(at) => self.timers.at(at, timer),
            None => self.timers.cancel(&timer),
        }
        // The entry this job wrote first follows its pull policy, and is closed when its daemon
        // never answered.
        if let (true, Some((k, t))) = (placing, first_owner) {
            let window = response.as_secs() as i64;
            let close_secs = close.then_some(window);
            self.edit(node, |spec, _| {
                place::own_entry(spec, &info, &k, &t, now, close_secs)
            });
        }
    }

    /// The final touches of every spec planned this round: tags sorted, pull secrets the
    /// owners' copies. A planned spec equal to the stored one is dropped. Returns how many
    /// nodes have a planned spec.
    fn finish_step(&mut self) -> usize {
        let mut secrets: HashMap<Name, Vec<Arc<ReferenceObject>>> = HashMap::new();
        for (uid, job) in &self.jobs {
            let ns = job.info.job.metadata.namespace.clone().unwrap_or_default();
            let refs: Vec<Arc<ReferenceObject>> = job
                .info
                .job
                .spec
                .template
                .pull_secrets
                .iter()
                .flatten()
                .filter_map(|s| self.synced.get(&format!("{ns}/{s}")))
                .map(|r| Arc::new(r.clone()))
                .collect();
            if !refs.is_empty() {
                secrets.insert(uid.clone(), refs);
            }
        }
        let pinning: HashMap<Name, bool> = (self.jobs.iter())
            .map(|(uid, j)| (uid.clone(), j.info.pin))
            .collect();
        let pins = |o: &Owner| o.uid.as_ref().and_then(|u| pinning.get(u).copied());
        let secrets_of = |o: &Owner| -> Vec<Arc<ReferenceObject>> {
            o.uid
                .as_ref()
                .and_then(|u| secrets.get(u))
                .cloned()
                .unwrap_or_default()
        };
        for node in std::mem::take(&mut self.to_finish) {
            let Some(rec) = self.images.get(&node) else {
                self.planned.remove(&node);
                continue;
            };
            let mut spec = self.view(&node).cloned().unwrap_or_default();
            place::finish(&mut spec, secrets_of, pins);
            match self.planned.get_mut(&node) {
                Some(p) => p.spec = spec,
                None if spec != rec.spec => {
                    self.planned.insert(
                        node.clone(),
                        Planned {
                            spec,
                            base: rec.spec_generation,
                            labels: None,
                        },
                    );
                }
                None => {}
            }
            if let Some(p) = self.planned.get(&node) {
                if p.spec == rec.spec && p.labels.as_ref().is_none_or(|l| *l == rec.labels) {
                    self.planned.remove(&node);
                } else {
                    self.dirty_writes.insert(node);
                }
            }
        }
        self.planned.len()
    }

    fn list_step(&mut self, out: &mut Vec<Write>) {
        for uid in std::mem::take(&mut self.dirty_lists) {
            let Some(list) = self.lists.get(&uid).cloned() else {
                continue;
            };
            if !self.writes.lists.insert(uid.clone()) {
                // Written again once the write in flight returns.
                self.writes.lists_again.insert(uid);
                continue;
            }
            let children: Vec<Arc<kruise_api::ImagePullJob>> = self
                .jobs
                .values()
                .filter(|j| {
                    j.info
                        .job
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| *o.uid == *uid)
                })
                .map(|j| j.info.job.clone())
                .collect();
            out.push(Write::List { list, children });
        }
    }

    /// Drops shared values nothing uses any more, now and then (a deleted job's owner reference).
    fn interner_maintenance(&mut self) {
        self.rounds += 1;
        if self.rounds.is_multiple_of(256) {
            self.interner.collect();
        }
    }
}
