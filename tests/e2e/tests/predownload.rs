//! Rollout pre-download, end to end: the real kruise-manager against the test API server, with
//! workloads, revisions and pods written as their controllers would write them (no workload
//! controller runs here, so these tests always use their own test API server: on a real
//! cluster kube-controller-manager would act on the same objects). What a user sees is
//! asserted: the ImagePullJobs the workload controls, where their tags land, events, marks on
//! the revision, and cleanup. Tests of OpenKruise's kinds run on both of OpenKruise's published
//! CRD releases ([`Crds`]: v1.9.0, and the main branch where CloneSet serves v1beta1), each
//! workload written in the layout of the version the manager watches.

use e2e::workloads::{
    install_openkruise_crds, remove_openkruise_crds, setup, template, CloneSetUpdate, Crds,
    Workloads,
};
use e2e::{wait_for, System, DEADLINE};
use serde_json::{json, Value};

const CREATED: &str = "apps.kruise.io/pre-predownload-created";
const IGNORED: &str = "apps.kruise.io/image-predownload-ignored";

/// Runs an async test body once per OpenKruise CRD release.
macro_rules! on_both_releases {
    ($body:ident: $v1_9:ident, $main:ident) => {
        #[tokio::test]
        async fn $v1_9() {
            $body(Crds::V1_9).await
        }
        #[tokio::test]
        async fn $main() {
            $body(Crds::Main).await
        }
    };
}

/// The in-place CloneSet of OpenKruise's e2e case: partition 1, 20% maxUnavailable.
fn in_place(parallelism: Option<i32>, min_updated_ready: Option<i32>) -> CloneSetUpdate {
    CloneSetUpdate {
        in_place: true,
        partition: 1,
        parallelism,
        min_updated_ready,
        ..Default::default()
    }
}

/// Waits for the manager's `WaitingForUpdatedReadyPods` event on `name`: the positive sign that
/// its gate was decided on, from a status naming the update revision (the only one the test
/// writes says 1 pod is updated and ready) and with a pod still to update. Had the gate let it
/// through, that decision would have created the job instead.
async fn wait_gate_event(sys: &System, name: &str, threshold: i32) {
    let says = format!("waits for {threshold} updated ready pods");
    wait_for(
        &format!("the manager to say that {name}'s pre-download {says}"),
        DEADLINE,
        || async {
            let e = e2e::node::events(
                &sys.cluster.client,
                &sys.ns,
                "WaitingForUpdatedReadyPods",
                name,
            )
            .await;
            e.iter()
                .any(|e| e.note.as_deref().is_some_and(|n| n.contains(&says)))
                .then_some(())
        },
    )
    .await;
}

on_both_releases!(cloneset_in_place_rollout: cloneset_in_place_rollout_on_v1_9, cloneset_in_place_rollout_on_main);

/// OpenKruise's own e2e case (§10 item 12): 5 replicas, InPlaceIfPossible, partition 1,
/// maxUnavailable 20%, imagePreDownloadParallelism 2: exactly one job, controlled by the
/// CloneSet, for the new image, with parallelism 2, reaching the pods still to update in the
/// order the CloneSet updates them. A gated CloneSet says it waits for its updated ready pods,
/// and has no job until they are there. When the rollout completes, the jobs go and the
/// revision stays marked.
async fn cloneset_in_place_rollout(crds: Crds) {
    let (sys, w, nodes) = setup(Some(crds), &[], 5).await;
    let version = crds.version("CloneSet");
    let old = format!("{}/e2e/web:1", sys.lab.registry.host());
    let new = format!("{}/e2e/web:2", sys.lab.registry.host());
    let gated = w
        .rolling_cloneset(
            &nodes,
            ("gated", version),
            (&old, &new),
            &in_place(Some(2), Some(2)),
            1,
        )
        .await;
    let cs = w
        .rolling_cloneset(
            &nodes,
            ("web", version),
            (&old, &new),
            &in_place(Some(2), None),
            1,
        )
        .await;

    let jobs = w
        .wait_jobs(&cs, 1, "one pre-download job for the CloneSet")
        .await;
    let job = &jobs[0];
    assert_eq!(job.metadata.name.as_deref(), Some("web-v2-main"));
    assert_eq!(job.spec.image, new);
    assert_eq!(
        job.spec.template.parallelism,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2))
    );
    let ps = job
        .spec
        .template
        .pod_selector
        .as_ref()
        .expect("a podSelector");
    assert_eq!(ps.match_labels.as_ref().unwrap()["app"], "web");
    let not_in = ps.match_expressions.as_ref().unwrap();
    assert!(
        not_in.iter().any(|e| e.key == "controller-revision-hash"
            && e.values.as_ref().unwrap().contains(&"web-v2".to_string())),
        "{not_in:?}"
    );
    // The gated CloneSet was decided on with its 1 updated ready pod of the 2 it needs.
    wait_gate_event(&sys, "gated", 2).await;
    assert!(
        w.jobs_of(&gated).await.is_empty(),
        "2 updated ready pods are needed first; 1 is"
    );

    // The pods still on v1 (nodes 1..4) get the image, two at a time; the updated one's never.
    let placed = wait_for("two nodes to get the new image", DEADLINE, || async {
        let n = sys.nodes_with(&new).await;
        (n.len() == 2).then_some(n)
    })
    .await;
    assert!(
        !placed.contains(&nodes[0]),
        "the updated pod's node is not targeted: {placed:?}"
    );
    let status = sys
        .wait_job("web-v2-main", "a status", |s| s.desired > 0)
        .await;
    assert_eq!(
        status.desired, 4,
        "the nodes of the 4 pods still to update: {status:?}"
    );

    // The gate opens: the gated CloneSet's second pod is updated and ready.
    w.patch(
        &gated,
        json!({"status": {"updatedReplicas": 2, "updatedReadyReplicas": 2}}),
        true,
    )
    .await;
    w.wait_jobs(
        &gated,
        1,
        "the gated CloneSet's job once 2 pods are updated and ready",
    )
    .await;

    // Every job exists: the revision is marked (OpenKruise's label, so it would not act again).
    w.wait_marked("ControllerRevision", "web-v2", CREATED).await;

    // The rollout completes: the jobs go, and the tags with them.
    w.patch(&cs, json!({"status": {"currentRevision": "web-v2", "updatedReplicas": 5, "updatedReadyReplicas": 5}}), true).await;
    w.wait_jobs(
        &cs,
        0,
        "the CloneSet's jobs to be deleted once the rollout completed",
    )
    .await;
    // The gated CloneSet is deleted: its job goes with it.
    w.delete(&gated).await;
    w.wait_jobs(&gated, 0, "the deleted CloneSet's job to go")
        .await;
}

on_both_releases!(cloneset_recreate_and_rollback: cloneset_recreate_and_rollback_on_v1_9, cloneset_recreate_and_rollback_on_main);

/// A CloneSet that recreates pods gets no job, and its revision says so. A rollback to a
/// revision pre-downloaded before (OpenKruise #1419) pre-downloads again.
async fn cloneset_recreate_and_rollback(crds: Crds) {
    let (sys, w, nodes) = setup(Some(crds), &[], 5).await;
    let version = crds.version("CloneSet");
    let image = |t: &str| format!("{}/e2e/app:{t}", sys.lab.registry.host());
    let recreate = CloneSetUpdate {
        in_place: false,
        partition: 1,
        ..Default::default()
    };
    let recreate = w
        .rolling_cloneset(
            &nodes,
            ("recreate", version),
            (&image("1"), &image("2")),
            &recreate,
            1,
        )
        .await;
    w.wait_marked("ControllerRevision", "recreate-v2", IGNORED)
        .await;
    assert!(w.jobs_of(&recreate).await.is_empty());

    // Rolled out v1 → v2 (marked), then v2 → v3 began and was rolled back to v2: v2 is the
    // update revision again (renumbered 4), and the pods already on v3 need v2's image.
    let one_by_one = CloneSetUpdate {
        in_place: true,
        max_unavailable: Some(json!(1)),
        ..Default::default()
    };
    let cs = w
        .rolling_cloneset(
            &nodes,
            ("app", version),
            (&image("1"), &image("2")),
            &one_by_one,
            1,
        )
        .await;
    w.wait_jobs(&cs, 1, "the first rollout's job").await;
    w.wait_marked("ControllerRevision", "app-v2", CREATED).await;
    w.patch(&cs, json!({"status": {"currentRevision": "app-v2", "updatedReplicas": 5, "updatedReadyReplicas": 5}}), true).await;
    w.wait_jobs(&cs, 0, "the first rollout's job to go").await;

    let labels = json!({"app": "app"});
    w.revision(
        &cs,
        "app-v3",
        "v3",
        3,
        &template(&labels, &[("main", &image("3"))]),
    )
    .await;
    let v2 = w
        .get("apps/v1", "ControllerRevision", "app-v2")
        .await
        .unwrap();
    w.patch(
        &json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": v2["metadata"]}),
        json!({"revision": 4}),
        false,
    )
    .await;
    for i in 1..5 {
        let pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("app-{i}")}});
        w.patch(
            &pod,
            json!({"metadata": {"labels": {"controller-revision-hash": "app-v3"}}}),
            false,
        )
        .await;
    }
    w.patch(&cs, json!({"status": {"currentRevision": "app-v3", "updateRevision": "app-v2", "updatedReplicas": 1, "updatedReadyReplicas": 1}}), true).await;
    // (Until the status says so, v3 looks like the update: its job may come and go.)
    wait_for(
        "one job, for the image the rollback returns to",
        DEADLINE,
        || async {
            let jobs = w.jobs_of(&cs).await;
            (jobs.len() == 1 && jobs[0].spec.image == image("2")).then_some(())
        },
    )
    .await;
}

on_both_releases!(cloneset_crd_installed_late: cloneset_crd_installed_late_on_v1_9, cloneset_crd_installed_late_on_main);

/// The manager starts with no OpenKruise CRD, notices the CloneSet CRD once installed (no
/// restart), pre-downloads for it, and stops watching it once removed.
async fn cloneset_crd_installed_late(crds: Crds) {
    let (sys, w, nodes) = setup(None, &["--predownload-discovery-interval", "1s"], 5).await;
    let manager = sys.manager.as_ref().unwrap();
    let watched = || async {
        let m = manager.metrics().await;
        m.lines()
            .find(|l| l.starts_with("kruise_manager_predownload_workloads{kind=\"cloneset\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
    };
    install_openkruise_crds(&sys.cluster, crds).await;
    let image = |t: &str| format!("{}/e2e/late:{t}", sys.lab.registry.host());
    let version = crds.version("CloneSet");
    let cs = w
        .rolling_cloneset(
            &nodes,
            ("late", version),
            (&image("1"), &image("2")),
            &in_place(None, None),
            1,
        )
        .await;
    w.wait_jobs(
        &cs,
        1,
        "a job for a CloneSet whose CRD came after the manager",
    )
    .await;
    wait_for("the manager to count the CloneSet", DEADLINE, || async {
        (watched().await == Some(1)).then_some(())
    })
    .await;
    remove_openkruise_crds(&sys.cluster, crds).await;
    wait_for(
        "the manager to stop watching CloneSets once the CRD is gone",
        DEADLINE,
        || async { (watched().await == Some(0)).then_some(()) },
    )
    .await;
}

on_both_releases!(refused_job_creation: a_refused_job_creation_is_retried_on_v1_9, a_refused_job_creation_is_retried_on_main);

/// A refused job creation is retried, shown as a Warning event on the workload, and the
/// revision is marked only once the job exists.
async fn refused_job_creation(crds: Crds) {
    let (sys, w, nodes) = setup(Some(crds), &[], 5).await;
    sys.cluster
        .inject(json!({"failWrites": 1, "failOnly": "create imagepulljobs"}))
        .await;
    let image = |t: &str| format!("{}/e2e/retry:{t}", sys.lab.registry.host());
    let version = crds.version("CloneSet");
    let cs = w
        .rolling_cloneset(
            &nodes,
            ("retry", version),
            (&image("1"), &image("2")),
            &in_place(None, None),
            1,
        )
        .await;
    let events = wait_for(
        "a FailedCreateImagePullJob Warning on the CloneSet",
        DEADLINE,
        || async {
            let e = e2e::node::events(
                &sys.cluster.client,
                &sys.ns,
                "FailedCreateImagePullJob",
                "retry",
            )
            .await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    w.wait_jobs(&cs, 1, "the job, created on the retry").await;
    w.wait_marked("ControllerRevision", "retry-v2", CREATED)
        .await;
}

/// A workload of `kind` named `name` with 5 pods (pod i on node i, the first `updated` on the
/// new revision `<name>-new`), both revisions, and `status`.
async fn rolling_set(
    w: &Workloads,
    nodes: &[String],
    obj: Value,
    images: (&str, &str),
    updated: usize,
    status: Value,
) -> Value {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let labels = json!({"app": name});
    let wl = w.create(obj).await;
    let (old, new) = (format!("{name}-old"), format!("{name}-new"));
    for (i, node) in nodes.iter().enumerate().take(5) {
        let rev = if i < updated { &new } else { &old };
        w.pod(
            &wl,
            &format!("{name}-{i}"),
            node,
            json!({"app": name, "controller-revision-hash": rev}),
            images.0,
        )
        .await;
    }
    w.patch(&wl, json!({"status": status}), true).await;
    // The update revision first, so the first decision sees it with every pod.
    w.revision(
        &wl,
        &new,
        "new",
        2,
        &template(&labels, &[("main", images.1)]),
    )
    .await;
    w.revision(
        &wl,
        &old,
        "old",
        1,
        &template(&labels, &[("main", images.0)]),
    )
    .await;
    wl
}

on_both_releases!(advanced_statefulset_rollout: advanced_statefulset_rollout_on_v1_9, advanced_statefulset_rollout_on_main);

/// An Advanced StatefulSet (apps.kruise.io) rolling in place with partition 2: its job reaches
/// the pods still on the old revision, highest ordinal first, and goes once it is updated.
async fn advanced_statefulset_rollout(crds: Crds) {
    let (sys, w, nodes) = setup(Some(crds), &[], 5).await;
    let image = |t: &str| format!("{}/e2e/cache:{t}", sys.lab.registry.host());
    let labels = json!({"app": "cache"});
    let asts = rolling_set(&w, &nodes, json!({
        "apiVersion": crds.version("StatefulSet"), "kind": "StatefulSet",
        "metadata": {"name": "cache", "annotations": {"apps.kruise.io/image-predownload-parallelism": "2"}},
        "spec": {"replicas": 5, "serviceName": "cache", "selector": {"matchLabels": labels},
                 "template": template(&labels, &[("main", &image("2"))]),
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate":
                     {"podUpdatePolicy": "InPlaceIfPossible", "partition": 2, "maxUnavailable": 1}}},
    }), (&image("1"), &image("2")), 0, json!({"observedGeneration": 1, "replicas": 5,
        "readyReplicas": 5, "availableReplicas": 5, "currentReplicas": 5,
        "currentRevision": "cache-old", "updateRevision": "cache-new", "updatedReplicas": 0,
        "updatedReadyReplicas": 0})).await;
    let jobs = w
        .wait_jobs(
            &asts,
            1,
            "one pre-download job for the Advanced StatefulSet",
        )
        .await;
    assert_eq!(jobs[0].spec.image, image("2"));
    let order = &jobs[0].metadata.annotations.as_ref().unwrap()
        ["apps.kruise.io/image-predownload-node-order"];
    let expected: Vec<&str> = nodes.iter().rev().map(String::as_str).collect();
    assert_eq!(order, &expected.join(","), "highest ordinal first");
    w.wait_marked("ControllerRevision", "cache-new", CREATED)
        .await;
    w.patch(&asts, json!({"status": {"currentRevision": "cache-new", "updatedReplicas": 5, "updatedReadyReplicas": 5}}), true).await;
    w.wait_jobs(
        &asts,
        0,
        "the Advanced StatefulSet's job to be deleted once it is updated",
    )
    .await;
}

on_both_releases!(advanced_daemonset_gate: advanced_daemonset_gate_on_v1_9, advanced_daemonset_gate_on_main);

/// An Advanced DaemonSet (apps.kruise.io) honours min-updated-ready (OpenKruise ignores it):
/// no job until 2 pods are updated and ready; then the nodes not updated pull; once every node
/// is updated the job goes.
async fn advanced_daemonset_gate(crds: Crds) {
    let (sys, w, nodes) = setup(Some(crds), &[], 5).await;
    let image = |t: &str| format!("{}/e2e/agent:{t}", sys.lab.registry.host());
    let ads = |name: &str, annotations: Value| {
        let labels = json!({"app": name});
        json!({
            "apiVersion": crds.version("DaemonSet"), "kind": "DaemonSet",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"selector": {"matchLabels": labels}, "template": template(&labels, &[("main", &image("2"))]),
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "partition": 0}}},
        })
    };
    let status = json!({"observedGeneration": 1, "desiredNumberScheduled": 5, "currentNumberScheduled": 5,
        "numberMisscheduled": 0, "numberReady": 5, "updatedNumberScheduled": 1});
    let images = (image("1"), image("2"));
    let images = (images.0.as_str(), images.1.as_str());
    let gated = rolling_set(
        &w,
        &nodes,
        ads(
            "gated",
            json!({"apps.kruise.io/image-predownload-min-updated-ready-pods": "2"}),
        ),
        images,
        1,
        status.clone(),
    )
    .await;
    let open = rolling_set(&w, &nodes, ads("open", json!({})), images, 1, status).await;
    w.wait_jobs(&open, 1, "the ungated Advanced DaemonSet's job")
        .await;
    wait_gate_event(&sys, "gated", 2).await;
    assert!(
        w.jobs_of(&gated).await.is_empty(),
        "2 updated ready pods are needed first; 1 is"
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gated-1"}});
    w.patch(
        &pod,
        json!({"metadata": {"labels": {"controller-revision-hash": "gated-new"}}}),
        false,
    )
    .await;
    w.patch(
        &gated,
        json!({"status": {"updatedNumberScheduled": 2}}),
        true,
    )
    .await;
    let jobs = w
        .wait_jobs(&gated, 1, "the gated job once 2 pods are updated and ready")
        .await;
    let status = sys
        .wait_job(jobs[0].metadata.name.as_deref().unwrap(), "a status", |s| {
            s.desired > 0
        })
        .await;
    assert_eq!(
        status.desired, 3,
        "the nodes of the 3 pods not updated: {status:?}"
    );
    w.patch(
        &gated,
        json!({"status": {"updatedNumberScheduled": 5}}),
        true,
    )
    .await;
    w.wait_jobs(
        &gated,
        0,
        "the gated Advanced DaemonSet's job to go once every node is updated",
    )
    .await;
}
