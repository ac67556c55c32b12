//! Writes: one at a time per object (the next waits for the last's result), patches that carry
//! the resourceVersion they were computed from, job statuses at most once a second per job (a
//! completion at once), and what each result means: a written object is the engine's new copy,
//! a conflict waits for the newer version before trying again, a failure backs off.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::round::after;
use super::spec::{images_patch, Name};
use super::status;
use super::timers::Timer;
use super::{Done, Engine, Write, WriteError};

/// Resolutions of one job whose result the API server did not keep, before it is placed
/// without a digest.
pub(super) const MAX_DIGEST_TRIES: u32 = 3;

/// Writes waiting for their result, and what failed lately.
#[derive(Default)]
pub struct InFlight {
    /// NodeImage writes in flight, with the resourceVersion each carried.
    pub node_images: HashMap<Name, String>,
    /// NodeImages whose patch met a conflict, with the resourceVersion it met: written again once
    /// a newer version is seen.
    pub conflicted: HashMap<Name, String>,
    /// Failures in a row per object, for the backoff.
    pub failures: HashMap<String, u32>,
    pub jobs: HashSet<Name>,
    /// When each job's status was last written.
    pub job_written_at: HashMap<Name, Timestamp>,
    pub job_deletes: HashSet<Name>,
    pub secrets: bool,
    pub lists: HashSet<Name>,
    pub lists_again: HashSet<Name>,
}

/// 1 s, doubling to 60 s, while writes of one object keep failing.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Status as a merge patch that also clears fields the new status no longer has, guarded by the
/// resourceVersion it was computed from.
pub fn status_patch<S: serde::Serialize>(
    old: &S,
    new: &S,
    resource_version: Option<String>,
) -> Value {
    let mut n = serde_json::to_value(new).expect("status serialises");
    let o = serde_json::to_value(old).expect("status serialises");
    if let (Some(n), Some(o)) = (n.as_object_mut(), o.as_object()) {
        for k in o.keys() {
            n.entry(k.clone()).or_insert(Value::Null);
        }
    }
    let mut patch = json!({ "status": n });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    patch
}

fn labels_patch(
    old: &std::collections::BTreeMap<String, String>,
    new: &std::collections::BTreeMap<String, String>,
) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            m.insert(k.clone(), json!(v));
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        m.insert(k.clone(), Value::Null);
    }
    Value::Object(m)
}

impl Engine {
    fn failed(&mut self, key: String, timer: Timer, now: Timestamp) {
        let n = self.writes.failures.entry(key).or_default();
        *n += 1;
        let wait = backoff(*n);
        self.timers.at(after(now, wait), timer);
    }

    /// A write's result.
    pub(super) fn done(&mut self, done: Done, now: Timestamp) {
        self.mark(now);
        match done {
            Done::NodeImage { name, result } => self.node_image_written(&name, result, now),
            Done::JobStatus { uid, result } => {
                let uid = self.interner.name(&uid);
                self.writes.jobs.remove(&uid);
                match result {
                    Ok(job) => {
                        self.writes.failures.remove(&*uid);
                        self.apply_job(*job, now);
                    }
                    // The job changed since (a spec edit): its watch event replans it.
                    Err(WriteError::Conflict) => {
                        self.timers
                            .at(after(now, Duration::from_secs(2)), Timer::Job(uid));
                    }
                    Err(WriteError::NotFound) => {}
                    Err(WriteError::Failed(_)) => {
                        self.failed(uid.to_string(), Timer::Job(uid), now)
                    }
                }
            }
            Done::Job { uid, result } => {
                let uid = self.interner.name(&uid);
                self.writes.job_deletes.remove(&uid);
                if let Err(WriteError::Failed(_)) = result {
                    self.failed(format!("job/{uid}"), Timer::Job(uid), now);
                }
            }
            Done::Secrets { failed } => {
                self.writes.secrets = false;
                if failed > 0 {
                    self.failed("secrets".into(), Timer::Secrets, now);
                } else {
                    self.writes.failures.remove("secrets");
                }
            }
            Done::List {
                uid,
                requeue,
                failed,
            } => self.list_written(&uid, requeue, failed, now),
        }
    }

    fn node_image_written(
        &mut self,
        name: &str,
        result: Result<Option<Box<kruise_api::NodeImage>>, WriteError>,
        now: Timestamp,
    ) {
        let name = self.interner.name(name);
        let carried = self.writes.node_images.remove(&name).unwrap_or_default();
        self.dirty_lifecycle.insert(name.clone());
        match result {
            Ok(Some(ni)) => {
                self.writes.failures.remove(&*name);
                self.apply_node_image(&ni, true, now);
                if self.planned.contains_key(&name) {
                    self.dirty_writes.insert(name);
                }
            }
            Ok(None) => {
                self.writes.failures.remove(&*name);
                self.delete_node_image(&name, now);
            }
            Err(WriteError::Conflict) => self.node_image_conflict(name, carried, now),
            Err(WriteError::NotFound) => {
                let before = self.owners_of(&name);
                let roles = self.peer_roles(&name);
                self.planned.remove(&name);
                self.view_changed(&name, before, roles);
            }
            Err(WriteError::Failed(_)) => {
                self.failed(name.to_string(), Timer::Write(name), now);
            }
        }
    }

    /// A NodeImage patch met a newer object than the `carried` resourceVersion it was planned
    /// from.
    fn node_image_conflict(&mut self, name: Name, carried: String, now: Timestamp) {
        let Some(rec) = self.images.get(&name) else {
            return;
        };
        let seen_newer = rec.resource_version != carried;
        let generation = rec.spec_generation;
        match self.planned.get(&name) {
            // Only the status moved on (the daemon wrote), and the newer version is here: the
            // same spec goes out again with it.
            Some(p) if p.base == generation && seen_newer => {
                self.dirty_writes.insert(name);
            }
            // ... or not yet: once it is (or in 2 s at the latest).
            Some(p) if p.base == generation => {
                self.writes.conflicted.insert(name.clone(), carried);
                self.timers
                    .at(after(now, Duration::from_secs(2)), Timer::Write(name));
            }
            // The spec it was planned from changed: plan again from the new one.
            _ => {
                let before = self.owners_of(&name);
                let roles = self.peer_roles(&name);
                self.planned.remove(&name);
                self.view_changed(&name, before, roles);
            }
        }
    }

    fn list_written(
        &mut self,
        uid: &str,
        requeue: Option<Duration>,
        failed: usize,
        now: Timestamp,
    ) {
        let uid = self.interner.name(uid);
        self.writes.lists.remove(&uid);
        if self.writes.lists_again.remove(&uid) {
            self.dirty_lists.insert(uid.clone());
        }
        if let Some(r) = requeue {
            self.timers.at(after(now, r), Timer::List(uid.clone()));
        }
        if failed > 0 {
            self.failed(format!("list/{uid}"), Timer::List(uid), now);
        }
    }

    /// Job statuses that changed, at most one write per job per `status_interval` (a completion
    /// at once); the TTL deletion of finished jobs; OpenKruise's finalizer off deleted jobs.
    pub(super) fn status_step(&mut self, now: Timestamp, out: &mut Vec<Write>) {
        let response = self.settings.response_timeout.as_secs();
        for uid in std::mem::take(&mut self.dirty_status) {
            let Some(job) = self.jobs.get(&uid) else {
                continue;
            };
            let info = &job.info;
            let ns = info.job.metadata.namespace.clone().unwrap_or_default();
            let name = info.job.metadata.name.clone().unwrap_or_default();
            if info.deleting {
                if let Some(patch) = crate::adopt::finalizer_patch(&info.job) {
                    if self.writes.job_deletes.insert(uid.clone()) {
                        out.push(Write::ReleaseFinalizer {
                            uid: uid.to_string(),
                            namespace: ns,
                            name,
                            patch,
                        });
                    }
                }
                continue;
            }
            if self.writes.jobs.contains(&uid) {
                self.timers
                    .at(after(now, Duration::from_millis(500)), Timer::Job(uid));
                continue;
            }
            if self.resolve_step(&uid, now, out) {
                continue;
            }
            let Some(job) = self.jobs.get(&uid) else {
                continue;
            };
            let info = &job.info;
            let peers = self.settings.peers_on();
            let mut computed = status::compute(job, &self.synced, response, peers, now);
            if let Some((node, digest)) = self.first_node_digest(job) {
                status::take_node_digest(job, &mut computed, &node, &digest);
            }
            if let Some(at) = computed.wake_at {
                self.timers.at(at, Timer::Job(uid.clone()));
            }
            if computed.delete {
                if self.writes.job_deletes.insert(uid.clone()) {
                    out.push(Write::DeleteJob {
                        uid: uid.to_string(),
                        namespace: ns,
                        name,
                    });
                }
                continue;
            }
            let old = info.job.status.clone().unwrap_or_default();
            if computed.status == old {
                continue;
            }
            let completing = computed.status.completion_time.is_some();
            if let Some(last) = self.writes.job_written_at.get(&uid) {
                let next = after(*last, self.settings.status_interval);
                if next > now && !completing {
                    self.timers.at(next, Timer::Job(uid));
                    continue;
                }
            }
            let patch = status_patch(
                &old,
                &computed.status,
                info.job.metadata.resource_version.clone(),
            );
            self.writes.jobs.insert(uid.clone());
            self.writes.job_written_at.insert(uid.clone(), now);
            out.push(Write::JobStatus {
                uid: uid.to_string(),
                namespace: ns,
                name,
                patch,
                events: computed.events,
            });
        }
    }

    /// Resolves the job's tag when it waits for its digest, or when a `Never` job's periodic
    /// check is due; returns whether a resolution went out (the job's status waits for it).
    fn resolve_step(&mut self, uid: &Name, now: Timestamp, out: &mut Vec<Write>) -> bool {
        let Some(job) = self.jobs.get(uid) else {
            return false;
        };
        let info = &job.info;
        if !self.settings.resolve_digests || info.completed() || info.deleting {
            return false;
        }
        let resolved_once = (info.job.status.as_ref())
            .is_some_and(|s| s.digest.is_some() || s.digest_message.is_some());
        let recheck = self.recheck_digest.remove(uid) && !info.always_complete && resolved_once;
        if recheck {
            let every = self.settings.digest_check_interval;
            self.timers
                .at(after(now, every), Timer::Resolve(uid.clone()));
        }
        if !(info.awaiting_digest || recheck) {
            return false;
        }
        if info.awaiting_digest {
            // A status that keeps coming back without the digest (CRDs older than this
            // manager prune the new fields) is tried three times, then placed without one.
            let tries = self.digest_tries.entry(uid.clone()).or_default();
            *tries += 1;
            if *tries > MAX_DIGEST_TRIES {
                tracing::error!(job = %info.key, "the API server keeps dropping status.digest and status.resolvedImage: its ImagePullJob CRD is older than this manager (helm upgrade does not update CRDs: kubectl apply -f the chart's crds/); placing the job without a digest");
                let job = self.jobs.get_mut(uid).expect("looked up above");
                job.info.awaiting_digest = false;
                self.dirty_place.insert(uid.clone());
                return false;
            }
        }
        let st = info.job.status.as_ref();
        let request = crate::digests::Request {
            uid: uid.to_string(),
            key: info.key.to_string(),
            namespace: info.job.metadata.namespace.clone().unwrap_or_default(),
            name: info.job.metadata.name.clone().unwrap_or_default(),
            image: info.job.spec.image.clone(),
            pull_secrets: (info.job.spec.template.pull_secrets.clone()).unwrap_or_default(),
            desired: st.map_or(0, |s| s.desired),
            current: info.digest.as_deref().map(str::to_string),
        };
        self.writes.jobs.insert(uid.clone());
        out.push(Write::ResolveDigest(request));
        true
    }

    /// For a job the manager could not resolve: a node that pulled the tag, and the digest it
    /// got (the first by name, so every round picks the same).
    fn first_node_digest(&self, job: &super::jobs::JobState) -> Option<(Name, Name)> {
        let status = job.info.job.status.as_ref()?;
        if job.info.digest.is_some() || status.digest_message.is_none() {
            return None;
        }
        let (key, tag) = job.info.image.as_ref().ok()?;
        (job.cells.iter())
            .filter(|(_, c)| **c == super::jobs::Cell::Succeeded)
            .filter_map(|(node, _)| {
                let report = self.images.get(node)?.status.get(key, tag)?;
                let digest = report
                    .digest
                    .filter(|d| kruise_api::imageref::is_sha256_digest(d))?;
                Some((node.clone(), digest))
            })
            .min()
    }

    /// One patch per NodeImage whose planned spec or labels differ from the stored ones.
    pub(super) fn node_write_step(&mut self, out: &mut Vec<Write>) {
        for node in std::mem::take(&mut self.dirty_writes) {
            if self.writes.node_images.contains_key(&node)
                || self.writes.conflicted.contains_key(&node)
            {
                continue; // the result, or a newer version, brings it back
            }
            let (Some(rec), Some(p)) = (self.images.get(&node), self.planned.get(&node)) else {
                continue;
            };
            let mut patch = json!({"metadata": {"resourceVersion": rec.resource_version}});
            let mut changed = false;
            if p.spec != rec.spec {
                patch["spec"] = json!({"images": images_patch(&rec.spec, &p.spec)});
                changed = true;
            }
            if let Some(labels) = p.labels.as_ref().filter(|l| **l != rec.labels) {
                patch["metadata"]["labels"] = labels_patch(&rec.labels, labels);
                changed = true;
            }
            if !changed {
                self.planned.remove(&node);
                continue;
            }
            self.writes
                .node_images
                .insert(node.clone(), rec.resource_version.clone());
            out.push(Write::PatchNodeImage {
                name: node.to_string(),
                patch,
            });
        }
    }
}
