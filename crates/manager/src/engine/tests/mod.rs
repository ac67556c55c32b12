//! The engine, tested like linkerd's index: a simulated API server (`Sim`) stores the objects,
//! carries out the engine's writes as the real one would (resourceVersion preconditions, merge
//! patches), feeds the results and watch events back, and the tests assert what a user would
//! see: NodeImage specs, job statuses, events. No server, no clock but the test's.

mod guarantees;
mod incremental;
mod lockstep;
mod memory;
mod peers;
mod plan;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kruise_api::{ImagePullJob, NodeImage};
use serde_json::{json, Value};

use super::*;
use crate::lean::LeanNode;

/// The tests' clock runs a quarter second past the second, as a real one mostly does: what the
/// engine writes keeps whole seconds (the API's precision), and must still equal what it planned.
pub fn t0() -> Timestamp {
    "2026-11-26T10:00:00.25Z".parse().unwrap()
}

pub fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

/// `at(secs)` as the API stores it: whole seconds.
pub fn stored(secs: i64) -> Timestamp {
    Timestamp::from_second(at(secs).as_second()).unwrap()
}

/// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Settings for tests: statuses written at once, placements at once (a lockstep test sets its
/// own window).
pub fn settings() -> Settings {
    Settings {
        placement_window: std::time::Duration::ZERO,
        status_interval: std::time::Duration::ZERO,
        ..Default::default()
    }
}

pub struct Sim {
    pub engine: Engine,
    pub now: Timestamp,
    rv: u64,
    pub nodes: BTreeMap<String, Value>,
    pub images: BTreeMap<String, Value>,
    pub jobs: BTreeMap<String, Value>,
    pub copies: BTreeMap<String, Secret>,
    pub events: Vec<JobEvent>,
    /// Writes by kind: `nodeimage`, `job_status`.
    pub writes: BTreeMap<&'static str, usize>,
    /// NodeImage spec patches by node.
    pub patches: BTreeMap<String, usize>,
    uid: u64,
    /// What a tag resolves to (`ResolveDigest` writes); others get a digest of their name.
    pub registry: BTreeMap<String, String>,
    /// The digest daemons report for a tag pulled without one (`report`).
    pub pulled_digest: Option<String>,
}

impl Sim {
    pub fn new(settings: Settings) -> Self {
        let mut s = Self {
            engine: Engine::new(settings),
            now: t0(),
            rv: 100,
            nodes: BTreeMap::new(),
            images: BTreeMap::new(),
            jobs: BTreeMap::new(),
            copies: BTreeMap::new(),
            events: Vec::new(),
            writes: BTreeMap::new(),
            patches: BTreeMap::new(),
            uid: 0,
            registry: BTreeMap::new(),
            pulled_digest: None,
        };
        s.list_all();
        s.engine.input(Input::Lead(true), s.now);
        s
    }

    /// An engine that lists the sim's current objects (as a restarted manager would).
    pub fn fresh_engine(&self, settings: Settings) -> Engine {
        let mut e = Engine::new(settings);
        let now = self.now;
        e.input(Input::Node(Event::Init), now);
        for n in self.nodes.values() {
            e.input(
                Input::Node(Event::InitApply(serde_json::from_value(n.clone()).unwrap())),
                now,
            );
        }
        e.input(Input::Node(Event::InitDone), now);
        e.input(Input::NodeImage(Event::Init), now);
        for n in self.images.values() {
            e.input(
                Input::NodeImage(Event::InitApply(serde_json::from_value(n.clone()).unwrap())),
                now,
            );
        }
        e.input(Input::NodeImage(Event::InitDone), now);
        e.input(Input::Job(Event::Init), now);
        for j in self.jobs.values() {
            e.input(
                Input::Job(Event::InitApply(serde_json::from_value(j.clone()).unwrap())),
                now,
            );
        }
        e.input(Input::Job(Event::InitDone), now);
        e.input(Input::ListJob(Event::Init), now);
        e.input(Input::ListJob(Event::InitDone), now);
        e.input(Input::Pod(Event::Init), now);
        e.input(Input::Pod(Event::InitDone), now);
        e.input(Input::DockerConfigJson(Event::Init), now);
        e.input(Input::DockerConfigJson(Event::InitDone), now);
        e.input(Input::DockerCfg(Event::Init), now);
        e.input(Input::DockerCfg(Event::InitDone), now);
        e.input(Input::Copy(Event::Init), now);
        for c in self.copies.values() {
            e.input(Input::Copy(Event::InitApply(c.clone())), now);
        }
        e.input(Input::Copy(Event::InitDone), now);
        e.input(Input::Lead(true), now);
        e
    }

    fn list_all(&mut self) {
        let now = self.now;
        let e = &mut self.engine;
        e.input(Input::Node(Event::Init), now);
        e.input(Input::Node(Event::InitDone), now);
        e.input(Input::NodeImage(Event::Init), now);
        e.input(Input::NodeImage(Event::InitDone), now);
        e.input(Input::Job(Event::Init), now);
        e.input(Input::Job(Event::InitDone), now);
        e.input(Input::ListJob(Event::Init), now);
        e.input(Input::ListJob(Event::InitDone), now);
        e.input(Input::Pod(Event::Init), now);
        e.input(Input::Pod(Event::InitDone), now);
        e.input(Input::DockerConfigJson(Event::Init), now);
        e.input(Input::DockerConfigJson(Event::InitDone), now);
        e.input(Input::DockerCfg(Event::Init), now);
        e.input(Input::DockerCfg(Event::InitDone), now);
        e.input(Input::Copy(Event::Init), now);
        e.input(Input::Copy(Event::InitDone), now);
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    pub fn at(&mut self, secs: i64) {
        self.now = at(secs);
    }

    /// A Ready Node (Ready for an hour) with `labels`.
    pub fn node(&mut self, name: &str, labels: Value) {
        let rv = self.next_rv();
        let n = json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels, "resourceVersion": rv},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T09:00:00Z"}]}});
        self.nodes.insert(name.into(), n.clone());
        let lean: LeanNode = serde_json::from_value(n).unwrap();
        self.engine.input(Input::Node(Event::Apply(lean)), self.now);
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(n) = self.nodes.remove(name) {
            let lean: LeanNode = serde_json::from_value(n).unwrap();
            self.engine
                .input(Input::Node(Event::Delete(lean)), self.now);
        }
    }

    /// `count` Ready nodes n0, n1, … in pools a and b, and their NodeImages.
    pub fn cluster(count: usize) -> Self {
        let mut s = Self::new(settings());
        for i in 0..count {
            s.node(
                &format!("n{i}"),
                json!({"pool": if i % 2 == 0 { "a" } else { "b" }}),
            );
        }
        s.run();
        s
    }

    /// A NodeImage created by hand (a fake one, or an orphan).
    pub fn node_image(&mut self, name: &str, labels: Value, spec: Value) {
        let rv = self.next_rv();
        let ni = json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage",
            "metadata": {"name": name, "uid": format!("uid-ni-{name}"), "labels": labels, "resourceVersion": rv}, "spec": spec});
        self.images.insert(name.into(), ni.clone());
        self.engine.input(
            Input::NodeImage(Event::Apply(serde_json::from_value(ni).unwrap())),
            self.now,
        );
    }

    /// Creates (or replaces) a job `ns/name`; `spec` is merged over image and Always.
    pub fn job(&mut self, name: &str, image: &str, spec: Value) {
        let mut s = json!({"image": image, "completionPolicy": {"type": "Always"}});
        merge(&mut s, &spec);
        self.uid += 1;
        let rv = self.next_rv();
        let j = json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}-{}", self.uid), "resourceVersion": rv,
                "creationTimestamp": "2026-11-26T09:30:00Z"},
            "spec": s});
        self.jobs.insert(format!("ns/{name}"), j.clone());
        self.engine.input(
            Input::Job(Event::Apply(serde_json::from_value(j).unwrap())),
            self.now,
        );
    }

    /// Edits a job's spec with a merge patch.
    pub fn edit_job(&mut self, name: &str, patch: Value) {
        let rv = self.next_rv();
        let key = format!("ns/{name}");
        let j = self.jobs.get_mut(&key).expect("job exists");
        merge(&mut j["spec"], &patch);
        j["metadata"]["resourceVersion"] = json!(rv);
        let j = j.clone();
        self.engine.input(
            Input::Job(Event::Apply(serde_json::from_value(j).unwrap())),
            self.now,
        );
    }

    /// Edits a job's metadata with a merge patch (annotations, labels).
    pub fn edit_meta(&mut self, name: &str, patch: Value) {
        let rv = self.next_rv();
        let j = self
            .jobs
            .get_mut(&format!("ns/{name}"))
            .expect("job exists");
        merge(&mut j["metadata"], &patch);
        j["metadata"]["resourceVersion"] = json!(rv);
        let j = j.clone();
        self.engine.input(
            Input::Job(Event::Apply(serde_json::from_value(j).unwrap())),
            self.now,
        );
    }

    pub fn delete_job(&mut self, name: &str) {
        if let Some(j) = self.jobs.remove(&format!("ns/{name}")) {
            self.engine.input(
                Input::Job(Event::Delete(serde_json::from_value(j).unwrap())),
                self.now,
            );
        }
    }

    pub fn copy(&mut self, secret: Secret) {
        let name = secret.metadata.name.clone().unwrap();
        self.copies.insert(name, secret.clone());
        self.engine
            .input(Input::Copy(Event::Apply(secret)), self.now);
    }

    pub fn source(&mut self, secret: Secret) {
        self.engine
            .input(Input::DockerConfigJson(Event::Apply(secret)), self.now);
    }

    /// The daemon on `node` reports `phase` for every tag of its spec.
    pub fn report(&mut self, node: &str, phase: &str) {
        self.report_with(node, phase, &json!({}));
    }

    /// `report`, each tag's report with `extra` fields merged in (bytes).
    pub fn report_with(&mut self, node: &str, phase: &str, extra: &Value) {
        let rv = self.next_rv();
        let ni = self.images.get_mut(node).expect("NodeImage exists");
        let mut statuses = serde_json::Map::new();
        for (key, image) in ni["spec"]["images"]
            .as_object()
            .cloned()
            .unwrap_or_default()
        {
            let pulled = self.pulled_digest.clone();
            let tags: Vec<Value> = image["tags"].as_array().unwrap().iter().map(|t| {
                let digest = t.get("digest").cloned().unwrap_or(json!(pulled));
                let mut t = json!({"tag": t["tag"], "phase": phase, "version": t.get("version").cloned().unwrap_or(json!(0)), "completionTime": "2026-11-26T10:00:00Z", "digest": digest});
                merge(&mut t, extra);
                t
            }).collect();
            statuses.insert(key, json!({"tags": tags}));
        }
        ni["status"] = json!({"imageStatuses": statuses});
        ni["metadata"]["resourceVersion"] = json!(rv);
        let ni = ni.clone();
        self.engine.input(
            Input::NodeImage(Event::Apply(serde_json::from_value(ni).unwrap())),
            self.now,
        );
    }

    /// The daemon on `node` reports `phase` for one tag, keeping its other tags' reports.
    pub fn report_tag(&mut self, node: &str, key: &str, tag: &str, phase: &str) {
        self.report_tag_with(node, key, tag, phase, &json!({}));
    }

    /// [`Sim::report_tag`] with `extra` fields merged into the tag's report (digest, bytes).
    pub fn report_tag_with(
        &mut self,
        node: &str,
        key: &str,
        tag: &str,
        phase: &str,
        extra: &Value,
    ) {
        let rv = self.next_rv();
        let ni = self.images.get_mut(node).expect("NodeImage exists");
        let version = ni["spec"]["images"][key]["tags"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["tag"] == tag))
            .and_then(|t| t.get("version").cloned())
            .unwrap_or(json!(0));
        let mut tags: Vec<Value> = ni["status"]["imageStatuses"][key]["tags"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        tags.retain(|t| t["tag"] != tag);
        let mut t = json!({"tag": tag, "phase": phase, "version": version});
        merge(&mut t, extra);
        tags.push(t);
        if !ni["status"].is_object() {
            ni["status"] = json!({"imageStatuses": {}});
        }
        ni["status"]["imageStatuses"][key] = json!({"tags": tags});
        ni["metadata"]["resourceVersion"] = json!(rv);
        let ni = ni.clone();
        self.engine.input(
            Input::NodeImage(Event::Apply(serde_json::from_value(ni).unwrap())),
            self.now,
        );
    }

    /// Rounds until the engine has nothing left to do now, carrying out its writes.
    pub fn run(&mut self) {
        for _ in 0..50 {
            let due = self.engine.next_timer().is_some_and(|t| t <= self.now);
            if !self.engine.has_work() && !due {
                return;
            }
            let writes = self.engine.round(self.now);
            for w in writes {
                self.execute(w);
            }
        }
        panic!("the engine did not settle in 50 rounds");
    }

    fn count(&mut self, kind: &'static str) {
        *self.writes.entry(kind).or_default() += 1;
    }

    fn done(&mut self, d: Done) {
        self.engine.input(Input::Done(d), self.now);
    }

    fn execute(&mut self, w: Write) {
        match w {
            Write::CreateNodeImage {
                name,
                labels,
                node_uid,
                spec,
            } => {
                self.count("nodeimage");
                let rv = self.next_rv();
                let ni = json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage",
                    "metadata": {"name": name, "uid": format!("uid-ni-{name}"), "labels": labels, "resourceVersion": rv,
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]},
                    "spec": spec});
                self.images.insert(name.clone(), ni.clone());
                let ni: NodeImage = serde_json::from_value(ni).unwrap();
                self.done(Done::NodeImage {
                    name,
                    result: Ok(Some(Box::new(ni))),
                });
            }
            Write::PatchNodeImage { name, patch } => {
                self.count("nodeimage");
                *self.patches.entry(name.clone()).or_default() += 1;
                let Some(current) = self.images.get(&name) else {
                    return self.done(Done::NodeImage {
                        name,
                        result: Err(WriteError::NotFound),
                    });
                };
                if patch["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return self.done(Done::NodeImage {
                        name,
                        result: Err(WriteError::Conflict),
                    });
                }
                let rv = self.next_rv();
                let ni = self.images.get_mut(&name).unwrap();
                merge(ni, &patch);
                ni["metadata"]["resourceVersion"] = json!(rv);
                let ni: NodeImage = serde_json::from_value(ni.clone()).unwrap();
                self.done(Done::NodeImage {
                    name,
                    result: Ok(Some(Box::new(ni))),
                });
            }
            Write::DeleteNodeImage { name, .. } => {
                self.count("nodeimage");
                self.images.remove(&name);
                self.done(Done::NodeImage {
                    name,
                    result: Ok(None),
                });
            }
            Write::JobStatus {
                uid,
                namespace,
                name,
                patch,
                events,
            } => {
                self.count("job_status");
                let key = format!("{namespace}/{name}");
                let Some(current) = self.jobs.get(&key) else {
                    return self.done(Done::JobStatus {
                        uid,
                        result: Err(WriteError::NotFound),
                    });
                };
                if patch["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return self.done(Done::JobStatus {
                        uid,
                        result: Err(WriteError::Conflict),
                    });
                }
                let rv = self.next_rv();
                let j = self.jobs.get_mut(&key).unwrap();
                merge(j, &json!({"status": patch["status"]}));
                j["metadata"]["resourceVersion"] = json!(rv);
                let job: ImagePullJob = serde_json::from_value(j.clone()).unwrap();
                self.events.extend(events);
                self.done(Done::JobStatus {
                    uid,
                    result: Ok(Box::new(job)),
                });
            }
            Write::ResolveDigest(req) => {
                // The registry of these tests: what `registry` says, else a digest of the name.
                let image = req.image.clone();
                let digest = self
                    .registry
                    .get(&image)
                    .cloned()
                    .unwrap_or_else(|| format!("sha256:{:0>64}", image.len()));
                let answer = match digest.as_str() {
                    "unreachable" => Err("connection refused".to_string()),
                    _ => Ok(digest),
                };
                let resolved = crate::digests::outcome(&req, answer, &[]);
                let key = format!("{}/{}", req.namespace, req.name);
                let rv = self.jobs[&key]["metadata"]["resourceVersion"].clone();
                self.execute(Write::JobStatus {
                    uid: req.uid,
                    namespace: req.namespace,
                    name: req.name,
                    patch: json!({"status": resolved.status["status"], "metadata": {"resourceVersion": rv}}),
                    events: resolved.event.into_iter().collect(),
                });
            }
            Write::DeleteJob {
                uid,
                namespace,
                name,
            } => {
                let key = format!("{namespace}/{name}");
                if let Some(j) = self.jobs.remove(&key) {
                    self.engine.input(
                        Input::Job(Event::Delete(serde_json::from_value(j).unwrap())),
                        self.now,
                    );
                }
                self.done(Done::Job {
                    uid,
                    result: Ok(()),
                });
            }
            Write::ReleaseFinalizer { uid, .. } => self.done(Done::Job {
                uid,
                result: Ok(()),
            }),
            Write::Secrets { want, .. } => {
                for (_, s) in want {
                    self.copy(s);
                }
                self.done(Done::Secrets { failed: 0 });
            }
            Write::List { list, .. } => self.done(Done::List {
                uid: list.metadata.uid.clone().unwrap_or_default(),
                requeue: None,
                failed: 0,
            }),
        }
    }

    /// Nodes whose spec lists `key:tag`, with the owners' names.
    pub fn tagged(&self, key: &str, tag: &str) -> BTreeMap<String, Vec<String>> {
        self.images
            .iter()
            .filter_map(|(n, ni)| {
                let tags = ni["spec"]["images"][key]["tags"].as_array()?;
                let t = tags.iter().find(|t| t["tag"] == tag)?;
                let owners = t["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| o["name"].as_str().unwrap().to_string())
                    .collect();
                Some((n.clone(), owners))
            })
            .collect()
    }

    pub fn nodes_with(&self, key: &str, tag: &str) -> Vec<String> {
        self.tagged(key, tag).into_keys().collect()
    }

    pub fn status(&self, name: &str) -> kruise_api::ImagePullJobStatus {
        serde_json::from_value(self.jobs[&format!("ns/{name}")]["status"].clone())
            .unwrap_or_default()
    }

    pub fn spec(&self, node: &str) -> kruise_api::NodeImageSpec {
        serde_json::from_value(self.images[node]["spec"].clone()).unwrap_or_default()
    }

    pub fn take_events(&mut self) -> Vec<JobEvent> {
        std::mem::take(&mut self.events)
    }
}
