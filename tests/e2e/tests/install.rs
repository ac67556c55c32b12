//! What installing and upgrading the chart meets: a leader stopped by a rolling update hands
//! its Lease over at once (the standby writes within 2 s of the signal, writes in flight or
//! not), and jobs and NodeImages OpenKruise wrote are adopted as they are.

use std::time::{Duration, Instant};

use e2e::node::key_and_tag;
use e2e::{manifest, wait_for, Cluster, DaemonOptions, Process, System, DEADLINE};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kruise_api::constants::DELETION_PROTECTION_FINALIZER;
use kruise_api::{NodeImage, TagPhase};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use serde_json::json;

async fn holder(env: &System) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.cluster.client.clone(), "default");
    leases
        .get_opt(&env.cluster.name("kruise-manager"))
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// When NodeImage `name` is first seen, by a watch started now.
fn node_image_created(env: &System, name: &str) -> tokio::sync::oneshot::Receiver<Instant> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut images = watcher(env.images.api.clone(), config)
        .applied_objects()
        .boxed();
    let (seen, first) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        while let Some(event) = images.next().await {
            // A failed watch request is retried by the next poll of the stream.
            if event.is_ok() {
                let _ = seen.send(Instant::now());
                return;
            }
        }
    });
    first
}

/// SIGTERM to `leader`, and the time from the signal to the standby's first write: the
/// NodeImage of a Node added once the standby logs that it leads, so that only the standby can
/// write it, and everything the stopping leader does before handing over counts. (A NodeImage,
/// not a job's status: a new job's first node may wait for other jobs up to 2 s by design,
/// which is planning, not handover.)
async fn sigterm_to_standby_write(
    env: &System,
    leader: &mut Process,
    standby: &Process,
) -> Duration {
    let late = env.cluster.name("late");
    let written = node_image_created(env, &late);
    leader.send_sigterm();
    let signalled = Instant::now();
    while !standby.log_text().contains("leading; planning") {
        assert!(
            signalled.elapsed() < DEADLINE,
            "the standby did not lead within {DEADLINE:?} of the leader's SIGTERM:\n{}",
            standby.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leading = signalled.elapsed();
    env.cluster.create_node(&late, json!({})).await;
    let written = tokio::time::timeout(DEADLINE, written)
        .await
        .expect("the standby creates the NodeImage of a Node added after it leads")
        .expect("the NodeImage watch stays up");
    let took = written.duration_since(signalled);
    println!("after the leader's SIGTERM the standby led within {leading:?} and wrote at {took:?}");
    took
}

/// With the default 15 s lease, a leader that kept its Lease on SIGTERM would leave nobody
/// planning for 15 s; released, the standby takes over and writes within 2 s of the signal.
#[tokio::test]
async fn a_leader_stopped_by_sigterm_hands_over_and_the_standby_writes_within_2s() {
    let mut env = System::without_manager(Cluster::start().await).await;
    let lease = ["--leader-election-lease-duration", "15s"];
    let mut first = env.manager_process("manager-first", &lease);
    first.wait_ready(DEADLINE).await;
    let img = env.push("lab/handover", 31);
    let node = env.add_node("a", json!({})).await;
    let leader = wait_for("a leader", DEADLINE, || holder(&env)).await;
    let mut standby = env.manager_process("manager-standby", &lease);
    standby.wait_ready(DEADLINE).await;
    assert_eq!(holder(&env).await.as_deref(), Some(leader.as_str()));

    let took = sigterm_to_standby_write(&env, &mut first, &standby).await;
    assert!(
        took < Duration::from_secs(2),
        "the standby wrote only {took:?} after the leader's SIGTERM; the leader should release \
         its Lease at once (log: {})",
        first.log.display()
    );
    let status = first.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "a stopped manager exits 0, not {status}");
    assert_ne!(holder(&env).await, Some(leader));
    assert!(first.log_text().contains("released the lease"));
    // The standby plans jobs as well (on the node with a daemon).
    env.apply_job(manifest(
        "v1beta1",
        "after",
        &img.reference,
        json!({"selector": {"names": [node]}}),
    ))
    .await;
    env.wait_job("after", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!(env.nodes_with(&img.reference).await, [node]);
}

/// A leader stopped while its NodeImage writes hang on a slow API server still hands over
/// within 2 s of SIGTERM: it releases its Lease first and drains its writes after, so the
/// standby does not wait out the leader's grace period.
#[tokio::test]
async fn a_leader_stopped_with_writes_in_flight_hands_over_within_2s() {
    let env = System::without_manager(Cluster::local()).await;
    let lease = ["--leader-election-lease-duration", "15s"];
    let mut first = env.manager_process("manager-first", &lease);
    first.wait_ready(DEADLINE).await;
    let mut standby = env.manager_process("manager-standby", &lease);
    standby.wait_ready(DEADLINE).await;
    let slow = env.cluster.name("slow");
    env.cluster.create_node(&slow, json!({})).await;
    wait_for("the leader to create the NodeImage", DEADLINE, || async {
        env.images
            .api
            .get_opt(&slow)
            .await
            .ok()
            .flatten()
            .map(|_| ())
    })
    .await;
    // Writes to the slow node's NodeImage hang past the leader's grace period.
    env.cluster
        .inject(json!({"latencyMs": 600_000, "latencyPath": format!("/nodeimages/{slow}")}))
        .await;
    let on_slow = json!({"selector": {"names": [slow]}});
    env.apply_job(manifest("v1beta1", "stalled", "lab/stalled:1", on_slow))
        .await;
    wait_for("the leader's write to hang", DEADLINE, || async {
        (env.cluster.stalled_writes().await? > 0).then_some(())
    })
    .await;

    let took = sigterm_to_standby_write(&env, &mut first, &standby).await;
    assert!(
        took < Duration::from_secs(2),
        "the standby wrote only {took:?} after the leader's SIGTERM, with a leader's write in \
         flight; the leader should release its Lease before draining its writes (log: {})",
        first.log.display()
    );
    let status = first.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "a stopped manager exits 0, not {status}");
}

/// A cluster moving from OpenKruise: its job (with its deletion-protection finalizer and its
/// status) and its NodeImage (the tag pulled, at version 0, with a 24 h TTL in the tag policy)
/// exist before kruise-manager starts. The manager counts the node as done without asking for
/// a new pull, the daemon does not pull the image again, and deleting the job works.
#[tokio::test]
async fn openkruise_jobs_and_node_images_are_adopted_without_pulling_again() {
    let mut env = System::without_manager(Cluster::start().await).await;
    let img = env.push("lab/adopted", 32);
    let (key, tag) = key_and_tag(&img.reference);
    let node = env.cluster.name("adopted");
    env.cluster.create_node(&node, json!({})).await;

    let job = env
        .apply_job(manifest(
            "v1alpha1",
            "from-openkruise",
            &img.reference,
            json!({"parallelism": 10, "completionPolicy": {"type": "Never"}}),
        ))
        .await;
    let job = env
        .jobs()
        .patch(
            "from-openkruise",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [DELETION_PROTECTION_FINALIZER]}})),
        )
        .await
        .unwrap_or(job);
    let an_hour_ago = (k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_hours(1))
    .to_string();
    env.jobs()
        .patch_status(
            "from-openkruise",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"desired": 1, "succeeded": 1, "active": 0, "startTime": an_hour_ago}})),
        )
        .await
        .unwrap();

    let mut ni: NodeImage = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage",
        "metadata": {"name": node},
        "spec": {"images": {key.clone(): {"tags": [{
            "tag": tag, "createdAt": an_hour_ago, "version": 0,
            "pullPolicy": {"timeoutSeconds": 600, "backoffLimit": 3, "ttlSecondsAfterFinished": 86400, "activeDeadlineSeconds": 1800},
            "ownerReferences": [{"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "name": "from-openkruise", "namespace": env.ns, "uid": job.uid()}],
            "imagePullPolicy": "IfNotPresent",
        }]}}},
    }))
    .unwrap();
    // OpenKruise mirrors the Node's labels, the test's among them.
    ni.metadata.labels = Some(serde_json::from_value(env.cluster.labelled(json!({}))).unwrap());
    let images = env.cluster.node_images();
    images
        .api
        .create(&PostParams::default(), &ni)
        .await
        .unwrap();
    images
        .api
        .patch_status(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"desired": 1, "succeeded": 1, "imageStatuses": {key.clone(): {"tags": [{
                "tag": tag, "phase": "Succeeded", "version": 0, "progress": 100,
                "startTime": an_hour_ago, "completionTime": an_hour_ago, "imageID": "sha256:adopted",
            }]}}}})),
        )
        .await
        .unwrap();

    let opts = DaemonOptions::local(&node, env.lab.cri_endpoint());
    let mut daemon = Process::daemon(env.cluster.kubeconfig(), &opts, env.logs.path());
    daemon.wait_ready(DEADLINE).await;
    env.daemons.push(daemon);
    env.start_manager().await;

    // The manager's own count (the status above has no message; the manager writes one, in the
    // same round as any NodeImage write it would make).
    let st = env
        .wait_job("from-openkruise", "counted by kruise-manager", |s| {
            s.message.is_some()
        })
        .await;
    assert_eq!((st.desired, st.succeeded, st.active), (1, 1, 0));
    let entry = images
        .tag_spec(&node, &img.reference)
        .await
        .expect("the tag stays");
    assert_eq!(entry.version, 0, "no new pull round is asked for");
    assert_eq!(entry.owner_references.len(), 1);
    let status = images.tag_status(&node, &img.reference).await.unwrap();
    assert_eq!((status.phase, status.version), (TagPhase::Succeeded, 0));
    let cri = kruise_cri::detect(Some(&env.lab.cri_endpoint()), std::path::Path::new("/none"))
        .await
        .unwrap()
        .client;
    assert!(
        cri.image_status(&img.reference).await.unwrap().is_none(),
        "the daemon pulled an image OpenKruise had already pulled"
    );

    env.jobs()
        .delete("from-openkruise", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_job_gone("from-openkruise", "deleted despite OpenKruise's finalizer")
        .await;
    env.wait_withdrawn(&img.reference).await;
}

/// A manager that cannot reach its API server says which server and why, keeps trying, and
/// still stops at once on SIGTERM; one whose CRDs are missing says to install them, and starts
/// working when they appear, without a restart.
#[tokio::test]
async fn the_manager_explains_what_it_waits_for_and_stops_promptly_meanwhile() {
    let logs = tempfile::tempdir().unwrap();
    let port = kruise_testlab::free_port().unwrap();
    let kubeconfig = logs.path().join("unreachable.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\nusers: [{{name: u, user: {{}}}}]\n"
        ),
    )
    .unwrap();
    let mut manager = Process::manager(&kubeconfig, logs.path(), "unreachable");
    wait_for(
        "the manager to say why it cannot start",
        DEADLINE,
        || async {
            let log = manager.log_text();
            (log.contains(&format!("http://127.0.0.1:{port}"))
                && log.contains("Connection refused"))
            .then_some(())
        },
    )
    .await;
    assert!(
        !manager.log_text().contains("install the CRDs"),
        "an unreachable server is not a missing CRD:\n{}",
        manager.log_text()
    );
    let stop = Instant::now();
    let status = manager.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        stop.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?} while the manager waited for its API server",
        stop.elapsed()
    );

    // An API server without the CRDs.
    let server = kruise_test_apiserver::TestApiServer::start_detached(
        "127.0.0.1:0".parse().unwrap(),
        &[],
        None,
    )
    .unwrap();
    let mut manager = Process::manager(server.kubeconfig(), logs.path(), "no-crds");
    wait_for("the manager to ask for the CRDs", DEADLINE, || async {
        manager
            .log_text()
            .contains("install the CRDs: kubectl apply -f config/crd/")
            .then_some(())
    })
    .await;
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
    for entry in std::fs::read_dir(dir).unwrap() {
        let crd =
            serde_yaml::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    manager.wait_ready(DEADLINE).await;
}
