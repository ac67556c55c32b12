//! What the controller keeps of the watched objects: revisions decoded into their images and
//! marks, workloads without their pod template's spec; and that the decisions read from these
//! are those read from the whole objects.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::predownload::revisions::RevisionRecord;
use crate::predownload::store::{lean_workload, Event, Store, WatchedRevision};

/// `v` with a uid and the full ownerReference the API server returns (the store indexes by
/// both).
fn owned_by_the_cloneset(v: Value) -> Value {
    let owner = json!([{"apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet",
        "name": "web", "uid": "uid-1", "controller": true}]);
    let uid = format!("uid-{}", v["metadata"]["name"].as_str().unwrap());
    with(
        with(v, "metadata.uid", uid.into()),
        "metadata.ownerReferences",
        owner,
    )
}

/// A revision of a real size: env, probes, resources and foreign labels and annotations.
fn busy_revision(hash: &str, number: i64, image: &str) -> Value {
    let mut v = cr(hash, number, &[("app", image)]);
    let env: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("E{i}"), "value": "x".repeat(100)}))
        .collect();
    v["data"]["spec"]["template"]["spec"]["containers"][0]["env"] = env.into();
    v["metadata"]["labels"]["team"] = json!("payments");
    v["metadata"]["annotations"] =
        json!({"note": "y".repeat(2000), MARK_FROM_ANNOTATION: "web-v1"});
    v["metadata"]["labels"][CREATED_MARK] = json!("true");
    v
}

#[test]
fn a_revision_keeps_its_images_and_marks_only() {
    let record = RevisionRecord::controller_revision(&busy_revision("v2", 2, "nginx:2"));
    let p = record.parsed.expect("reads");
    assert_eq!(record.controller.as_deref(), Some("uid-1"));
    assert_eq!(
        (p.rev.name.as_str(), p.rev.hash.as_str(), p.rev.number),
        ("web-v2", "v2", 2)
    );
    assert_eq!(
        p.rev.containers,
        vec![("app".to_string(), "nginx:2".to_string())]
    );
    assert_eq!(
        p.rev.labels,
        BTreeMap::from([(CREATED_MARK.to_string(), "true".to_string())])
    );
    assert_eq!(
        p.rev.annotations,
        BTreeMap::from([(MARK_FROM_ANNOTATION.to_string(), "web-v1".to_string())])
    );
}

#[test]
fn the_in_place_fingerprint_ignores_images_labels_and_key_order() {
    let shape = |v: &Value| RevisionRecord::controller_revision(v).parsed.unwrap().shape;
    let v1 = busy_revision("v1", 1, "nginx:1");
    let mut v2 = busy_revision("v2", 2, "nginx:2");
    v2["data"]["spec"]["template"]["metadata"]["labels"]["extra"] = json!("1");
    assert_eq!(shape(&v1), shape(&v2), "only the image and labels differ");
    // The same template with its keys in another order (as another writer may send them).
    let mut reordered = v1.clone();
    let t = &v1["data"]["spec"]["template"];
    reordered["data"]["spec"]["template"] =
        json!({"spec": t["spec"], "metadata": t["metadata"], "$patch": "replace"});
    assert_eq!(shape(&v1), shape(&reordered));
    let mut v3 = busy_revision("v3", 3, "nginx:3");
    v3["data"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!("changed");
    assert_ne!(shape(&v1), shape(&v3), "an env change is not in place");
}

#[test]
fn a_revision_that_cannot_be_read_keeps_its_error_for_its_workload() {
    let mut broken = cr("v2", 2, &[("app", "nginx:2")]);
    broken["data"]["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
    let mut store = Store::default();
    store.workload(Kind::CloneSet, Event::Apply(cloneset()));
    for v in [cr("v1", 1, &[("app", "nginx:1")]), broken] {
        let v = owned_by_the_cloneset(v);
        store.revision(Event::Apply(WatchedRevision::controller_revision(&v)));
    }
    let uid = "uid-1".to_string();
    let workload = store.workload_object(&uid).expect("held");
    let e = adapt_decoded(&workload, &store.revisions_of(&uid), false).expect_err("refused");
    assert_eq!(
        e.field(),
        Some("data.spec.template.spec.containers[0].image")
    );
}

#[test]
fn decisions_from_the_store_equal_decisions_from_the_objects() {
    let revs = vec![
        busy_revision("v1", 1, "nginx:1"),
        busy_revision("v2", 2, "nginx:2"),
    ];
    let mut store = Store::default();
    store.workload(Kind::CloneSet, Event::Apply(cloneset()));
    for v in &revs {
        let v = owned_by_the_cloneset(v.clone());
        store.revision(Event::Apply(WatchedRevision::controller_revision(&v)));
    }
    let uid = "uid-1".to_string();
    let workload = store.workload_object(&uid).expect("held");
    let held = adapt_decoded(&workload, &store.revisions_of(&uid), false).unwrap();
    assert_eq!(held, rollout(&cloneset(), &revs));
    assert!(held.in_place);
    assert_eq!(
        decide(&held, &pods(1), &[]),
        decide(&rollout(&cloneset(), &revs), &pods(1), &[])
    );
}

#[test]
fn a_workload_keeps_its_template_metadata_and_pull_secrets_only() {
    let mut v = cloneset();
    v["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
    let lean = lean_workload(v.clone());
    assert_eq!(
        lean["spec"]["template"]["spec"],
        json!({"imagePullSecrets": [{"name": "regcred"}]})
    );
    assert_eq!(
        lean["spec"]["template"]["metadata"],
        v["spec"]["template"]["metadata"]
    );
    assert!(lean["metadata"].get("managedFields").is_none());
    assert_eq!(
        adapt(&lean, &revisions(), false),
        adapt(&v, &revisions(), false)
    );
}
