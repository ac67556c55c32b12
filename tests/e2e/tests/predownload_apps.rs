//! Rollout pre-download for the apps/v1 kinds, end to end: the real kruise-manager against the
//! test API server and one real kruise-daemon per node, with workloads, revisions and pods
//! written as their controllers would write them (no workload controller runs, so these tests
//! always use their own test API server). Also the canary: a partition holding every pod.
//! OpenKruise's kinds are in `predownload.rs`.

use e2e::workloads::{setup, template, Workloads};
use e2e::{wait_for, Cluster, System, DEADLINE};
use kruise_api::{ImagePullJob, TagPhase};
use serde_json::json;

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
    let (sys, w, nodes) = setup(None, &[], 5).await;
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
    let (sys, w, nodes) = setup(None, &[], 4).await;
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

/// The canary (#16): a StatefulSet whose partition holds every pod (partition = replicas)
/// changes its image; the pre-download does not wait for the partition to drop. The job
/// reaches the canary's node (the highest ordinal) first, and the image, pulled through a
/// throttling proxy so that the pull takes seconds, is on that node before the partition is
/// lowered by one: the canary's recreated pod finds it there instead of racing a late job.
#[tokio::test]
async fn a_canary_finds_its_image_pulled_before_the_partition_drops() {
    let mut sys = System::without_manager(Cluster::local()).await;
    let mut m = sys.manager_process("manager", &[]);
    m.wait_ready(DEADLINE).await;
    sys.manager = Some(m);
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(sys.add_node(&format!("c{i}"), json!({})).await);
    }
    let w = Workloads::new(&sys.cluster, &sys.ns);
    let old = sys.push("e2e/canary-old", 31).reference;
    let pushed = sys.push("e2e/canary", 32); // 1 MiB
    let proxy = sys
        .lab
        .slow_proxy(&sys.lab.registry, 256 << 10)
        .expect("proxy started");
    let new = pushed
        .reference
        .replace(&sys.lab.registry.host(), &proxy.host());
    let labels = json!({"app": "canary"});
    let sts = w.create(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "canary", "annotations": {"apps.kruise.io/image-predownload": "true"}},
        "spec": {"replicas": 3, "serviceName": "canary", "selector": {"matchLabels": labels},
                 "template": template(&labels, &[("main", &new)]),
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 3}}},
    })).await;
    for (i, node) in nodes.iter().enumerate() {
        let labels = json!({"app": "canary", "controller-revision-hash": "canary-1"});
        w.pod(&sts, &format!("canary-{i}"), node, labels, &old)
            .await;
    }
    w.patch(
        &sts,
        json!({"status": {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
        "currentRevision": "canary-1", "updateRevision": "canary-2", "updatedReplicas": 0}}),
        true,
    )
    .await;
    w.revision(
        &sts,
        "canary-2",
        "2",
        2,
        &template(&labels, &[("main", &new)]),
    )
    .await;
    w.revision(
        &sts,
        "canary-1",
        "1",
        1,
        &template(&labels, &[("main", &old)]),
    )
    .await;

    let jobs = w
        .wait_jobs(
            &sts,
            1,
            "a pre-download job while the partition holds every pod",
        )
        .await;
    let order = &jobs[0].metadata.annotations.as_ref().unwrap()
        ["apps.kruise.io/image-predownload-node-order"];
    assert!(
        order.starts_with(&format!("{},", nodes[2])),
        "the canary's node first: {order}"
    );
    let (key, tag) = e2e::node::key_and_tag(&new);
    let pulled_on = |node: &str| {
        let api = sys.images.api.clone();
        let (node, key, tag) = (node.to_string(), key.clone(), tag.clone());
        async move {
            let ni = api.get(&node).await.ok()?;
            let s = ni.status?.image_statuses.get(&key)?.clone();
            s.tags
                .iter()
                .any(|t| t.tag == tag && t.phase == TagPhase::Succeeded)
                .then_some(())
        }
    };
    let started = std::time::Instant::now();
    wait_for(
        "the canary's node to have pulled the new image",
        DEADLINE,
        || pulled_on(&nodes[2]),
    )
    .await;
    let pulled_after = started.elapsed();
    assert!(
        proxy.bytes_sent() >= 1 << 20,
        "the image came through the throttling proxy ({} bytes)",
        proxy.bytes_sent()
    );
    // Still held: nothing of the rollout has moved yet.
    let now = w.get("apps/v1", "StatefulSet", "canary").await.unwrap();
    assert_eq!(
        now["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        3
    );

    // The partition drops by one: the canary (canary-2) is updated; its node has the image.
    w.patch(
        &sts,
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}),
        false,
    )
    .await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "canary-2"}});
    w.patch(
        &pod,
        json!({"metadata": {"labels": {"controller-revision-hash": "canary-2"}}}),
        false,
    )
    .await;
    assert!(pulled_on(&nodes[2]).await.is_some());
    assert_eq!(
        w.jobs_of(&sts).await.len(),
        1,
        "the job goes on for the other pods"
    );
    eprintln!("the canary's node had the image {pulled_after:?} after the job appeared");
}

/// One slow workload does not hold up the others (#16): the API server holds the first
/// Deployment's job creation (an injected latency, lifted once the request is held, so that
/// only that request waits), and a second Deployment rolled meanwhile still gets its job while
/// the first request is held. The first gets its job too, once its request times out and is
/// retried.
#[tokio::test]
async fn a_stalled_job_creation_does_not_hold_up_another_workload() {
    let (sys, w, nodes) = setup(None, &[], 4).await;
    let image = |app: &str, t: &str| format!("{}/e2e/{app}:{t}", sys.lab.registry.host());
    let jobs_path = format!("/namespaces/{}/imagepulljobs", sys.ns);
    sys.cluster
        .inject(json!({"latencyMs": 120_000, "latencyPath": jobs_path}))
        .await;
    let slow = w
        .rolling_deployment(
            &nodes,
            "slow",
            (&image("slow", "1"), &image("slow", "2")),
            json!({}),
            1,
        )
        .await;
    let stalled = || async { sys.cluster.stalled_writes().await.unwrap_or(0) };
    wait_for(
        "the slow Deployment's job creation to be held",
        DEADLINE,
        || async { (stalled().await >= 1).then_some(()) },
    )
    .await;
    sys.cluster.inject(json!({"latencyMs": 0})).await;
    let fast = w
        .rolling_deployment(
            &nodes,
            "fast",
            (&image("fast", "1"), &image("fast", "2")),
            json!({}),
            1,
        )
        .await;
    let jobs = w.wait_jobs(&fast, 1, "the second Deployment's job").await;
    assert_eq!(jobs[0].spec.image, image("fast", "2"));
    assert!(
        stalled().await >= 1,
        "the slow Deployment's creation is still held when the other's job exists"
    );
    assert!(
        w.jobs_of(&slow).await.is_empty(),
        "the held creation did not land yet"
    );
    w.wait_jobs(
        &slow,
        1,
        "the slow Deployment's job, on the retry after the timeout",
    )
    .await;
}
