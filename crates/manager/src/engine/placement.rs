//! Placement: jobs with free slots take their next nodes, one order for every job (the nodes
//! more jobs want first, then by name). A node is written once every job that would take it
//! soon has taken it, or once the waiting job's window has passed (a quarter of its own pulls'
//! time, at most `--placement-window`): so jobs created together (or moving at the same pace)
//! reach each node in one write instead of one write each, and waiting never costs a job more
//! than a quarter of its pace. Jobs are served oldest first. With peers on, a pull that starts
//! takes its sources (or a registry slot) from `peers`, and a job takes no more nodes than those
//! can start now: the rest wait, unplaced, until a seed or a slot frees.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::jobs::{Cell, Failure, JobInfo, OrderKey};
use super::peers::Plan;
use super::place;
use super::round::after;
use super::spec::{Name, Source};
use super::timers::Timer;
use super::Engine;

impl Engine {
    pub(super) fn placement_step(&mut self, now: Timestamp) {
        let cap = self.settings.placement_window;
        let mut candidates: Vec<_> = std::mem::take(&mut self.dirty_place)
            .into_iter()
            .filter_map(|uid| {
                let j = self.jobs.get(&uid)?;
                (j.info.placing(now) && j.free() > 0 && !j.unplaced.is_empty())
                    .then(|| (j.info.order.clone(), uid))
            })
            .collect();
        candidates.sort();
        let mut wants: BTreeMap<Name, Vec<Name>> = BTreeMap::new();
        for (_, uid) in &candidates {
            for node in self.next_nodes(uid) {
                wants.entry(node).or_default().push(uid.clone());
            }
        }
        let due = std::mem::take(&mut self.placement_due);
        let nodes: BTreeSet<Name> = wants.keys().chain(due.iter()).cloned().collect();
        // Per job, the last node of its window (the unplaced nodes it would take next).
        let mut horizon: HashMap<Name, Option<OrderKey>> = HashMap::new();
        for node in nodes {
            let wanting = wants.remove(&node).unwrap_or_default();
            let on_node: Vec<Name> = self
                .node_jobs
                .get(&node)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            let mut reserved = Vec::new();
            let mut expired = due.contains(&node);
            let mut waiting_for_others = false;
            for uid in &on_node {
                let j = &self.jobs[uid];
                match j.cells.get(&node) {
                    Some(Cell::Reserved(t)) => {
                        reserved.push(uid.clone());
                        expired |= after(*t, j.window(cap)) <= now;
                    }
                    // Another job that would take this node soon: wait for it (not for one
                    // waiting for a peer source or a registry slot: it takes none soon).
                    Some(Cell::Unplaced)
                        if !wanting.contains(uid)
                            && j.info.placing(now)
                            && j.info.parallelism > 0
                            && !self.waits_for_source(uid) =>
                    {
                        let h = horizon.entry(uid.clone()).or_insert_with(|| {
                            j.unplaced.iter().nth(j.info.parallelism - 1).cloned()
                        });
                        let key = j.key(&node, self.demand_of_node(&node));
                        if h.as_ref().is_none_or(|h| key <= *h) {
                            waiting_for_others = true;
                        }
                    }
                    _ => {}
                }
            }
            if cap.is_zero() || expired || !waiting_for_others {
                tracing::debug!(node = %node, wanting = wanting.len(), reserved = reserved.len(), expired, "placing");
                let mut placing: Vec<Name> = wanting.into_iter().chain(reserved).collect();
                placing.sort_by(|a, b| self.jobs[a].info.order.cmp(&self.jobs[b].info.order));
                placing.dedup();
                for uid in placing {
                    self.place(&uid, &node, now);
                }
            } else {
                tracing::debug!(node = %node, wanting = wanting.len(), reserved = reserved.len(), "reserving, waiting for the other jobs that want it");
                let demand = self.demand_of_node(&node);
                for uid in wanting {
                    if let Some(j) = self.jobs.get_mut(&uid) {
                        j.set(&node, Cell::Reserved(now), demand);
                        let at = after(now, j.window(cap));
                        self.timers.at(at, Timer::Placement(node.clone()));
                    }
                }
            }
        }
    }

    fn demand_of_node(&self, node: &Name) -> u32 {
        self.demand.get(node).copied().unwrap_or(0)
    }

    /// The unplaced nodes a job takes next: as many as its free slots, of which those where a
    /// pull would start no more than can start now (with peers on: seeds' room, or registry
    /// slots). A job held back by that waits for a seed or a slot to free (noted at once: a
    /// seed lost to a new round this very round wakes it).
    fn next_nodes(&mut self, uid: &Name) -> Vec<Name> {
        let j = &self.jobs[uid];
        let free = j.free();
        if !self.settings.peers_on() {
            return j.unplaced.iter().take(free).map(|k| k.2.clone()).collect();
        }
        let info = j.info.clone();
        let Ok((key, tag)) = &info.image else {
            return Vec::new();
        };
        let mut room = self.pull_room(&info, free);
        let mut nodes = Vec::new();
        for (_, _, node) in &self.jobs[uid].unplaced {
            if nodes.len() == free {
                break;
            }
            let (Some(rec), Some(spec)) = (self.images.get(node), self.view(node)) else {
                continue;
            };
            if place::joining(spec, &rec.status, &info, key, tag).starts_pull() {
                if room == 0 {
                    self.wait_for_source(&info);
                    break;
                }
                room -= 1;
            }
            nodes.push(node.clone());
        }
        nodes
    }

    /// Adds the job's tag to one node (or counts the node as failed when its NodeImage is full).
    /// A pull that starts there names its sources; with none to be had now, the node stays
    /// unplaced and the job waits for a seed or a registry slot.
    fn place(&mut self, uid: &Name, node: &Name, now: Timestamp) {
        let Some(job) = self.jobs.get(uid) else {
            return;
        };
        let info = job.info.clone();
        let Ok((key, tag)) = &info.image else {
            return;
        };
        if self.view(node).is_some_and(|s| place::full_without(s, key)) {
            let demand = self.demand_of_node(node);
            if let Some(j) = self.jobs.get_mut(uid) {
                j.set(node, Cell::Failed(Failure::Full), demand);
            }
            self.dirty_status.insert(uid.clone());
            return;
        }
        let Some(sources) = self.sources_for(&info, node) else {
            // A reservation gives its slot back; the node is taken again later.
            let demand = self.demand_of_node(node);
            if let Some(j) = self.jobs.get_mut(uid) {
                if j.set(node, Cell::Unplaced, demand) {
                    self.dirty_status.insert(uid.clone());
                }
            }
            self.wait_for_source(&info);
            return;
        };
        self.edit(node, |spec, status| {
            place::join(spec, status, &info, key, tag, now, &sources);
            true
        });
        // Counted at once, so the rest of this round sees the slot taken.
        self.refresh_cell(uid, node, now);
        self.dirty_status.insert(uid.clone());
    }

    /// The sources a job's entry on `node` is written with: none when it joins a pull (or the
    /// one done) or pulls from the registry; `None` when a pull would start and can not now.
    fn sources_for(&mut self, info: &JobInfo, node: &Name) -> Option<Vec<Arc<Source>>> {
        let (key, tag) = info.image.as_ref().ok()?;
        let starts = match (self.view(node), self.images.get(node)) {
            (Some(spec), Some(rec)) => place::joining(spec, &rec.status, info, key, tag),
            _ => place::Joining::Create,
        };
        if !starts.starts_pull() {
            return Some(Vec::new());
        }
        match self.plan_pull(info, node) {
            Plan::Peers(sources) => Some(sources),
            Plan::Registry => Some(Vec::new()),
            Plan::Wait => None,
        }
    }
}
