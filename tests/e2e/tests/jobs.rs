//! ImagePullJob end to end beyond OpenKruise's own scenarios (those are in openkruise.rs): the real kruise-manager and one kruise-daemon
//! per simulated node (all on the lab's containerd), jobs created as `kubectl apply` would, and
//! the result checked where a user looks: job status, NodeImages, the runtime.

use std::time::Duration;

use e2e::node::key_and_tag;
use e2e::{manifest, wait_for, System, DEADLINE};
use kruise_api::TagPhase;
use kruise_testlab::Layer;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

/// Mission pattern 1, as written (v1alpha1): base image on the whole cluster, forever; nodes added
/// later get it too.
#[tokio::test]
async fn base_image_job_covers_every_node_and_new_ones() {
    let mut env = System::start().await;
    let img = env.push("xxx/base-image", 1);
    let a = env.add_node("a", json!({})).await;
    let b = env.add_node("b", json!({})).await;
    env.apply_job(manifest("v1alpha1", "base-image-job", &img.reference, json!({
        "parallelism": 10, "completionPolicy": {"type": "Never"}, "pullPolicy": {"backoffLimit": 3, "timeoutSeconds": 300},
    })))
    .await;
    let st = env
        .wait_job("base-image-job", "2 of 2 nodes succeeded", |s| {
            s.desired == 2 && s.succeeded == 2
        })
        .await;
    assert!(st.completion_time.is_none(), "a Never job never completes");
    for node in [&a, &b] {
        env.images
            .wait_phase(node, &img.reference, TagPhase::Succeeded, 0, DEADLINE)
            .await;
    }
    let c = env.add_node("c", json!({})).await;
    env.wait_job("base-image-job", "the new node succeeded too", |s| {
        s.desired == 3 && s.succeeded == 3
    })
    .await;
    env.images
        .wait_phase(&c, &img.reference, TagPhase::Succeeded, 0, DEADLINE)
        .await;
}

/// Mission pattern 2 (v1beta1 here): sidecar image on every node once; the job completes and,
/// with a short TTL, deletes itself and its tags leave the NodeImages.
#[tokio::test]
async fn sidecar_job_completes_then_goes_with_its_ttl() {
    let mut env = System::start().await;
    let img = env.push("xxx/sidecar-image", 2);
    env.add_node("a", json!({})).await;
    env.add_node("b", json!({})).await;
    env.apply_job(manifest("v1beta1", "sidecar-image-job", &img.reference, json!({
        "parallelism": 20, "completionPolicy": {"type": "Always", "activeDeadlineSeconds": 1800, "ttlSecondsAfterFinished": 5},
        "pullPolicy": {"backoffLimit": 3, "timeoutSeconds": 300},
    })))
    .await;
    let st = env
        .wait_job("sidecar-image-job", "completed", |s| {
            s.completion_time.is_some()
        })
        .await;
    assert_eq!(
        (st.desired, st.succeeded, st.failed, st.active),
        (2, 2, 0, 0)
    );
    assert_eq!(st.message.as_deref(), Some("job has completed"));
    wait_for(
        "the job to delete itself after its TTL",
        DEADLINE,
        || async {
            env.jobs()
                .get_opt("sidecar-image-job")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    wait_for("its tags to leave the NodeImages", DEADLINE, || async {
        env.nodes_with(&img.reference)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Mission pattern 3: a resource pool by node label, forever.
#[tokio::test]
async fn serverless_job_pulls_only_on_its_pool() {
    let mut env = System::start().await;
    let img = env.push("xxx/serverless-image", 3);
    let p1 = env
        .add_node("pool1", json!({"resource-pool": "serverless"}))
        .await;
    let p2 = env
        .add_node("pool2", json!({"resource-pool": "serverless"}))
        .await;
    env.add_node("other", json!({"resource-pool": "batch"}))
        .await;
    env.apply_job(manifest("v1alpha1", "serverless-job", &img.reference, json!({
        "parallelism": 10, "completionPolicy": {"type": "Never"}, "pullPolicy": {"backoffLimit": 3, "timeoutSeconds": 300},
        "selector": {"matchLabels": {"resource-pool": "serverless"}},
    })))
    .await;
    env.wait_job("serverless-job", "both pool nodes succeeded", |s| {
        s.desired == 2 && s.succeeded == 2
    })
    .await;
    let mut want = vec![p1, p2];
    want.sort();
    assert_eq!(
        env.nodes_with(&img.reference).await,
        want,
        "only the pool's NodeImages list the image"
    );
}

#[tokio::test]
async fn parallelism_is_never_exceeded() {
    let mut env = System::start().await;
    let img = env
        .lab
        .push(
            &env.lab.registry,
            "lab/par",
            "v1",
            &[Layer::random("p", 6 << 20, 9)],
        )
        .unwrap();
    let proxy = env.lab.slow_proxy(&env.lab.registry, 4 << 20).unwrap();
    let slow = img
        .reference
        .replace(&env.lab.registry.host(), &proxy.host());
    for i in 0..4 {
        env.add_node(&format!("n{i}"), json!({})).await;
    }
    env.apply_job(manifest("v1beta1", "par", &slow, json!({"parallelism": 2})))
        .await;
    // What parallelism bounds, read where it happens: nodes that have the tag and no result.
    let (key, tag) = key_and_tag(&slow);
    let most = std::sync::atomic::AtomicUsize::new(0);
    wait_for("the job to complete", Duration::from_secs(120), || async {
        let nodes = env
            .images
            .api
            .list(&kube::api::ListParams::default().labels(&env.cluster.selector()))
            .await
            .ok()?;
        let pulling = nodes
            .items
            .iter()
            .filter(|ni| {
                let Some(entry) = ni
                    .spec
                    .images
                    .get(&key)
                    .and_then(|i| i.tags.iter().find(|t| t.tag == tag))
                else {
                    return false;
                };
                !ni.status.as_ref().is_some_and(|s| {
                    s.image_statuses.get(&key).is_some_and(|i| {
                        i.tags.iter().any(|t| {
                            t.tag == tag
                                && t.version == entry.version
                                && t.phase == TagPhase::Succeeded
                        })
                    })
                })
            })
            .count();
        assert!(
            pulling <= 2,
            "parallelism 2 exceeded: {pulling} nodes pulling at once"
        );
        most.fetch_max(pulling, std::sync::atomic::Ordering::SeqCst);
        let st = env.jobs().get("par").await.ok()?.status?;
        st.completion_time.is_some().then_some(())
    })
    .await;
    let st = env.jobs().get("par").await.unwrap().status.unwrap();
    assert_eq!((st.desired, st.succeeded), (4, 4));
    assert_eq!(
        most.into_inner(),
        2,
        "with slow pulls, two nodes pull at once: the job uses its parallelism"
    );
}

/// `kubectl replace --force` (or GitOps re-creating a job the manager deleted after its TTL):
/// the new job under the old name starts afresh, with its own start time and its own pull.
#[tokio::test]
async fn a_job_recreated_under_the_same_name_starts_afresh() {
    let mut env = System::start().await;
    let first = env.push("lab/again-1", 21);
    let second = env.push("lab/again-2", 22);
    env.add_node("a", json!({})).await;
    let ttl = json!({"completionPolicy": {"type": "Always", "ttlSecondsAfterFinished": 1}});
    env.apply_job(manifest("v1beta1", "again", &first.reference, ttl.clone()))
        .await;
    let old = env
        .wait_job("again", "completed", |s| s.completion_time.is_some())
        .await;
    env.wait_job_gone("again", "deleted by its TTL").await;
    let created = env
        .apply_job(manifest("v1beta1", "again", &second.reference, ttl))
        .await;
    let new = env
        .wait_job("again", "the new job completed", |s| {
            s.completion_time.is_some() && s.start_time != old.start_time
        })
        .await;
    assert_eq!((new.desired, new.succeeded), (1, 1));
    assert!(
        new.start_time.unwrap().0 >= created.metadata.creation_timestamp.unwrap().0,
        "the old job's status was not carried over"
    );
    assert!(env.nodes_with(&first.reference).await.is_empty());
}

#[tokio::test]
async fn editing_a_job_moves_it_to_the_new_image() {
    let mut env = System::start().await;
    let old = env.push("lab/edit-old", 5);
    let new = env.push("lab/edit-new", 6);
    let node = env.add_node("a", json!({})).await;
    env.apply_job(manifest(
        "v1beta1",
        "edit",
        &old.reference,
        json!({"completionPolicy": {"type": "Never"}}),
    ))
    .await;
    env.wait_job("edit", "old image pulled", |s| s.succeeded == 1)
        .await;
    env.jobs()
        .patch(
            "edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": new.reference}})),
        )
        .await
        .unwrap();
    env.images
        .wait_phase(&node, &new.reference, TagPhase::Succeeded, 0, DEADLINE)
        .await;
    wait_for("the old tag to be withdrawn", DEADLINE, || async {
        env.nodes_with(&old.reference)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_manager_restart_mid_fan_out_loses_nothing() {
    let mut env = System::start().await;
    let img = env
        .lab
        .push(
            &env.lab.registry,
            "lab/restart",
            "v1",
            &[Layer::random("r", 4 << 20, 7)],
        )
        .unwrap();
    let proxy = env.lab.slow_proxy(&env.lab.registry, 4 << 20).unwrap();
    let slow = img
        .reference
        .replace(&env.lab.registry.host(), &proxy.host());
    for i in 0..3 {
        env.add_node(&format!("n{i}"), json!({})).await;
    }
    env.apply_job(manifest(
        "v1beta1",
        "restart",
        &slow,
        json!({"parallelism": 1}),
    ))
    .await;
    env.wait_job("restart", "one node pulling", |s| s.active == 1)
        .await;
    env.manager.as_mut().unwrap().kill();
    env.start_manager().await;
    let st = env
        .wait_job("restart", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.desired, st.succeeded, st.failed), (3, 3, 0));
    let (key, tag) = key_and_tag(&slow);
    for ni in env
        .images
        .api
        .list(&kube::api::ListParams::default().labels(&env.cluster.selector()))
        .await
        .unwrap()
        .items
    {
        let t = ni.spec.images[&key]
            .tags
            .iter()
            .find(|t| t.tag == tag)
            .unwrap();
        assert_eq!(t.owner_references.len(), 1, "owned once, not twice");
        assert_eq!(t.version, 0, "no node was asked to pull twice");
    }
}

/// Two jobs naming one Secret share one copy; a job naming a missing Secret says so in its
/// status; the copy goes with the last job naming it. (OpenKruise's scenarios 1-4 in
/// openkruise.rs cover the copy's lifecycle with one job.)
#[tokio::test]
async fn pull_secrets_are_shared_and_a_missing_one_is_named() {
    let mut env = System::start().await;
    let img = env.push_private("lab/secret", 8);
    env.add_node("a", json!({})).await;
    env.registry_secret("reg", false).await;
    for name in ["first", "second"] {
        env.apply_job(manifest(
            "v1beta1",
            name,
            &img.reference,
            json!({"pullSecrets": ["reg"], "completionPolicy": {"type": "Never"}}),
        ))
        .await;
        env.wait_job(name, "succeeded with the secret", |s| s.succeeded == 1)
            .await;
    }
    let copies = wait_for("one copy naming both jobs", DEADLINE, || async {
        let copies = env.synced_copies("reg").await;
        let refs = copies
            .first()?
            .annotations()
            .get("imagepulljobs.kruise.io/references")?
            .clone();
        (refs.split(',').count() == 2).then_some(copies)
    })
    .await;
    assert_eq!(copies.len(), 1, "one copy per source secret");

    env.apply_job(manifest(
        "v1beta1",
        "missing-secret",
        &img.reference,
        json!({"pullSecrets": ["nope"]}),
    ))
    .await;
    let st = env
        .wait_job("missing-secret", "a message about the secret", |s| {
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("pull secret"))
        })
        .await;
    assert!(st
        .message
        .unwrap()
        .contains(&format!("{}/nope not found", env.ns)));

    env.jobs()
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the copy to name only the second job", DEADLINE, || async {
        let copy = env.synced_copies("reg").await.pop()?;
        let refs = copy
            .annotations()
            .get("imagepulljobs.kruise.io/references")?
            .clone();
        (refs == format!("{}/second", env.ns)).then_some(())
    })
    .await;
    env.jobs()
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the copy to go with the last job", DEADLINE, || async {
        env.synced_copies("reg").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_manager_reports_metrics_and_stops_cleanly() {
    let mut env = System::start().await;
    let img = env.push("lab/metrics", 13);
    env.add_node("a", json!({})).await;
    env.apply_job(manifest("v1beta1", "m", &img.reference, json!({})))
        .await;
    env.wait_job("m", "completed", |s| s.completion_time.is_some())
        .await;
    let manager = env.manager.as_mut().unwrap();
    // The write queue drains once the job is done (a round may be in flight at any one moment:
    // the daemon's status writes wake the manager).
    let drained = [
        "kruise_manager_pending_writes{kind=\"nodeimage\"} 0",
        "kruise_manager_pending_writes{kind=\"job_status\"} 0",
    ];
    let metrics = wait_for("the write queue to drain", DEADLINE, || async {
        let m = manager.metrics().await;
        drained.iter().all(|d| m.contains(d)).then_some(m)
    })
    .await;
    for series in [
        "kruise_manager_reconciles_total",
        "kruise_manager_reconcile_duration_seconds",
        "kruise_manager_writes_total{kind=\"nodeimage\",result=\"ok\"}",
        "kruise_manager_imagepulljobs 1",
        // Conflicts with the daemon's status writes are normal; the counter must exist.
        "kruise_manager_reconcile_errors_total",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(manager.terminate(Duration::from_secs(10)).await.success());
}

/// A stalled API server must not hold a stopping manager past its grace period: the pod would
/// be SIGKILLed mid-write instead of stopping cleanly.
#[tokio::test]
async fn the_manager_stops_within_its_grace_while_writes_hang() {
    let mut env = System::start_local().await;
    env.add_node("a", json!({})).await;
    env.cluster
        .inject(json!({"latencyMs": 600_000, "latencyPath": "/nodeimages"}))
        .await;
    env.apply_job(manifest("v1beta1", "stall", "lab/stall:1", json!({})))
        .await;
    wait_for(
        "the manager's NodeImage write to hang",
        DEADLINE,
        || async { (env.cluster.stalled_writes().await? > 0).then_some(()) },
    )
    .await;
    let manager = env.manager.as_mut().unwrap();
    let status = manager.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    let log = manager.log_text();
    assert!(
        log.contains("stopping anyway"),
        "the log says the round was cut short:\n{log}"
    );
}

/// A leader whose lease renewals hang must stop writing before its lease can expire for the
/// others, or two managers would write at once.
#[tokio::test]
async fn a_leader_cut_off_from_its_lease_steps_down_in_time() {
    let mut env = System::start_local().await;
    let manager = env.manager.as_mut().unwrap();
    // Ready is not leading: cut the Lease off only once it leads, or it is a candidate that
    // never won, with nothing to step down from.
    wait_for("the manager to lead", DEADLINE, || {
        std::future::ready(
            manager
                .log_text()
                .contains("became the leader")
                .then_some(()),
        )
    })
    .await;
    env.cluster
        .inject(json!({"latencyMs": 600_000, "latencyPath": "/leases"}))
        .await;
    let manager = env.manager.as_mut().unwrap();
    // The test lease lasts 3s; stepping down comes at 2/3 of it after the last renewal.
    let exited = wait_for("the leader to step down", DEADLINE, || {
        std::future::ready(manager.exit_status())
    })
    .await;
    assert!(
        !exited.success(),
        "a deposed leader exits non-zero so it restarts"
    );
    let log = manager.log_text();
    assert!(
        log.contains("could not renew the lease in time; stepping down"),
        "{log}"
    );
}

/// On an API server so slow that taking the Lease outlasts the renewal deadline, the new leader
/// renews at once instead of leading on a claim it would have to drop at the first renewal; it
/// leads once the server answers in time again, without restarting.
#[tokio::test]
async fn a_slow_lease_acquisition_renews_before_leading() {
    let mut env = System::without_manager(e2e::Cluster::local()).await;
    // A read and a write of 1.2 s each: 2.4 s, past the 2 s a 3 s test lease allows a renewal.
    env.cluster
        .inject(json!({"latencyMs": 1200, "latencyPath": "/leases"}))
        .await;
    let mut manager = env.manager_process("slow-lease", &[]);
    manager.wait_ready(DEADLINE).await;
    wait_for(
        "the manager to find taking the lease too slow",
        DEADLINE,
        || {
            std::future::ready(
                manager
                    .log_text()
                    .contains("renewing before leading")
                    .then_some(()),
            )
        },
    )
    .await;
    assert!(
        !manager.log_text().contains("became the leader"),
        "it does not lead on a claim it cannot keep:\n{}",
        manager.log_text()
    );
    env.cluster.inject(json!({"latencyMs": 0})).await;
    env.manager = Some(manager);
    // The leader makes the node's NodeImage.
    env.add_node("a", json!({})).await;
    let manager = env.manager.as_mut().unwrap();
    assert!(manager.exit_status().is_none(), "the leader still runs");
    let log = manager.log_text();
    assert!(log.contains("became the leader"), "{log}");
    assert!(!log.contains("stepping down"), "{log}");
}

#[tokio::test]
async fn a_job_with_no_matching_node_waits_instead_of_completing() {
    let mut env = System::start().await;
    env.add_node("a", json!({"pool": "x"})).await;
    env.apply_job(manifest(
        "v1beta1",
        "none",
        "lab/none:1",
        json!({"selector": {"matchLabels": {"pool": "nowhere"}}}),
    ))
    .await;
    let st = env
        .wait_job("none", "a status", |s| s.start_time.is_some())
        .await;
    assert_eq!(st.desired, 0);
    assert!(
        st.completion_time.is_none(),
        "not completed with zero nodes (OpenKruise completes at once)"
    );
    assert_eq!(
        st.message.as_deref(),
        Some("job is running, no node matches it yet")
    );
}

/// The README's first command: the demo runs the whole system and the job succeeds.
#[test]
fn the_local_demo_runs_end_to_end() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kruise-demo"))
        .arg("--exit-when-done")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("SUCCEED 1")
            && stdout.contains("is in containerd as sha256:")
            && stdout.contains("1/1 nodes  succeeded 1"),
        "{stdout}"
    );
}

/// Two replicas: one leads and writes; when it dies the other takes over and finishes the work.
#[tokio::test]
async fn a_standby_manager_takes_over_from_a_dead_leader() {
    let mut env = System::start().await;
    let mut standby = env.manager_process("manager-standby", &[]);
    standby.wait_ready(DEADLINE).await;
    let img = env.push("lab/failover", 14);
    env.add_node("a", json!({})).await;
    env.apply_job(manifest("v1beta1", "first", &img.reference, json!({})))
        .await;
    env.wait_job("first", "completed", |s| s.completion_time.is_some())
        .await;
    assert!(
        !standby.log_text().contains("became the leader"),
        "only one leader"
    );
    env.manager.as_mut().unwrap().kill();
    env.apply_job(manifest("v1beta1", "second", &img.reference, json!({})))
        .await;
    env.wait_job("second", "completed by the new leader", |s| {
        s.completion_time.is_some()
    })
    .await;
    assert!(standby.log_text().contains("became the leader"));
}
