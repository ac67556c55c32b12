//! Work due at a time: a pending tag becoming overdue, a job's deadline or TTL, a node reaching
//! its creation delay, a reservation's placement window, a write's retry. One entry per target,
//! the earliest time kept; a target is just marked again when it fires, so a stale entry costs a
//! look and nothing else. A timer no longer wanted (a cell that got its result) is cancelled, and
//! the heap is rebuilt once cancelled entries outnumber live ones: at 150,000 settled tags the
//! response-window timers of finished pulls would otherwise hold tens of MiB for ten minutes.

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
    /// A `Never` job whose tag is due to be resolved again.
    Resolve(Name),
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

    /// Forgets `timer`, if set.
    pub fn cancel(&mut self, timer: &Timer) {
        if self.due.remove(timer).is_none() {
            return;
        }
        if self.heap.len() > 2 * self.due.len() + 1024 {
            self.heap = self
                .due
                .iter()
                .map(|(timer, at)| Reverse((*at, timer.clone())))
                .collect();
            self.due.shrink_to_fit();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn cancelled_timers_never_fire_and_give_their_room_back() {
        let mut t = Timers::default();
        let cell = |n: usize| Timer::Cell("job".into(), format!("n{n}").into());
        for n in 0..10_000 {
            t.at(at(n as i64), cell(n));
        }
        for n in (0..10_000).filter(|n| n % 100 != 0) {
            t.cancel(&cell(n));
        }
        assert_eq!(t.len(), 100);
        assert!(
            t.heap.len() <= 2 * t.len() + 1024,
            "the heap was rebuilt: {} entries for {} timers",
            t.heap.len(),
            t.len()
        );
        assert_eq!(t.next(), Some(at(0)));
        let fired = t.pop_due(at(10_000));
        assert_eq!(
            fired,
            (0..10_000).step_by(100).map(cell).collect::<Vec<_>>()
        );
        assert!(t.is_empty());
    }
}
