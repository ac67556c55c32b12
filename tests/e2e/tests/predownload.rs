//! Rollout pre-download, end to end: the real kruise-manager against the test API server, with
//! workloads, revisions and pods written as their controllers would write them (no workload
//! controller runs here, so these tests always use their own test API server: on a real
//! cluster kube-controller-manager would act on the same objects). What a user sees is
//! asserted: the ImagePullJobs the workload controls, where their tags land, events, marks on
//! the revision, and cleanup.

use e2e::workloads::{install_openkruise_crds, remove_openkruise_crds, template, Workloads};
use e2e::{wait_for, Cluster, System, DEADLINE};
use kruise_api::{ImagePullJob, TagPhase};
use serde_json::{json, Value};

const CREATED: &str = "apps.kruise.io/pre-predownload-created";
const IGNORED: &str = "apps.kruise.io/image-predownload-ignored";

/// This test's system (own API server), the manager started with `extra` flags once the
/// OpenKruise CRDs are installed (when `crds`), and `nodes` Ready nodes with NodeImages.
async fn setup(crds: bool, extra: &[&str], nodes: usize) -> (System, Workloads, Vec<String>) {
    let mut sys = System::without_manager(Cluster::local()).await;
    if crds {
        install_openkruise_crds(&sys.cluster).await;
    }
    let mut m = sys.manager_process("manager", extra);
    m.wait_ready(DEADLINE).await;
    sys.manager = Some(m);
    let mut names = Vec::new();
    for i in 0..nodes {
        let name = sys.cluster.name(&format!("n{i}"));
        sys.cluster.create_node(&name, json!({})).await;
        names.push(name);
    }
    for n in &names {
        wait_for(&format!("NodeImage {n}"), DEADLINE, || async {
            sys.images.api.get_opt(n).await.ok().flatten().map(|_| ())
        })
        .await;
    }
    let w = Workloads::new(&sys.cluster, &sys.ns);
    (sys, w, names)
}

/// OpenKruise's own e2e case (§10 item 12): 5 replicas, InPlaceIfPossible, partition 1,
/// maxUnavailable 20%, imagePreDownloadParallelism 2: exactly one job, controlled by the
/// CloneSet, for the new image, with parallelism 2, reaching the pods still to update in the
/// order the CloneSet updates them. A gated CloneSet waits for its updated ready pods. When the
/// rollout completes, the jobs go and the revision stays marked.
#[tokio::test]
async fn cloneset_in_place_rollout_pre_downloads_after_the_gate() {
    let (sys, w, nodes) = setup(true, &[], 5).await;
    let old = format!("{}/e2e/web:1", sys.lab.registry.host());
    let new = format!("{}/e2e/web:2", sys.lab.registry.host());
    let in_place = |extra: Value| {
        let mut s = json!({"type": "InPlaceIfPossible", "partition": 1,
            "inPlaceUpdateStrategy": {"imagePreDownloadParallelism": 2}});
        s["inPlaceUpdateStrategy"]
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };
    // The gated one first: when the ungated one's job exists, the gated one was decided too.
    let gated = w
        .rolling_cloneset(
            &nodes,
            "gated",
            &old,
            &new,
            in_place(json!({"imagePreDownloadMinUpdatedReadyPods": "40%"})),
            1,
        )
        .await;
    let cs = w
        .rolling_cloneset(&nodes, "web", &old, &new, in_place(json!({})), 1)
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
    assert!(
        w.jobs_of(&gated).await.is_empty(),
        "40% of 5 = 2 updated ready pods are needed first; 1 is"
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

/// A CloneSet that recreates pods gets no job, and its revision says so. A rollback to a
/// revision pre-downloaded before (OpenKruise #1419) pre-downloads again.
#[tokio::test]
async fn cloneset_recreate_is_ignored_and_a_rollback_pre_downloads_again() {
    let (sys, w, nodes) = setup(true, &[], 5).await;
    let image = |t: &str| format!("{}/e2e/app:{t}", sys.lab.registry.host());
    let recreate = w
        .rolling_cloneset(
            &nodes,
            "recreate",
            &image("1"),
            &image("2"),
            json!({"type": "ReCreate", "partition": 1}),
            1,
        )
        .await;
    w.wait_marked("ControllerRevision", "recreate-v2", IGNORED)
        .await;
    assert!(w.jobs_of(&recreate).await.is_empty());

    // Rolled out v1 → v2 (marked), then v2 → v3 began and was rolled back to v2: v2 is the
    // update revision again (renumbered 4), and the pods already on v3 need v2's image.
    let cs = w
        .rolling_cloneset(
            &nodes,
            "app",
            &image("1"),
            &image("2"),
            json!({"type": "InPlaceIfPossible", "partition": 0, "maxUnavailable": 1}),
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

/// The manager starts with no OpenKruise CRD, notices the CloneSet CRD once installed (no
/// restart), pre-downloads for it, and stops watching it once removed.
#[tokio::test]
async fn cloneset_crd_installed_after_the_manager_started() {
    let (sys, w, nodes) = setup(false, &["--predownload-discovery-interval", "1s"], 5).await;
    let manager = sys.manager.as_ref().unwrap();
    let watched = || async {
        let m = manager.metrics().await;
        m.lines()
            .find(|l| l.starts_with("kruise_manager_predownload_workloads{kind=\"cloneset\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
    };
    install_openkruise_crds(&sys.cluster).await;
    let image = |t: &str| format!("{}/e2e/late:{t}", sys.lab.registry.host());
    let cs = w
        .rolling_cloneset(
            &nodes,
            "late",
            &image("1"),
            &image("2"),
            json!({"type": "InPlaceIfPossible", "partition": 1}),
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
    remove_openkruise_crds(&sys.cluster).await;
    wait_for(
        "the manager to stop watching CloneSets once the CRD is gone",
        DEADLINE,
        || async { (watched().await == Some(0)).then_some(()) },
    )
    .await;
}

/// A refused job creation is retried, shown as a Warning event on the workload, and the
/// revision is marked only once the job exists.
#[tokio::test]
async fn a_refused_job_creation_is_retried_and_warned_about() {
    let (sys, w, nodes) = setup(true, &[], 5).await;
    sys.cluster
        .inject(json!({"failWrites": 1, "failOnly": "create imagepulljobs"}))
        .await;
    let image = |t: &str| format!("{}/e2e/retry:{t}", sys.lab.registry.host());
    let cs = w
        .rolling_cloneset(
            &nodes,
            "retry",
            &image("1"),
            &image("2"),
            json!({"type": "InPlaceIfPossible", "partition": 1}),
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

/// A DaemonSet (apps/v1, opted in by annotation) rolling on 10 nodes with maxUnavailable 2:
/// the 8 nodes not updated yet pull the new image through the runtime; the 2 updated do not.
#[tokio::test]
async fn daemonset_rollout_pre_pulls_on_the_nodes_not_updated_yet() {
    let mut sys = System::without_manager(Cluster::local()).await;
    let mut m = sys.manager_process("manager", &[]);
    m.wait_ready(DEADLINE).await;
    sys.manager = Some(m);
    let mut nodes = Vec::new();
    for i in 0..10 {
        nodes.push(sys.add_node(&format!("d{i}"), json!({})).await);
    }
    let w = Workloads::new(&sys.cluster, &sys.ns);
    let old = sys.push("e2e/agent", 1).reference;
    let new = sys.push("e2e/agent-next", 2).reference;
    let labels = json!({"app": "agent"});
    let ds = w.create(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "annotations": {"apps.kruise.io/image-predownload": "true",
            "apps.kruise.io/image-predownload-parallelism": "4"}},
        "spec": {"selector": {"matchLabels": labels}, "template": template(&labels, &[("main", &new)]),
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}},
    })).await;
    w.revision(
        &ds,
        "agent-old",
        "old",
        1,
        &template(&labels, &[("main", &old)]),
    )
    .await;
    w.revision(
        &ds,
        "agent-new",
        "new",
        2,
        &template(&labels, &[("main", &new)]),
    )
    .await;
    for (i, node) in nodes.iter().enumerate() {
        let hash = if i < 2 { "new" } else { "old" };
        let image = if i < 2 { &new } else { &old };
        w.pod(
            &ds,
            &format!("agent-{i}"),
            node,
            json!({"app": "agent", "controller-revision-hash": hash}),
            image,
        )
        .await;
    }
    w.patch(&ds, json!({"status": {"observedGeneration": 1, "desiredNumberScheduled": 10, "currentNumberScheduled": 10,
        "numberMisscheduled": 0, "numberReady": 10, "updatedNumberScheduled": 2}}), true).await;

    let jobs = w
        .wait_jobs(&ds, 1, "one pre-download job for the DaemonSet")
        .await;
    let name = jobs[0].metadata.name.clone().unwrap();
    let status = sys
        .wait_job(&name, "8 nodes pulled the new image", |s| s.succeeded == 8)
        .await;
    assert_eq!((status.desired, status.failed), (8, 0));
    let (key, tag) = e2e::node::key_and_tag(&new);
    for (i, node) in nodes.iter().enumerate() {
        let ni = sys.images.api.get(node).await.unwrap();
        let pulled = ni
            .status
            .as_ref()
            .and_then(|s| s.image_statuses.get(&key))
            .is_some_and(|s| {
                s.tags
                    .iter()
                    .any(|t| t.tag == tag && t.phase == TagPhase::Succeeded)
            });
        assert_eq!(
            pulled,
            i >= 2,
            "node {i} (updated: {}) pulled the new image: {pulled}",
            i < 2
        );
    }
    // Every node updated: the job goes.
    w.patch(&ds, json!({"status": {"updatedNumberScheduled": 10}}), true)
        .await;
    w.wait_jobs(
        &ds,
        0,
        "the DaemonSet's job to be deleted once every node is updated",
    )
    .await;
}

/// A StatefulSet (apps/v1) with partition 3 of 5: every pod not on the update revision is
/// targeted, highest ordinal first, and one at a time (parallelism 1) the highest comes first.
#[tokio::test]
async fn statefulset_partitioned_rollout_reaches_the_highest_ordinal_first() {
    let (sys, w, nodes) = setup(false, &[], 5).await;
    let image = |t: &str| format!("{}/e2e/db:{t}", sys.lab.registry.host());
    let labels = json!({"app": "db"});
    let sts = w.create(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "annotations": {"apps.kruise.io/image-predownload": "true"}},
        "spec": {"replicas": 5, "serviceName": "db", "selector": {"matchLabels": labels},
                 "template": template(&labels, &[("main", &image("2"))]),
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 3}}},
    })).await;
    // Pod i on node i; db-4 is updated already. The revisions come last, the update one
    // first, so the first decision already sees every pod.
    for (i, node) in nodes.iter().enumerate() {
        let rev = if i == 4 { "db-2" } else { "db-1" };
        w.pod(
            &sts,
            &format!("db-{i}"),
            node,
            json!({"app": "db", "controller-revision-hash": rev}),
            &image("1"),
        )
        .await;
    }
    w.patch(
        &sts,
        json!({"status": {"observedGeneration": 1, "replicas": 5, "readyReplicas": 5,
        "currentRevision": "db-1", "updateRevision": "db-2", "updatedReplicas": 1}}),
        true,
    )
    .await;
    w.revision(
        &sts,
        "db-2",
        "2",
        2,
        &template(&labels, &[("main", &image("2"))]),
    )
    .await;
    w.revision(
        &sts,
        "db-1",
        "1",
        1,
        &template(&labels, &[("main", &image("1"))]),
    )
    .await;
    let jobs = w
        .wait_jobs(&sts, 1, "one pre-download job for the StatefulSet")
        .await;
    let order: Vec<String> = jobs[0].metadata.annotations.as_ref().unwrap()
        ["apps.kruise.io/image-predownload-node-order"]
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(
        order,
        vec![
            nodes[3].clone(),
            nodes[2].clone(),
            nodes[1].clone(),
            nodes[0].clone()
        ]
    );
    let first = wait_for("the first node to get the image", DEADLINE, || async {
        let n = sys.nodes_with(&image("2")).await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(
        first,
        vec![nodes[3].clone()],
        "db-3 is updated next: its node comes first"
    );
    // Updated: the job goes.
    w.patch(
        &sts,
        json!({"status": {"currentRevision": "db-2", "updatedReplicas": 5}}),
        true,
    )
    .await;
    w.wait_jobs(
        &sts,
        0,
        "the StatefulSet's job to be deleted once it is updated",
    )
    .await;
}

/// A Deployment (apps/v1): the nodes of the old ReplicaSet's pods get the new image, the new
/// ReplicaSet's do not; the job goes when the rollout completes and when the Deployment does.
#[tokio::test]
async fn deployment_rollout_reaches_the_old_replicasets_nodes() {
    let (sys, w, nodes) = setup(false, &[], 4).await;
    let image = |t: &str| format!("{}/e2e/api:{t}", sys.lab.registry.host());
    let annotations = json!({"apps.kruise.io/image-predownload-parallelism": "3"});
    let (old, new) = (image("1"), image("2"));
    let deploy = w
        .rolling_deployment(&nodes, "api", (&old, &new), annotations, 1)
        .await;
    let jobs: Vec<ImagePullJob> = w
        .wait_jobs(&deploy, 1, "one pre-download job for the Deployment")
        .await;
    assert_eq!(jobs[0].spec.image, image("2"));
    let placed = wait_for(
        "the old ReplicaSet's 3 nodes to get the new image",
        DEADLINE,
        || async {
            let n = sys.nodes_with(&image("2")).await;
            (n.len() == 3).then_some(n)
        },
    )
    .await;
    assert_eq!(placed, nodes[..3].to_vec());
    w.delete(&deploy).await;
    w.wait_jobs(&deploy, 0, "the deleted Deployment's job to go")
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

/// An Advanced StatefulSet (apps.kruise.io) rolling in place with partition 2: its job reaches
/// the pods still on the old revision, highest ordinal first, and goes once it is updated.
#[tokio::test]
async fn advanced_statefulset_in_place_rollout_pre_downloads_and_cleans_up() {
    let (sys, w, nodes) = setup(true, &[], 5).await;
    let image = |t: &str| format!("{}/e2e/cache:{t}", sys.lab.registry.host());
    let labels = json!({"app": "cache"});
    let asts = rolling_set(&w, &nodes, json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "StatefulSet",
        "metadata": {"name": "cache", "annotations": {"apps.kruise.io/image-predownload-parallelism": "2"}},
        "spec": {"replicas": 5, "serviceName": "cache", "selector": {"matchLabels": labels},
                 "template": template(&labels, &[("main", &image("2"))]),
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate":
                     {"podUpdatePolicy": "InPlaceIfPossible", "partition": 2, "maxUnavailable": 1}}},
    }), (&image("1"), &image("2")), 0, json!({"observedGeneration": 1, "replicas": 5,
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

/// An Advanced DaemonSet (apps.kruise.io) honours min-updated-ready (OpenKruise ignores it):
/// no job until 2 pods are updated and ready; then the nodes not updated pull; once every node
/// is updated the job goes.
#[tokio::test]
async fn advanced_daemonset_waits_for_updated_ready_pods() {
    let (sys, w, nodes) = setup(true, &[], 5).await;
    let image = |t: &str| format!("{}/e2e/agent:{t}", sys.lab.registry.host());
    let ads = |name: &str, annotations: Value| {
        let labels = json!({"app": name});
        json!({
            "apiVersion": "apps.kruise.io/v1alpha1", "kind": "DaemonSet",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"selector": {"matchLabels": labels}, "template": template(&labels, &[("main", &image("2"))]),
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "partition": 0}}},
        })
    };
    let status = json!({"observedGeneration": 1, "desiredNumberScheduled": 5, "currentNumberScheduled": 5,
        "numberMisscheduled": 0, "numberReady": 5, "updatedNumberScheduled": 1});
    let images = (image("1"), image("2"));
    let images = (images.0.as_str(), images.1.as_str());
    // The gated one first: once the other's job exists, the gated one was decided too.
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
