//! Each job's bytes (from the registry, from peers): the sum, over its nodes whose result is
//! Succeeded, of what those nodes' current reports say. Kept as a running sum in the job, never
//! per cell: a node's status replaced moves the sums of the jobs that succeeded there (from the
//! old report's bytes to the new one's), and a cell entering or leaving Succeeded adds or takes
//! its report's bytes. So a status costs nothing to count, and a change of bytes alone (a
//! progress report) touches the status of the jobs concerned and plans nothing.

use k8s_openapi::jiff::Timestamp;

use super::jobs::{Cell, JobInfo};
use super::spec::{Bytes, Name};
use super::Engine;

impl Engine {
    /// What the node's current report of `job`'s tag says it took.
    fn reported_bytes(&self, job: &JobInfo, node: &Name) -> Bytes {
        let Ok((key, tag)) = &job.image else {
            return Bytes::default();
        };
        (self.images.get(node))
            .and_then(|r| r.status.get_ref(key, tag))
            .map_or(Bytes::default(), |r| r.bytes)
    }

    /// Counts a job's sum afresh (its image changed: its succeeded cells, until looked at again,
    /// count the new tag's reports).
    pub(super) fn recount_bytes(&mut self, uid: &Name) {
        let Some(job) = self.jobs.get(uid) else {
            return;
        };
        let mut sum = Bytes::default();
        for (node, _) in job.cells.iter().filter(|(_, c)| **c == Cell::Succeeded) {
            sum.add(self.reported_bytes(&job.info, node));
        }
        if let Some(job) = self.jobs.get_mut(uid) {
            job.bytes = sum;
        }
    }

    /// Before a node's status is replaced: what each job that succeeded there counts of it.
    pub(super) fn bytes_out(&self, node: &Name) -> Vec<(Name, Bytes)> {
        (self.node_jobs.get(node).into_iter().flatten())
            .filter_map(|uid| {
                let job = self.jobs.get(uid)?;
                (job.cells.get(node) == Some(&Cell::Succeeded))
                    .then(|| (uid.clone(), self.reported_bytes(&job.info, node)))
            })
            .collect()
    }

    /// After: those jobs count the new report instead; a job whose sum moved has its status
    /// looked at again, and nothing else.
    pub(super) fn bytes_back(&mut self, node: &Name, counted: Vec<(Name, Bytes)>, now: Timestamp) {
        for (uid, old) in counted {
            let Some(job) = self.jobs.get(&uid) else {
                continue;
            };
            let new = self.reported_bytes(&job.info, node);
            if new == old {
                continue;
            }
            let job = self.jobs.get_mut(&uid).expect("looked up above");
            job.bytes.sub(old);
            job.bytes.add(new);
            self.dirty_status.insert(uid);
            self.mark(now);
        }
    }

    /// A job's cell on a node went from `was` to `is` (none: no cell): a cell entering
    /// Succeeded adds its report's bytes to the job's sum, one leaving it takes them out.
    pub(super) fn cell_bytes(
        &mut self,
        uid: &Name,
        node: &Name,
        was: Option<Cell>,
        is: Option<Cell>,
    ) {
        let (was, is) = (was == Some(Cell::Succeeded), is == Some(Cell::Succeeded));
        if was == is {
            return;
        }
        let Some(job) = self.jobs.get(uid) else {
            return;
        };
        let bytes = self.reported_bytes(&job.info, node);
        if bytes.is_zero() {
            return;
        }
        let job = self.jobs.get_mut(uid).expect("looked up above");
        if is {
            job.bytes.add(bytes);
        } else {
            job.bytes.sub(bytes);
        }
    }
}
