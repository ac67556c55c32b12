//! Adapters and decisions on workloads built as JSON, no server: each test states a rollout
//! and asserts the jobs, deletions and mark. The helpers (workloads, revisions and pods as
//! JSON) are here; the tests are grouped by topic: [`cloneset`] (OpenKruise's CloneSet rules),
//! [`versions`] (each field where each OpenKruise version keeps it, checked against the
//! published CRDs), [`kinds`] (the other kinds), [`decisions`] (images, marks, cleanup, order,
//! errors), [`lean`] (what the controller keeps of the watched objects).

mod cloneset;
mod decisions;
mod kinds;
mod lean;
mod versions;

use serde_json::{json, Value};

use super::model::*;
use super::*;

const NOW: i64 = 1_700_000_000;

/// Sets a dotted path, creating the objects on the way.
fn set(v: &mut Value, path: &str, x: Value) {
    let (parents, last) = path.rsplit_once('.').unwrap_or(("", path));
    let mut at = v;
    for key in parents.split('.').filter(|k| !k.is_empty()) {
        if !at.get(key).is_some_and(Value::is_object) {
            at[key] = json!({});
        }
        at = &mut at[key];
    }
    at[last] = x;
}

fn with(mut v: Value, path: &str, x: Value) -> Value {
    set(&mut v, path, x);
    v
}

fn template(containers: &[(&str, &str)]) -> Value {
    let cs: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({"name": n, "image": i}))
        .collect();
    json!({
        "metadata": {"labels": {"app": "web"}, "annotations": {"team": "a"}},
        "spec": {"containers": cs, "imagePullSecrets": [{"name": "regcred"}]},
    })
}

/// A ControllerRevision `web-<hash>` owned by uid-1.
fn cr(hash: &str, number: i64, containers: &[(&str, &str)]) -> Value {
    let mut t = template(containers);
    t["$patch"] = json!("replace");
    json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": format!("web-{hash}"), "namespace": "ns",
            "labels": {"controller.kubernetes.io/hash": hash},
            "ownerReferences": [{"uid": "uid-1", "controller": true}]},
        "revision": number,
        "data": {"spec": {"template": t}},
    })
}

fn revisions() -> Vec<Value> {
    vec![
        cr("v1", 1, &[("app", "nginx:1")]),
        cr("v2", 2, &[("app", "nginx:2")]),
    ]
}

fn workload(api_version: &str, kind: &str, containers: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "generation": 2},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
                 "template": template(containers)},
        "status": {"observedGeneration": 2, "updateRevision": "web-v2",
                   "currentRevision": "web-v1", "updatedReadyReplicas": 0},
    })
}

/// OpenKruise's e2e CloneSet (its v1alpha1 twin, as OpenKruise v1.9 serves it): 5 replicas,
/// in place, partition 1, 20% maxUnavailable.
fn cloneset() -> Value {
    let cs = workload("apps.kruise.io/v1alpha1", "CloneSet", &[("app", "nginx:2")]);
    let cs = with(cs, "spec.updateStrategy.type", json!("InPlaceIfPossible"));
    with(cs, "spec.updateStrategy.partition", json!(1))
}

/// The same CloneSet as OpenKruise's main branch serves it (v1beta1): the rollout fields under
/// `updateStrategy.rollingUpdate`.
fn cloneset_v1beta1() -> Value {
    let cs = workload("apps.kruise.io/v1beta1", "CloneSet", &[("app", "nginx:2")]);
    with(
        cs,
        "spec.updateStrategy",
        json!({"type": "RollingUpdate",
            "rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible", "partition": 1}}),
    )
}

fn pod(name: &str, node: Option<&str>, rev: &str, ready: bool) -> PodView {
    PodView {
        name: name.into(),
        node: node.map(Into::into),
        revision: Some(rev.into()),
        ready,
        terminating: false,
        ordinal: ordinal(name),
        created: Some(NOW),
    }
}

/// Five pods, one per node n0..n4; the first `updated` are on web-v2.
fn pods(updated: usize) -> Vec<PodView> {
    (0..5)
        .map(|i| {
            let rev = if i < updated { "web-v2" } else { "web-v1" };
            pod(&format!("web-{i}"), Some(&format!("n{i}")), rev, true)
        })
        .collect()
}

fn rollout(v: &Value, revs: &[Value]) -> Rollout {
    adapt(v, revs, false).expect("adapts")
}

fn run(v: &Value, pods: &[PodView], existing: &[ExistingJob]) -> Decision {
    decide(&rollout(v, &revisions()), pods, existing)
}

fn images(d: &Decision) -> Vec<&str> {
    d.create.iter().map(|j| j.spec.image.as_str()).collect()
}

fn existing(name: &str, image: &str, rev: Option<&str>) -> ExistingJob {
    ExistingJob {
        name: name.into(),
        image: image.into(),
        revision: rev.map(Into::into),
    }
}

fn ignored(v: &Value) -> Ignore {
    let d = run(v, &pods(0), &[]);
    assert_eq!((d.mark, d.create.len()), (Some(Mark::Ignored), 0));
    match d.outcome {
        Outcome::Ignored(why) => why,
        other => panic!("not ignored: {other:?}"),
    }
}

fn error(v: &Value) -> AdapterError {
    adapt(v, &revisions(), true).expect_err("refused")
}
