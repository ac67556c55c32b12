//! The manager and the daemon lose nothing when the API server expires their watches. Each
//! phase drops the watches and holds one kind's down while objects of that kind change, then
//! makes the server forget the history they would resume from: the watch resumes, gets
//! `410 Expired`, and the client must relist to see what changed. Always on the test API server:
//! a real one expires watches on its own schedule, which a test cannot call up.

use e2e::{manifest, wait_for, System, DEADLINE};
use kruise_api::TagPhase;
use kube::api::DeleteParams;
use serde_json::json;

/// How many lists of `resource` (`nodeimages.apps.kruise.io`) the program `agent` has made.
async fn lists(env: &System, resource: &str, agent: &str) -> u64 {
    let records = env.cluster.requests().await.expect("the test API server");
    records["requests"]
        .as_array()
        .expect("request records")
        .iter()
        .filter(|r| r["verb"] == "list" && r["resource"] == resource && r["agent"] == agent)
        .map(|r| r["count"].as_u64().unwrap_or_default())
        .sum()
}

/// Drops every watch and holds those whose path contains `path` until [`expire`].
async fn hold(env: &System, path: &str) {
    env.cluster
        .inject(json!({"holdWatches": true, "holdWatchesPath": path, "dropWatches": true}))
        .await;
}

/// Forgets the history, then lets the held watches through: each resumes from a version the
/// server no longer has.
async fn expire(env: &System) {
    env.cluster
        .inject(json!({"compact": true, "holdWatches": false}))
        .await;
}

/// Waits until `agent` has listed `resource` more than `before` times: a relist, not a resume.
async fn wait_relist(env: &System, resource: &str, agent: &str, before: u64) {
    wait_for(
        &format!("{agent} to relist {resource}"),
        DEADLINE,
        || async { (lists(env, resource, agent).await > before).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_manager_and_the_daemon_relist_after_their_watches_expire() {
    let mut env = System::start_local().await;
    let node = env.add_node("a", json!({})).await;
    let first = env.push("lab/relist-first", 61);
    let second = env.push("lab/relist-second", 62);
    const NODE_IMAGES: &str = "nodeimages.apps.kruise.io";
    const JOBS: &str = "imagepulljobs.apps.kruise.io";

    // 1. NodeImage watches (the daemon's and the manager's) are down while the manager, whose
    //    job watch is up, puts a new job's tag on the node.
    hold(&env, "/nodeimages").await;
    env.apply_job(manifest("v1beta1", "first", &first.reference, json!({})))
        .await;
    wait_for("the manager to write the first tag", DEADLINE, || async {
        env.images.tag_spec(&node, &first.reference).await
    })
    .await;
    let daemon_lists = lists(&env, NODE_IMAGES, "kruise-daemon").await;
    let manager_lists = lists(&env, NODE_IMAGES, "kruise-manager").await;
    expire(&env).await;
    wait_relist(&env, NODE_IMAGES, "kruise-daemon", daemon_lists).await;
    wait_relist(&env, NODE_IMAGES, "kruise-manager", manager_lists).await;
    env.images
        .wait_phase(&node, &first.reference, TagPhase::Succeeded, 0, DEADLINE)
        .await;
    env.wait_job("first", "its node succeeded", |s| {
        s.desired == 1 && s.succeeded == 1
    })
    .await;

    // 2. The manager's job watch is down while one job is created and the other deleted.
    hold(&env, "/imagepulljobs").await;
    env.apply_job(manifest("v1beta1", "second", &second.reference, json!({})))
        .await;
    env.jobs()
        .delete("first", &DeleteParams::default())
        .await
        .expect("first job deleted");
    let job_lists = lists(&env, JOBS, "kruise-manager").await;
    expire(&env).await;
    wait_relist(&env, JOBS, "kruise-manager", job_lists).await;
    env.images
        .wait_phase(&node, &second.reference, TagPhase::Succeeded, 0, DEADLINE)
        .await;
    env.wait_job("second", "its node succeeded", |s| {
        s.desired == 1 && s.succeeded == 1
    })
    .await;
    env.wait_withdrawn(&first.reference).await;

    // Pulled where a user looks: the runtime.
    let cri = kruise_cri::detect(Some(&env.lab.cri_endpoint()), std::path::Path::new("/none"))
        .await
        .expect("containerd")
        .client;
    for image in [&first, &second] {
        assert!(
            cri.image_status(&image.reference).await.unwrap().is_some(),
            "{} is in containerd",
            image.reference
        );
    }
}
