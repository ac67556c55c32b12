//! The rollout pre-download controller: its loop takes in what the [`watches`](super::watches)
//! decode into the [`Store`], and reconciles each workload an event touched: [`adapt`],
//! [`decide`], then a [`Plan`] of writes that a task carries out ([`super::actions`]). A
//! workload has at most one plan in flight; a change meanwhile reconciles it again once that
//! plan is done. A failed write is retried with backoff and shown as a Warning event; the
//! revision is marked only once every job exists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kruise_observe::Supervisor;
use kube::runtime::events::{EventType, Recorder};
use kube::Client;
use serde_json::Value;
use tokio::sync::mpsc::{channel, Receiver};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::actions::{self, Actions, Done, Note, Plan, Writes};
use super::store::{Store, Uid};
use super::watches::{Change, Watches};
use super::{adapt_decoded, decide, mark_patch, Decision, Outcome, Rollout};
use crate::metrics::Metrics;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Opt every Deployment, StatefulSet and DaemonSet in (unless annotated `"false"`).
    pub all_workloads: bool,
    /// Only this namespace's workloads (the manager's `--job-namespace`); empty: all.
    pub namespace: String,
    /// How often to look for OpenKruise's workload CRDs being installed or removed.
    pub discovery_interval: Duration,
}

/// Watch events waiting for the loop; a full queue holds the watches back.
const CHANGES: usize = 1024;
/// The queue depth metric's name.
const QUEUE: &str = "predownload";

/// Runs until `shutdown`, or until dropped (aborted): its tasks stop with it.
pub async fn run(
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    cfg: Config,
    supervisor: Supervisor,
    shutdown: CancellationToken,
) {
    let stop = shutdown.child_token();
    let _stop_tasks = stop.clone().drop_guard();
    let (tx, mut changes) = channel(CHANGES);
    let watches = Watches {
        client: client.clone(),
        namespace: cfg.namespace.clone(),
        tx,
        stop: stop.clone(),
        supervisor: supervisor.clone(),
    };
    watches.start(&cfg);
    let (done_tx, mut done) = channel(actions::CONCURRENT * 4);
    let actions = Arc::new(Actions {
        client,
        recorder,
        metrics: metrics.clone(),
        supervisor,
        permits: Arc::new(Semaphore::new(actions::CONCURRENT)),
        done: done_tx,
        stop: stop.clone(),
    });
    let mut c = Controller::new(cfg, metrics, actions);
    loop {
        let next_retry = c.retries.values().filter_map(|(at, _)| *at).min();
        let mut dirty: HashSet<Uid> = HashSet::new();
        tokio::select! {
            _ = stop.cancelled() => return,
            change = changes.recv() => match change {
                Some(change) => dirty.extend(apply(&mut c.store, change)),
                None => return,
            },
            Some(d) = done.recv() => dirty.extend(c.finished(d)),
            _ = sleep_until(next_retry) => {}
        }
        c.take_queued(&mut changes, &mut dirty);
        c.reconcile_all(dirty);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

/// Applies a watch's change; returns the workloads it touched.
fn apply(store: &mut Store, c: Change) -> Vec<Uid> {
    match c {
        Change::Workload(kind, e) => store.workload(kind, e),
        Change::Revision(e) => store.revision(e),
        Change::ReplicaSet(e) => store.replicaset(e),
        Change::Pod(e) => store.pod(e),
        Change::Job(e) => store.job(e),
        Change::KindGone(kind) => {
            store.forget_kind(kind);
            Vec::new()
        }
    }
}

/// The loop's state.
struct Controller {
    cfg: Config,
    metrics: Arc<Metrics>,
    actions: Arc<Actions>,
    store: Store,
    /// Workloads whose last plan failed: when to try again (`None`: being tried), and the
    /// delay that was.
    retries: HashMap<Uid, (Option<Instant>, Duration)>,
    /// The last note published per workload (invalid, or waiting), so each is published once.
    notes: HashMap<Uid, String>,
    /// Marks patched and not yet seen by the revision watch: other changes of the workload in
    /// the meantime must not patch them again.
    marked: HashMap<Uid, Value>,
    /// Workloads with a plan being carried out.
    in_flight: HashSet<Uid>,
    /// Workloads touched while their plan was in flight: reconciled again once it is done.
    again: HashSet<Uid>,
}

impl Controller {
    fn new(cfg: Config, metrics: Arc<Metrics>, actions: Arc<Actions>) -> Self {
        Self {
            cfg,
            metrics,
            actions,
            store: Store::default(),
            retries: HashMap::new(),
            notes: HashMap::new(),
            marked: HashMap::new(),
            in_flight: HashSet::new(),
            again: HashSet::new(),
        }
    }

    /// Takes in what else is queued (one reconcile per workload however many events), and the
    /// workloads due for a retry.
    fn take_queued(&mut self, changes: &mut Receiver<Change>, dirty: &mut HashSet<Uid>) {
        while let Ok(change) = changes.try_recv() {
            dirty.extend(apply(&mut self.store, change));
        }
        self.metrics.queued(QUEUE, changes.len());
        let now = Instant::now();
        for (uid, (at, _)) in &mut self.retries {
            // Tried again now: a new failure backs off from the delay kept here.
            if at.is_some_and(|at| at <= now) {
                *at = None;
                dirty.insert(uid.clone());
            }
        }
    }

    /// A plan was carried out: its workload is retried with backoff if a write failed, and
    /// reconciled again if it changed meanwhile.
    fn finished(&mut self, d: Done) -> Option<Uid> {
        self.in_flight.remove(&d.uid);
        if let Some(p) = d.marked {
            self.marked.insert(d.uid.clone(), p);
        }
        if d.ok {
            self.retries.remove(&d.uid);
        } else {
            let delay = self
                .retries
                .get(&d.uid)
                .map_or(Duration::from_secs(1), |(_, d)| {
                    kruise_observe::api::backoff(*d, Duration::from_secs(60))
                });
            self.retries
                .insert(d.uid.clone(), (Some(Instant::now() + delay), delay));
        }
        self.again.remove(&d.uid).then_some(d.uid)
    }

    fn reconcile_all(&mut self, dirty: HashSet<Uid>) {
        for (kind, n) in self.store.counts() {
            let kind = crate::metrics::KindLabels {
                kind: kind.label().into(),
            };
            let gauge = self.metrics.predownload_workloads.get_or_create(&kind);
            gauge.set(n as i64);
        }
        for uid in dirty {
            if self.in_flight.contains(&uid) {
                self.again.insert(uid);
                continue;
            }
            if let Some(plan) = self.plan(&uid) {
                self.in_flight.insert(uid);
                self.actions.spawn(plan);
            }
        }
    }

    /// One workload: decide; `None` when there is nothing to write.
    fn plan(&mut self, uid: &Uid) -> Option<Plan> {
        let Some(obj) = self.store.workload_object(uid) else {
            self.notes.remove(uid);
            self.marked.remove(uid);
            self.retries.remove(uid);
            return None; // deleted: its jobs go with it (they are its dependents)
        };
        let mut plan = Plan {
            uid: uid.clone(),
            workload: actions::reference(&obj),
            notes: Vec::new(),
            writes: None,
        };
        let revisions = self.store.revisions_of(uid);
        let r = match adapt_decoded(&obj, &revisions, self.cfg.all_workloads) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.predownload_action("invalid");
                let text = e.to_string();
                if self.notes.get(uid) != Some(&text) {
                    tracing::warn!(workload = %actions::describe(&plan.workload), error = %text, "cannot pre-download for this workload");
                    self.note(
                        &mut plan,
                        EventType::Warning,
                        "InvalidImagePreDownload",
                        text,
                    );
                }
                self.retries.remove(uid); // nothing to retry until the object changes
                return (!plan.notes.is_empty()).then_some(plan);
            }
        };
        let pods = self.store.pods_of(uid, &r.revision_key);
        let existing = self.store.jobs_of(uid);
        let mut d = decide(&r, &pods, &existing);
        self.note_waiting(&mut plan, &r, &d);
        let patch = self.unwritten_mark(uid, &r, &mut d);
        if d.create.is_empty() && d.delete.is_empty() && d.mark.is_none() {
            self.retries.remove(uid);
            return (!plan.notes.is_empty()).then_some(plan);
        }
        plan.writes = Some(Writes {
            rollout: r,
            decision: d,
            patch,
        });
        Some(plan)
    }

    /// Says why no job exists yet, once per revision (events of one reason merge into a
    /// series that keeps its first note), and only from a status of this rollout.
    fn note_waiting(&mut self, plan: &mut Plan, r: &Rollout, d: &Decision) {
        if let (Outcome::Waiting { threshold, .. }, true) = (&d.outcome, r.status_current) {
            let text = format!(
                "pre-download for the update to {} waits for {threshold} updated ready pods",
                actions::revision_name(r)
            );
            if self.notes.get(&plan.uid) != Some(&text) {
                self.note(plan, EventType::Normal, "WaitingForUpdatedReadyPods", text);
            }
        }
    }

    /// The mark's patch. The same patch again (the revision watch has not caught up) is not
    /// written: `d.mark` is cleared. A patch for another rollout (a new current revision)
    /// differs, and is written.
    fn unwritten_mark(&mut self, uid: &Uid, r: &Rollout, d: &mut Decision) -> Option<Value> {
        let patch = d.mark.map(|m| mark_patch(r, m));
        match &patch {
            Some(p) if self.marked.get(uid) == Some(p) => d.mark = None,
            Some(_) => {}
            None => {
                self.marked.remove(uid);
            }
        }
        patch
    }

    fn note(&mut self, plan: &mut Plan, type_: EventType, reason: &'static str, text: String) {
        self.notes.insert(plan.uid.clone(), text.clone());
        plan.notes.push(Note {
            type_,
            reason,
            text,
        });
    }
}
