//! The kinds besides CloneSet: (Advanced) DaemonSet, Deployment, (Advanced) StatefulSet, and
//! opting apps/v1 workloads in.

use serde_json::{json, Value};

use super::*;

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
        d.create[0].metadata.labels.as_ref().unwrap()[REVISION_HASH_LABEL],
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

/// The canary: partition = replicas, then lowered by one. While it holds every pod, the job
/// already exists and reaches the canary's node (the highest ordinal) first.
#[test]
fn statefulsets_held_by_a_partition_pre_download_for_the_canary_first() {
    let sts = workload("apps/v1", "StatefulSet", &[("app", "nginx:2")]);
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
    for w in [sts, asts] {
        let held = with(w, "spec.updateStrategy.rollingUpdate.partition", json!(5));
        let r = adapt(&held, &revisions(), true).unwrap();
        assert_eq!(r.partition, 5);
        let d = decide(&r, &pods(0), &[]);
        assert_eq!(
            (d.outcome.clone(), images(&d)),
            (Outcome::Creating(1), vec!["nginx:2"]),
            "{:?}",
            r.kind
        );
        let order = &d.create[0].metadata.annotations.as_ref().unwrap()[NODE_ORDER_ANNOTATION];
        assert_eq!(
            order, "n4,n3,n2,n1,n0",
            "{:?}: the canary's node first",
            r.kind
        );
    }
}
