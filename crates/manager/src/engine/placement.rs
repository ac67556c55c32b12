//! Placement: jobs with free slots take their next nodes, one order for every job (the nodes
//! more jobs want first, then by name). A node is written once every job that would take it
//! soon has taken it, or once the waiting job's window has passed (a quarter of its own pulls'
//! time, at most `--placement-window`): so jobs created together (or moving at the same pace)
//! reach each node in one write instead of one write each, and waiting never costs a job more
//! than a quarter of its pace. Jobs are served oldest first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::jiff::Timestamp;

use super::jobs::{Cell, Failure, OrderKey};
use super::place;
use super::round::after;
use super::spec::Name;
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
            let j = &self.jobs[uid];
            for (_, _, node) in j.unplaced.iter().take(j.free()) {
                wants.entry(node.clone()).or_default().push(uid.clone());
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
                    // Another job that would take this node soon: wait for it.
                    Some(Cell::Unplaced)
                        if !wanting.contains(uid)
                            && j.info.placing(now)
                            && j.info.parallelism > 0 =>
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

    /// Adds the job's tag to one node (or counts the node as failed when its NodeImage is full).
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
        self.edit(node, |spec, status| {
            place::join(spec, status, &info, key, tag, now);
            true
        });
        // Counted at once, so the rest of this round sees the slot taken.
        self.refresh_cell(uid, node, now);
        self.dirty_status.insert(uid.clone());
    }
}
