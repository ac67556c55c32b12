//! Work due at a time: a pending tag becoming overdue, a job's deadline or TTL, a node reaching
//! its creation delay, a reservation's placement window, a write's retry. One entry per target,
//! the earliest time kept; a target is just marked again when it fires, so a stale entry costs a
//! look and nothing else.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use k8s_openapi::jiff::Timestamp;

use super::spec::Name;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// A job's cell on a node (response window, tag deadline).
    Cell(Name, Name),
    /// A job's status (its deadline, its TTL, a rate-limited write).
    Job(Name),
    /// A Node's NodeImage (creation delay).
    Node(Name),
    /// Reservations on a node whose placement window ends.
    Placement(Name),
    /// A NodeImage write to retry.
    Write(Name),
    /// The secret copies or a list job (by uid) to sync again.
    Secrets,
    List(Name),
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Timestamp, Timer)>>,
    due: HashMap<Timer, Timestamp>,
}

impl Timers {
    /// Fires `timer` at `at` (rounded up to the second: rounds decide at whole seconds), unless it
    /// is due earlier already.
    pub fn at(&mut self, at: Timestamp, timer: Timer) {
        let whole = Timestamp::from_second(at.as_second()).unwrap_or(at);
        let at = if whole < at {
            Timestamp::from_second(at.as_second() + 1).unwrap_or(at)
        } else {
            whole
        };
        match self.due.get(&timer) {
            Some(t) if *t <= at => {}
            _ => {
                self.due.insert(timer.clone(), at);
                self.heap.push(Reverse((at, timer)));
            }
        }
    }

    pub fn next(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The timers due at `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Vec<Timer> {
        let mut out = Vec::new();
        while let Some(Reverse((t, _))) = self.heap.peek() {
            if *t > now {
                break;
            }
            let Reverse((t, timer)) = self.heap.pop().expect("peeked");
            if self.due.get(&timer) == Some(&t) {
                self.due.remove(&timer);
                out.push(timer);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }
}
