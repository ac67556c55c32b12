//! Decisions whatever the kind: which images get jobs, marks, cleanup of older rollouts, the
//! pods a job reaches, adapter errors and names.

use serde_json::{json, Value};

use super::*;

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

/// A partition holding every pod does not stop the pre-download (the canary lowers it next):
/// the job reaches every pod not on the update revision, and nothing updated is left alone.
#[test]
fn a_partition_holding_every_pod_still_pre_downloads() {
    for cs in [cloneset(), cloneset_v1beta1()] {
        let at = if cs["apiVersion"] == "apps.kruise.io/v1beta1" {
            "spec.updateStrategy.rollingUpdate.partition"
        } else {
            "spec.updateStrategy.partition"
        };
        for held in [json!("100%"), json!(5), json!(7)] {
            let d = run(&with(cs.clone(), at, held.clone()), &pods(0), &[]);
            assert_eq!(
                (d.outcome.clone(), images(&d)),
                (Outcome::Creating(1), vec!["nginx:2"]),
                "{held}"
            );
        }
    }
    assert_eq!(
        run(&cloneset(), &pods(5), &[]).outcome,
        Outcome::NothingToUpdate
    );
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
