//! Adapters and decisions on workloads built as JSON, no server: each test states a rollout
//! and asserts the jobs, deletions and mark.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kruise_api::{CompletionPolicyType, ImagePullPolicy, LabelSelectorOperator};
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

/// OpenKruise's e2e CloneSet: 5 replicas, in place, partition 1, 20% maxUnavailable.
fn cloneset() -> Value {
    let cs = workload("apps.kruise.io/v1beta1", "CloneSet", &[("app", "nginx:2")]);
    let cs = with(cs, "spec.updateStrategy.type", json!("InPlaceIfPossible"));
    with(cs, "spec.updateStrategy.partition", json!(1))
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

#[test]
fn openkruise_e2e_cloneset_creates_one_job_shaped_like_openkruise() {
    let cs = with(
        cloneset(),
        "spec.updateStrategy.inPlaceUpdateStrategy",
        json!({"imagePreDownloadParallelism": 2}),
    );
    let d = run(&cs, &pods(0), &[]);
    assert_eq!(d.outcome, Outcome::Creating(1));
    assert_eq!((d.mark, d.delete.len()), (None, 0));
    let job = &d.create[0];
    assert_eq!(job.metadata.name.as_deref(), Some("web-v2-app"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(job.spec.image, "nginx:2");
    let t = &job.spec.template;
    assert_eq!(t.parallelism, Some(IntOrString::Int(2)));
    let policy = t.pull_policy.as_ref().unwrap();
    assert_eq!(
        (policy.timeout_seconds, policy.backoff_limit),
        (Some(300), Some(1))
    );
    assert_eq!(
        t.completion_policy.type_,
        Some(CompletionPolicyType::Always)
    );
    assert_eq!(t.completion_policy.ttl_seconds_after_finished, Some(600));
    assert_eq!(t.completion_policy.active_deadline_seconds, None);
    assert_eq!(t.image_pull_policy, Some(ImagePullPolicy::IfNotPresent));
    assert_eq!(t.pull_secrets, Some(vec!["regcred".to_string()]));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels[CONTROLLER_REVISION_HASH], "v2");
    assert_eq!(labels[JOB_REVISION_LABEL], "web-v2");
    let sandbox = t.sandbox_config.as_ref().unwrap();
    assert_eq!(
        (&sandbox.labels, &sandbox.annotations["team"]),
        (labels, &"a".to_string())
    );
    let sel = t.pod_selector.as_ref().unwrap();
    assert_eq!(sel.match_labels.as_ref().unwrap()["app"], "web");
    let e = &sel.match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (e.key.as_str(), e.operator),
        (CONTROLLER_REVISION_HASH, LabelSelectorOperator::NotIn)
    );
    assert_eq!(e.values, Some(vec!["web-v2".to_string(), "v2".to_string()]));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("CloneSet", "web", "uid-1")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(owner.api_version, "apps.kruise.io/v1beta1");
    assert_eq!(
        job.metadata.annotations.as_ref().unwrap()[NODE_ORDER_ANNOTATION],
        "n0,n1,n2,n3,n4"
    );
}

#[test]
fn v1alpha1_annotations_are_the_knobs() {
    let cs = with(cloneset(), "apiVersion", json!("apps.kruise.io/v1alpha1"));
    let cs = with(
        cs,
        "metadata.annotations",
        json!({PARALLELISM_ANNOTATION: "2", TIMEOUT_ANNOTATION: "120"}),
    );
    let d = run(&cs, &pods(0), &[]);
    assert_eq!(images(&d), ["nginx:2"]);
    let t = &d.create[0].spec.template;
    assert_eq!(t.parallelism, Some(IntOrString::Int(2)));
    assert_eq!(t.pull_policy.as_ref().unwrap().timeout_seconds, Some(120));
}

#[test]
fn v1beta1_pod_update_policy_spelling() {
    let cs = with(
        cloneset(),
        "spec.updateStrategy.type",
        json!("RollingUpdate"),
    );
    let cs = with(
        cs,
        "spec.updateStrategy.podUpdatePolicy",
        json!("InPlaceOnly"),
    );
    assert!(rollout(&cs, &revisions()).in_place);
}

#[test]
fn min_updated_ready_gate_as_an_integer() {
    let cs = with(
        cloneset(),
        "metadata.annotations",
        json!({MIN_UPDATED_READY_ANNOTATION: "2"}),
    );
    let cs = with(cs, "status.updatedReadyReplicas", json!(1));
    let d = run(&cs, &pods(1), &[]);
    assert_eq!(
        d.outcome,
        Outcome::Waiting {
            updated_ready: 1,
            threshold: 2
        }
    );
    assert!(d.create.is_empty() && d.mark.is_none());
    let cs = with(cs, "status.updatedReadyReplicas", json!(2));
    assert_eq!(run(&cs, &pods(2), &[]).outcome, Outcome::Creating(1));
}

#[test]
fn min_updated_ready_percent_rounds_up() {
    let field = "spec.updateStrategy.inPlaceUpdateStrategy.imagePreDownloadMinUpdatedReadyPods";
    let cs = with(cloneset(), field, json!("50%")); // 2.5 of 5 -> 3
    assert_eq!(rollout(&cs, &revisions()).min_updated_ready, 3);
    let cs = with(cs, "status.updatedReadyReplicas", json!(2));
    assert!(matches!(
        run(&cs, &pods(2), &[]).outcome,
        Outcome::Waiting { threshold: 3, .. }
    ));
    let cs = with(cs, "status.updatedReadyReplicas", json!(3));
    assert_eq!(run(&cs, &pods(3), &[]).outcome, Outcome::Creating(1));
}

#[test]
fn stale_status_counts_no_updated_ready_pods() {
    let cs = with(
        cloneset(),
        "metadata.annotations",
        json!({MIN_UPDATED_READY_ANNOTATION: "1"}),
    );
    let cs = with(cs, "status.updatedReadyReplicas", json!(4));
    let cs = with(cs, "status.updateRevision", json!("web-v1")); // web-v2 is newer
    assert_eq!(rollout(&cs, &revisions()).updated_ready, Some(0));
    assert!(matches!(
        run(&cs, &pods(0), &[]).outcome,
        Outcome::Waiting {
            updated_ready: 0,
            ..
        }
    ));
}

fn ignored(v: &Value) -> Ignore {
    let d = run(v, &pods(0), &[]);
    assert_eq!((d.mark, d.create.len()), (Some(Mark::Ignored), 0));
    match d.outcome {
        Outcome::Ignored(why) => why,
        other => panic!("not ignored: {other:?}"),
    }
}

#[test]
fn openkruise_reasons_to_ignore() {
    assert_eq!(
        ignored(&with(cloneset(), "spec.replicas", json!(3))),
        Ignore::FewReplicas
    );
    let one_batch = with(cloneset(), "spec.updateStrategy.partition", json!(0));
    let one_batch = with(
        one_batch,
        "spec.updateStrategy.maxUnavailable",
        json!("100%"),
    );
    assert_eq!(ignored(&one_batch), Ignore::OneBatch);
    assert_eq!(
        ignored(&with(
            cloneset(),
            "spec.updateStrategy.type",
            json!("ReCreate")
        )),
        Ignore::NotInPlace
    );
    let mut unset = cloneset();
    unset["spec"]["updateStrategy"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    assert_eq!(
        ignored(&unset),
        Ignore::NotInPlace,
        "ReCreate is the default"
    );
}

#[test]
fn a_template_change_beyond_images_is_not_in_place() {
    let mut revs = revisions();
    set(
        &mut revs[1],
        "data.spec.template.spec.containers",
        json!([{"name": "app", "image": "nginx:2", "env": [{"name": "A", "value": "1"}]}]),
    );
    assert!(!rollout(&cloneset(), &revs).in_place);
    // Labels and annotations change in place.
    let mut revs = revisions();
    set(
        &mut revs[1],
        "data.spec.template.metadata.labels",
        json!({"app": "web", "v": "2"}),
    );
    assert!(rollout(&cloneset(), &revs).in_place);
}

#[test]
fn only_new_images_get_jobs_one_per_image() {
    let two = |old: &str, new: &[(&str, &str)]| {
        let revs = vec![
            cr("v1", 1, &[("app", "nginx:1"), ("side", old)]),
            cr("v2", 2, new),
        ];
        decide(&rollout(&cloneset(), &revs), &pods(0), &[])
    };
    let d = two("envoy:1", &[("app", "nginx:1"), ("side", "envoy:2")]);
    assert_eq!(images(&d), ["envoy:2"]);
    assert_eq!(d.create[0].metadata.name.as_deref(), Some("web-v2-side"));
    let d = two("envoy:1", &[("app", "nginx:9"), ("side", "nginx:9")]);
    assert_eq!(images(&d), ["nginx:9"]);
    let d = two("envoy:1", &[("app", "nginx:1"), ("side", "envoy:1")]);
    assert_eq!(d.outcome, Outcome::Ignored(Ignore::NoNewImage));
}

#[test]
fn an_image_counts_as_new_while_one_old_revision_lacks_it() {
    let revs = vec![
        cr("v0", 1, &[("app", "nginx:2")]),
        cr("v1", 2, &[("app", "nginx:1")]),
        cr("v2", 3, &[("app", "nginx:2")]),
    ];
    let r = rollout(&cloneset(), &revs);
    let mut ps = pods(0);
    ps[0].revision = Some("web-v0".into());
    assert_eq!(images(&decide(&r, &ps, &[])), ["nginx:2"]);
    // Only v0's pods are left: they already run nginx:2.
    let ps: Vec<_> = ps
        .into_iter()
        .filter(|p| p.revision.as_deref() == Some("web-v0"))
        .collect();
    assert_eq!(
        decide(&r, &ps, &[]).outcome,
        Outcome::Ignored(Ignore::NoNewImage)
    );
    // A pod of a pruned revision may lack anything.
    let ps = vec![pod("web-0", Some("n0"), "web-gone", true)];
    assert_eq!(images(&decide(&r, &ps, &[])), ["nginx:2"]);
}

#[test]
fn completion_and_rollback_to_current_delete_every_job() {
    let jobs = [
        existing("web-v2-app", "nginx:2", Some("web-v2")),
        existing("x", "y", None),
    ];
    let done = with(cloneset(), "status.currentRevision", json!("web-v2"));
    let r = rollout(&done, &revisions());
    assert!(r.complete);
    let d = decide(&r, &pods(5), &jobs);
    assert_eq!(
        (d.outcome, d.delete),
        (
            Outcome::Finished,
            vec!["web-v2-app".to_string(), "x".to_string()]
        )
    );
    // Rolled back to the current revision: v1 is renumbered newest.
    let revs = vec![
        cr("v1", 3, &[("app", "nginx:1")]),
        cr("v2", 2, &[("app", "nginx:2")]),
    ];
    let back = with(cloneset(), "status.updateRevision", json!("web-v1"));
    let d = decide(&rollout(&back, &revs), &pods(0), &jobs);
    assert_eq!(
        (d.outcome, d.delete.len(), d.create.len()),
        (Outcome::Finished, 2, 0)
    );
}

#[test]
fn jobs_of_an_older_rollout_are_deleted_ours_kept() {
    let jobs = [
        existing("web-v1-app", "nginx:1", Some("web-v1")),
        existing("web-v0-app", "nginx:0", None), // OpenKruise's, another revision
        existing("web-v2-app", "nginx:2", None), // OpenKruise's, this revision
    ];
    let d = run(&cloneset(), &pods(0), &jobs);
    assert_eq!(d.delete, ["web-v1-app", "web-v0-app"]);
    assert_eq!(
        (d.outcome, d.mark),
        (Outcome::AllCreated, Some(Mark::Created))
    );
}

#[test]
fn created_only_once_every_job_exists() {
    let revs = vec![
        cr("v1", 1, &[("app", "nginx:1"), ("side", "envoy:1")]),
        cr("v2", 2, &[("app", "nginx:2"), ("side", "envoy:2")]),
    ];
    let r = rollout(&cloneset(), &revs);
    let one = [existing("web-v2-app", "nginx:2", Some("web-v2"))];
    let d = decide(&r, &pods(0), &one);
    assert_eq!((images(&d), d.mark), (vec!["envoy:2"], None));
    let both = [
        one[0].clone(),
        existing("web-v2-side", "envoy:2", Some("web-v2")),
    ];
    let d = decide(&r, &pods(0), &both);
    assert_eq!(
        (d.outcome, d.mark, d.create.len()),
        (Outcome::AllCreated, Some(Mark::Created), 0)
    );
}

fn marked(labels: Value, from: Option<&str>) -> Vec<Value> {
    let mut revs = revisions();
    set(&mut revs[1], "metadata.labels", labels);
    if let Some(from) = from {
        set(
            &mut revs[1],
            "metadata.annotations",
            json!({MARK_FROM_ANNOTATION: from}),
        );
    }
    revs
}

#[test]
fn openkruise_marks_are_respected() {
    for (label, mark) in [(CREATED_MARK, Mark::Created), (IGNORED_MARK, Mark::Ignored)] {
        let revs = marked(json!({label: "true"}), None);
        let d = decide(&rollout(&cloneset(), &revs), &pods(0), &[]);
        assert_eq!(
            (d.outcome, d.create.len(), d.mark),
            (Outcome::AlreadyMarked(mark), 0, None)
        );
    }
    // Ours, written during this rollout.
    let revs = marked(json!({CREATED_MARK: "true"}), Some("web-v1"));
    let d = decide(&rollout(&cloneset(), &revs), &pods(0), &[]);
    assert_eq!(d.outcome, Outcome::AlreadyMarked(Mark::Created));
}

#[test]
fn a_mark_from_an_earlier_rollout_is_stale() {
    // web-v2 was marked while rolling out from web-v0; now web-v1 rolls (back) to it.
    let revs = marked(json!({CREATED_MARK: "true"}), Some("web-v0"));
    let r = rollout(&cloneset(), &revs);
    let d = decide(&r, &pods(0), &[]);
    assert_eq!(images(&d), ["nginx:2"]);
    let jobs = [existing("web-v2-app", "nginx:2", Some("web-v2"))];
    assert_eq!(decide(&r, &pods(0), &jobs).mark, Some(Mark::Created));
    let patch = mark_patch(&r, Mark::Created);
    assert_eq!(patch["metadata"]["labels"][CREATED_MARK], "true");
    assert_eq!(patch["metadata"]["labels"][IGNORED_MARK], Value::Null);
    assert_eq!(
        patch["metadata"]["annotations"][MARK_FROM_ANNOTATION],
        "web-v1"
    );
}

#[test]
fn held_by_partition_or_nothing_left_to_update() {
    let held = with(cloneset(), "spec.updateStrategy.partition", json!("100%"));
    assert_eq!(run(&held, &pods(0), &[]).outcome, Outcome::HeldByPartition);
    assert_eq!(
        run(&cloneset(), &pods(5), &[]).outcome,
        Outcome::NothingToUpdate
    );
}

fn advanced_daemonset() -> Value {
    let ds = workload(
        "apps.kruise.io/v1alpha1",
        "DaemonSet",
        &[("app", "nginx:2")],
    );
    let ds = with(
        ds,
        "status",
        json!({"observedGeneration": 2, "desiredNumberScheduled": 5,
        "updatedNumberScheduled": 1, "daemonSetHash": "v2"}),
    );
    with(
        ds,
        "metadata.annotations",
        json!({MIN_UPDATED_READY_ANNOTATION: "2"}),
    )
}

#[test]
fn advanced_daemonset_honours_min_updated_ready() {
    let r = rollout(&advanced_daemonset(), &revisions());
    assert_eq!(
        (r.replicas, r.min_updated_ready, r.updated_ready),
        (5, 2, None)
    );
    assert_eq!(r.current_revision.as_deref(), Some("web-v1"));
    let mut ps = pods(2);
    ps[1].ready = false;
    assert!(matches!(
        decide(&r, &ps, &[]).outcome,
        Outcome::Waiting {
            updated_ready: 1,
            threshold: 2
        }
    ));
    let d = decide(&r, &pods(2), &[]);
    assert_eq!(images(&d), ["nginx:2"]);
    assert_eq!(
        d.create[0].metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH],
        "v2"
    );
}

#[test]
fn daemonset_update_is_the_newest_revision_and_complete_when_all_updated() {
    let ds = workload("apps/v1", "DaemonSet", &[("app", "nginx:2")]);
    let ds = with(
        ds,
        "status",
        json!({"observedGeneration": 2, "desiredNumberScheduled": 5, "updatedNumberScheduled": 2}),
    );
    let ds = with(
        ds,
        "metadata.annotations",
        json!({OPT_IN_ANNOTATION: "true"}),
    );
    let r = rollout(&ds, &revisions());
    assert_eq!(
        r.update_revision.as_ref().map(|u| u.name.as_str()),
        Some("web-v2")
    );
    assert!(!r.complete);
    // Daemon pods carry the hash; not-ready first, then node name.
    let mut ps: Vec<_> = ["n3", "n1", "n2", "n0"]
        .iter()
        .map(|n| pod(&format!("web-{n}"), Some(n), "v1", true))
        .collect();
    ps[0].ready = false;
    ps.push(pod("web-new", Some("n4"), "v2", true));
    assert_eq!(update_order(&r, &ps), ["n3", "n0", "n1", "n2"]);
    assert_eq!(images(&decide(&r, &ps, &[])), ["nginx:2"]);
    let done = with(ds, "status.updatedNumberScheduled", json!(5));
    let d = decide(
        &rollout(&done, &revisions()),
        &[],
        &[existing("web-v2-app", "nginx:2", Some("web-v2"))],
    );
    assert_eq!((d.outcome, d.delete.len()), (Outcome::Finished, 1));
}

fn replica_set(hash: &str, number: i64, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("web-{hash}"), "namespace": "ns",
            "labels": {"app": "web", "pod-template-hash": hash},
            "annotations": {DEPLOYMENT_REVISION_ANNOTATION: number.to_string()},
            "ownerReferences": [{"uid": "uid-1", "controller": true}]},
        "spec": {"replicas": replicas, "template": template(&[("app", image)])},
    })
}

#[test]
fn deployment_targets_old_replicaset_pods_oldest_first() {
    let d = workload("apps/v1", "Deployment", &[("app", "nginx:3")]);
    let d = with(
        d,
        "status",
        json!({"observedGeneration": 2, "replicas": 6, "updatedReplicas": 1}),
    );
    let rss = [
        replica_set("a", 1, 2, "nginx:1"),
        replica_set("b", 2, 3, "nginx:2"),
        replica_set("c", 3, 1, "nginx:3"),
    ];
    let r = adapt(&d, &rss, true).unwrap();
    assert_eq!(
        (r.revision_key.as_str(), r.current_revision.as_deref()),
        (POD_TEMPLATE_HASH, Some("web-b"))
    );
    assert_eq!(r.max_unavailable, 1); // 25% of 5, rounded down
    let p = |name: &str, node: &str, rev: &str, created: i64| PodView {
        created: Some(created),
        ..pod(name, Some(node), rev, true)
    };
    let ps = vec![
        p("b1", "n1", "b", 20),
        p("a1", "n2", "a", 10),
        p("b2", "n3", "b", 30),
        p("c1", "n4", "c", 40),
        p("a2", "n1", "a", 11),
    ];
    assert_eq!(update_order(&r, &ps), ["n1", "n2", "n3"]);
    let dec = decide(&r, &ps, &[]);
    assert_eq!(images(&dec), ["nginx:3"]);
    let sel = dec.create[0].spec.template.pod_selector.clone().unwrap();
    let e = sel.match_expressions.unwrap().pop().unwrap();
    assert_eq!(
        (e.key.as_str(), e.values),
        (
            POD_TEMPLATE_HASH,
            Some(vec!["web-c".to_string(), "c".to_string()])
        )
    );
}

#[test]
fn deployment_edge_cases() {
    let d = workload("apps/v1", "Deployment", &[("app", "nginx:3")]);
    let d = with(
        d,
        "status",
        json!({"observedGeneration": 1, "replicas": 5, "updatedReplicas": 0}),
    );
    let rss = [
        replica_set("a", 1, 5, "nginx:1"),
        replica_set("c", 2, 0, "nginx:3"),
    ];
    assert_eq!(
        decide(&adapt(&d, &rss, true).unwrap(), &[], &[]).outcome,
        Outcome::UpdateRevisionUnknown
    );
    let d = with(d, "status.observedGeneration", json!(2));
    let recreate = with(d, "spec.strategy.type", json!("Recreate"));
    let ps = [pod("a1", Some("n1"), "a", true)];
    let dec = decide(&adapt(&recreate, &rss, true).unwrap(), &ps, &[]);
    assert_eq!(dec.outcome, Outcome::Ignored(Ignore::OneBatch));
}

#[test]
/// Every pod not on the update revision, highest ordinal first: those at or above the
/// partition update next, and those held below it come after (lowering the partition then
/// finds the image there).
fn statefulset_highest_ordinal_first_then_below_the_partition() {
    let sts = workload("apps/v1", "StatefulSet", &[("app", "nginx:2")]);
    let sts = with(
        sts,
        "spec.updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
    );
    let r = adapt(&sts, &revisions(), true).unwrap();
    assert_eq!((r.partition, r.updated_ready, r.in_place), (2, None, true));
    let mut ps = pods(0);
    ps.swap(0, 3);
    ps[4].revision = Some("web-v2".into()); // web-4 already updated
    assert_eq!(update_order(&r, &ps), ["n3", "n2", "n1", "n0"]);
    assert_eq!(images(&decide(&r, &ps, &[])), ["nginx:2"]);
    let on_delete = with(sts, "spec.updateStrategy", json!({"type": "OnDelete"}));
    assert!(adapt(&on_delete, &revisions(), true).unwrap().in_place);
}

#[test]
fn advanced_statefulset_policy_and_on_delete() {
    let asts = workload(
        "apps.kruise.io/v1beta1",
        "StatefulSet",
        &[("app", "nginx:2")],
    );
    let asts = with(
        asts,
        "spec.updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible"}}),
    );
    let r = rollout(&asts, &revisions());
    assert_eq!(
        (r.kind, r.in_place, r.max_unavailable),
        (Kind::AdvancedStatefulSet, true, 1)
    );
    assert_eq!(update_order(&r, &pods(1)), ["n4", "n3", "n2", "n1"]);
    let on_delete = with(asts, "spec.updateStrategy.type", json!("OnDelete"));
    assert_eq!(ignored(&on_delete), Ignore::NotInPlace);
}

#[test]
fn excluded_pods_and_nodes_listed_once() {
    let mut ps = pods(1);
    ps[1].terminating = true;
    ps[2].node = None;
    ps[3].node = Some("n4".into());
    ps[3].ready = false;
    let r = rollout(&cloneset(), &revisions());
    // web-0 updated, web-1 terminating, web-2 unscheduled; web-3 (not ready) and web-4 share n4.
    assert_eq!(update_order(&r, &ps), ["n4"]);
    let mut ps = pods(0);
    ps[0].created = Some(NOW + 5);
    ps[2].ready = false;
    assert_eq!(update_order(&r, &ps), ["n2", "n0", "n1", "n3", "n4"]);
}

#[test]
fn apps_v1_needs_opting_in() {
    let sts = workload("apps/v1", "StatefulSet", &[("app", "nginx:2")]);
    let jobs = [existing("web-v2-app", "nginx:2", Some("web-v2"))];
    let d = decide(&adapt(&sts, &revisions(), false).unwrap(), &pods(0), &[]);
    assert_eq!(
        (d.outcome, d.create.len(), d.mark),
        (Outcome::NotOptedIn, 0, None)
    );
    let d = decide(&adapt(&sts, &revisions(), false).unwrap(), &pods(0), &jobs);
    assert_eq!(d.delete, ["web-v2-app"]);
    assert_eq!(
        images(&decide(
            &adapt(&sts, &revisions(), true).unwrap(),
            &pods(0),
            &[]
        )),
        ["nginx:2"]
    );
    let out = with(
        sts,
        "metadata.annotations",
        json!({OPT_IN_ANNOTATION: "false"}),
    );
    assert!(!adapt(&out, &revisions(), true).unwrap().opted_in);
    assert!(rollout(&cloneset(), &revisions()).opted_in);
}

fn error(v: &Value) -> AdapterError {
    adapt(v, &revisions(), true).expect_err("refused")
}

#[test]
fn adapter_errors_name_the_field() {
    let mut cs = cloneset();
    cs["spec"].as_object_mut().unwrap().remove("selector");
    let e = error(&cs);
    assert_eq!(
        (e.field(), e.metric_label()),
        (Some("spec.selector"), "missing_field")
    );
    assert!(
        e.to_string()
            .contains("CloneSet ns/web: spec.selector is missing; set spec.selector"),
        "{e}"
    );
    let e = error(&with(
        cloneset(),
        "spec.updateStrategy.type",
        json!("Sideways"),
    ));
    assert_eq!(e.field(), Some("spec.updateStrategy.type"));
    let e = error(&with(
        cloneset(),
        "metadata.annotations",
        json!({PARALLELISM_ANNOTATION: "50%"}),
    ));
    assert_eq!(
        e.field(),
        Some("metadata.annotations[apps.kruise.io/image-predownload-parallelism]")
    );
    let e = error(&with(
        cloneset(),
        "spec.selector",
        json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}),
    ));
    assert_eq!(e.field(), Some("spec.selector"));
    assert!(e.to_string().contains("unknown variant `Near`"), "{e}");
    let e = error(&with(cloneset(), "spec.replicas", json!("five")));
    assert_eq!(e.field(), Some("spec.replicas"));
    let e = error(&with(cloneset(), "spec.selector", json!({})));
    assert_eq!(e.metric_label(), "invalid_field");
    let e = error(&with(cloneset(), "kind", json!("Job")));
    assert_eq!(e.metric_label(), "unsupported_kind");
    let mut revs = revisions();
    revs[1]["data"] = json!({});
    let e = adapt(&cloneset(), &revs, true).expect_err("refused");
    assert_eq!(e.field(), Some("data.spec.template"));
    assert!(
        e.to_string().starts_with("ControllerRevision ns/web-v2"),
        "{e}"
    );
}

#[test]
fn revisions_of_other_workloads_are_skipped() {
    let mut revs = revisions();
    revs.push(with(
        cr("zz", 9, &[("app", "other:1")]),
        "metadata.ownerReferences",
        json!([{"uid": "uid-2", "controller": true}]),
    ));
    let r = rollout(&cloneset(), &revs);
    assert_eq!(
        r.update_revision.map(|u| u.name),
        Some("web-v2".to_string())
    );
}

#[test]
fn names_and_label_values_stay_valid() {
    assert_eq!(job_name("Web_V2", "app"), "web-v2-app");
    let long = job_name(&"r".repeat(250), "container");
    assert_eq!(long.len(), 253);
    assert_ne!(long, job_name(&"r".repeat(250), "container2"));
    assert_eq!(revision_label_value("web-v2"), "web-v2");
    let v = revision_label_value(&"x".repeat(80));
    assert!(v.len() <= 63 && v != revision_label_value(&"x".repeat(81)));
}

#[test]
fn pod_view_from_a_pod() {
    let pod: crate::predownload::store::RolloutPod = serde_json::from_value(json!({
        "metadata": {"name": "web-12", "labels": {CONTROLLER_REVISION_HASH: "web-v1"},
            "creationTimestamp": "2024-01-01T00:00:00Z", "deletionTimestamp": "2024-01-02T00:00:00Z"},
        "spec": {"nodeName": "n1", "containers": []},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap();
    let v = pod.trimmed().view(CONTROLLER_REVISION_HASH);
    assert_eq!(
        (v.ordinal, v.node.as_deref(), v.revision.as_deref()),
        (Some(12), Some("n1"), Some("web-v1"))
    );
    assert!(v.ready && v.terminating);
    assert_eq!(v.created, Some(1_704_067_200));
}
