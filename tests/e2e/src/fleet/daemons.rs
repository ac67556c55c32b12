//! Simulated kruise-daemons, one per node, behaving like the real one toward the API: each sees
//! its NodeImage's spec, reports a new tag version as Pulling, reports progress every
//! `progress_interval`, then Succeeded (or Failed, at `fail_rate`) after a pull time drawn
//! around `pull_time`; a tag withdrawn from the spec leaves the status. Status writes are merge
//! patches of the changed images, coalesced per node and drawn from a token bucket (3, then one
//! per 2 s), as the real daemon writes them. One NodeImage watch serves every simulated daemon
//! (5,000 watches with a field selector each would measure the test server, not the manager).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kruise_api::NodeImage;
use kube::api::{Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How the simulated daemons pull.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub pull_time: Duration,
    /// Pull times are drawn uniformly from `pull_time × (1 ± jitter)`.
    pub jitter: f64,
    pub progress_interval: Duration,
    pub fail_rate: f64,
}

/// What the simulated daemons did, shared with the scenario.
#[derive(Default)]
pub struct DaemonStats {
    pub status_writes: AtomicU64,
    /// Per `image key:tag`, when the last node's result (Succeeded or Failed) was written.
    pub last_result: Mutex<HashMap<String, Instant>>,
    /// Results written (one per tag version per node).
    pub results: AtomicU64,
    /// Per node, when its spec changed, as its watch saw it.
    pub spec_changes: Mutex<HashMap<String, Vec<(Instant, usize)>>>,
}

#[derive(Debug, Clone)]
struct TagSim {
    version: i64,
    phase: &'static str,
    progress: i32,
    started: Instant,
    finish_at: Instant,
    fail: bool,
    /// Its result has been written.
    reported: bool,
}

#[derive(Default)]
struct NodeSim {
    tags: BTreeMap<(String, String), TagSim>,
    /// Images whose status changed since the last write (`true`: it is gone from the spec).
    dirty: BTreeMap<String, bool>,
    tokens: f64,
    refilled: Option<Instant>,
    /// A status write of this node is in flight: the next waits for it, so writes land in
    /// order (a late progress write must not undo a result), as the real daemon's one writer.
    writing: bool,
}

const BURST: f64 = 3.0;
const REFILL_EVERY: Duration = Duration::from_secs(2);

impl NodeSim {
    fn take_token(&mut self, now: Instant) -> bool {
        let last = self.refilled.get_or_insert(now);
        self.tokens = (self.tokens
            + now.duration_since(*last).as_secs_f64() / REFILL_EVERY.as_secs_f64())
        .min(BURST);
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn image_status(&self, key: &str) -> Value {
        let tags: Vec<Value> = self
            .tags
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, tag), t)| {
                let mut v = json!({"tag": tag, "phase": t.phase, "version": t.version, "progress": t.progress});
                if t.phase == "Succeeded" || t.phase == "Failed" {
                    v["completionTime"] = json!(k8s_openapi::jiff::Timestamp::now().to_string());
                }
                v
            })
            .collect();
        json!({"tags": tags})
    }
}

/// A timed step of one tag on one node.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Progress,
    Finish,
}

/// A step due at a time: `(when, node, image key, tag, step)`.
type Due = Reverse<(Instant, String, String, String, Step)>;

/// Runs the simulated daemons until `stop`.
pub async fn run(
    client: Client,
    cfg: DaemonConfig,
    stats: Arc<DaemonStats>,
    stop: CancellationToken,
) {
    let api: Api<NodeImage> = Api::all(client.clone());
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut nodes: HashMap<String, NodeSim> = HashMap::new();
    let mut steps: BinaryHeap<Due> = BinaryHeap::new();
    let writes = Arc::new(Semaphore::new(32));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // Finished writes come back: `(node, images written, or None when it failed)`.
    let (done_tx, mut done_rx) =
        tokio::sync::mpsc::unbounded_channel::<(String, Option<Vec<String>>, Vec<String>)>();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some((name, failed, finished)) = done_rx.recv() => {
                let Some(node) = nodes.get_mut(&name) else { continue };
                node.writing = false;
                if let Some(keys) = failed {
                    // Written again on the next tick, results included.
                    for key in keys {
                        node.dirty.entry(key).or_insert(false);
                    }
                    for ((k, tag), t) in node.tags.iter_mut() {
                        if finished.contains(&format!("{k}:{tag}")) {
                            t.reported = false;
                        }
                    }
                }
            }
            e = events.next() => {
                let Some(Ok(e)) = e else { continue };
                let ni = match e {
                    watcher::Event::Apply(ni) | watcher::Event::InitApply(ni) => ni,
                    watcher::Event::Delete(ni) => { nodes.remove(&ni.name_any()); continue }
                    _ => continue,
                };
                let now = Instant::now();
                let name = ni.name_any();
                let node = nodes.entry(name.clone()).or_insert_with(|| NodeSim { tokens: BURST, ..Default::default() });
                let tags: usize = ni.spec.images.values().map(|i| i.tags.len()).sum();
                if node.tags.len() != tags || ni.spec.images.values().flat_map(|i| &i.tags).any(|t| !node.tags.keys().any(|(_, tg)| *tg == t.tag)) {
                    stats.spec_changes.lock().unwrap().entry(name.clone()).or_default().push((now, tags));
                }
                let mut wanted = BTreeMap::new();
                for (key, image) in &ni.spec.images {
                    for t in &image.tags {
                        wanted.insert((key.clone(), t.tag.clone()), t.version);
                    }
                }
                let gone: Vec<(String, String)> = node.tags.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
                for k in gone {
                    node.tags.remove(&k);
                    node.dirty.insert(k.0.clone(), !wanted.keys().any(|w| w.0 == k.0));
                }
                for ((key, tag), version) in wanted {
                    if node.tags.get(&(key.clone(), tag.clone())).is_some_and(|t| t.version == version) {
                        continue;
                    }
                    let draw = 1.0 + cfg.jitter * (2.0 * rng.f64() - 1.0);
                    let took = cfg.pull_time.mul_f64(draw.max(0.05));
                    node.tags.insert((key.clone(), tag.clone()), TagSim {
                        version, phase: "Pulling", progress: 0, started: now,
                        finish_at: now + took, fail: rng.f64() < cfg.fail_rate, reported: false,
                    });
                    node.dirty.insert(key.clone(), false);
                    steps.push(Reverse((now + took, name.clone(), key.clone(), tag.clone(), Step::Finish)));
                    if !cfg.progress_interval.is_zero() && cfg.progress_interval < took {
                        steps.push(Reverse((now + cfg.progress_interval, name.clone(), key.clone(), tag.clone(), Step::Progress)));
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                while steps.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
                    let Reverse((_, name, key, tag, step)) = steps.pop().unwrap();
                    let Some(node) = nodes.get_mut(&name) else { continue };
                    let Some(t) = node.tags.get_mut(&(key.clone(), tag.clone())) else { continue };
                    if t.phase != "Pulling" {
                        continue;
                    }
                    match step {
                        Step::Progress => {
                            let total = t.finish_at.duration_since(t.started).as_secs_f64();
                            t.progress = ((now.duration_since(t.started).as_secs_f64() / total) * 100.0).min(99.0) as i32;
                            if now + cfg.progress_interval < t.finish_at {
                                steps.push(Reverse((now + cfg.progress_interval, name.clone(), key.clone(), tag.clone(), Step::Progress)));
                            }
                        }
                        Step::Finish => {
                            t.phase = if t.fail { "Failed" } else { "Succeeded" };
                            t.progress = 100;
                        }
                    }
                    node.dirty.insert(key, false);
                }
                for (name, node) in nodes.iter_mut() {
                    if node.dirty.is_empty() || node.writing || !node.take_token(now) {
                        continue;
                    }
                    node.writing = true;
                    let dirty = std::mem::take(&mut node.dirty);
                    let mut images = serde_json::Map::new();
                    let mut finished = Vec::new();
                    for (key, gone) in dirty {
                        if gone {
                            images.insert(key, Value::Null);
                        } else {
                            for ((k, tag), t) in node.tags.iter_mut() {
                                if *k == key && t.phase != "Pulling" && !t.reported {
                                    t.reported = true;
                                    finished.push(format!("{k}:{tag}"));
                                }
                            }
                            images.insert(key.clone(), node.image_status(&key));
                        }
                    }
                    let keys: Vec<String> = images.keys().cloned().collect();
                    let patch = json!({"status": {"imageStatuses": images}});
                    let (api, stats, permits, name, done) = (api.clone(), stats.clone(), writes.clone(), name.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let Ok(_p) = permits.acquire_owned().await else { return };
                        if api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                            stats.status_writes.fetch_add(1, Ordering::Relaxed);
                            let at = Instant::now();
                            {
                                let mut last = stats.last_result.lock().unwrap();
                                for f in &finished {
                                    stats.results.fetch_add(1, Ordering::Relaxed);
                                    last.insert(f.clone(), at);
                                }
                            }
                            let _ = done.send((name, None, Vec::new()));
                        } else {
                            let _ = done.send((name, Some(keys), finished));
                        }
                    });
                }
            }
        }
    }
}
