//! OpenKruise's own end-to-end scenarios for ImagePullJob and ImageListPullJob
//! (`test/e2e/apps/v1beta1/pullimages.go` and `imagelistpulljobs.go`, numbered as in
//! `reference/openkruise-imagepull.md` §10), pointed at the lab's registries and containerd.
//! As there, a fake NodeImage that no daemon serves stands beside the real nodes; "real nodes"
//! are selected with `DoesNotExist` on its label. Waits are bounded by [`DEADLINE`], not by
//! OpenKruise's per-step timings, which are the upper bounds of a slow cluster.
//!
//! One deliberate difference: OpenKruise releases a job's synced pull secret when the job
//! completes (scenario 2). Here the copy lives until the last job naming it is deleted, because
//! the completed job's tag stays in the NodeImage and the daemon's periodic presence check may
//! have to pull the image again with it.

use e2e::system::FAKE_NODE_IMAGE_LABEL;
use e2e::{manifest, System, DEADLINE};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{json, Value};

fn real_nodes() -> Value {
    json!({"matchExpressions": [{"key": FAKE_NODE_IMAGE_LABEL, "operator": "DoesNotExist"}]})
}

/// Two real nodes and the fake NodeImage, as OpenKruise's setup makes them.
async fn two_real_nodes_and_a_fake() -> (System, Vec<String>, String) {
    let mut env = System::start().await;
    let nodes = vec![
        env.add_node("real0", json!({})).await,
        env.add_node("real1", json!({})).await,
    ];
    let fake = env.fake_node_image().await;
    (env, nodes, fake)
}

/// The synced copy of `secret`: exactly one, naming `job` among its references, with the
/// source's data.
async fn assert_synced(env: &System, secret: &str, job: &str) {
    let source = env.secrets().get(secret).await.unwrap();
    let copies = e2e::wait_for("the pull secret's synced copy", DEADLINE, || async {
        let copies = env.synced_copies(secret).await;
        (!copies.is_empty()).then_some(copies)
    })
    .await;
    assert_eq!(copies.len(), 1, "one copy per source secret");
    use kube::ResourceExt;
    let refs = copies[0].annotations()["imagepulljobs.kruise.io/references"].clone();
    assert!(
        refs.split(',').any(|r| r == format!("{}/{job}", env.ns)),
        "{refs}"
    );
    assert_eq!(copies[0].data, source.data);
}

async fn wait_no_synced_copy(env: &System, secret: &str) {
    e2e::wait_for("the synced copy to be deleted", DEADLINE, || async {
        env.synced_copies(secret).await.is_empty().then_some(())
    })
    .await;
}

fn always_with_secret(secret: &str, ttl: Option<i64>) -> Value {
    let mut policy = json!({"type": "Always", "activeDeadlineSeconds": 50});
    if let Some(ttl) = ttl {
        policy["ttlSecondsAfterFinished"] = json!(ttl);
    }
    json!({
        "selector": real_nodes(), "parallelism": 4, "pullSecrets": [secret],
        "pullPolicy": {"timeoutSeconds": 50, "backoffLimit": 2}, "completionPolicy": policy,
    })
}

/// Scenario 1: an Always job with a dockerconfigjson secret and a TTL.
#[tokio::test]
async fn s01_pull_with_secret_then_cleaned_by_ttl() {
    let (env, nodes, _) = two_real_nodes_and_a_fake().await;
    let img = env.push_private("lab/s01", 101);
    env.registry_secret("reg", false).await;
    env.apply_job(manifest(
        "v1beta1",
        "s01",
        &img.reference,
        always_with_secret("reg", Some(5)),
    ))
    .await;
    env.wait_job("s01", "desired = the real nodes", |s| s.desired == 2)
        .await;
    assert_synced(&env, "reg", "s01").await;
    let st = env
        .wait_job("s01", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.succeeded, st.failed), (nodes.len() as i32, 0), "{st:?}");
    env.wait_job_gone("s01", "deleted by its TTL").await;
    env.wait_withdrawn(&img.reference).await;
    wait_no_synced_copy(&env, "reg").await;
}

/// Scenario 2: the same without a TTL: the job stays, and so does its image in the NodeImages.
#[tokio::test]
async fn s02_pull_with_secret_completed_without_ttl() {
    let (env, nodes, _) = two_real_nodes_and_a_fake().await;
    let img = env.push_private("lab/s02", 102);
    env.registry_secret("reg", false).await;
    env.apply_job(manifest(
        "v1beta1",
        "s02",
        &img.reference,
        always_with_secret("reg", None),
    ))
    .await;
    assert_synced(&env, "reg", "s02").await;
    let st = env
        .wait_job("s02", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!(st.succeeded, 2, "{st:?}");
    // Make the manager plan again after completion (a label to mirror), then look: a finished
    // job without a TTL keeps its image on its nodes.
    let nodes_api: kube::Api<k8s_openapi::api::core::v1::Node> =
        kube::Api::all(env.cluster.client.clone());
    nodes_api
        .patch(
            &nodes[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"replanned": "yes"}}})),
        )
        .await
        .unwrap();
    e2e::wait_for("the label to be mirrored", DEADLINE, || async {
        let ni = env.images.api.get(&nodes[0]).await.ok()?;
        (ni.metadata.labels?.get("replanned")? == "yes").then_some(())
    })
    .await;
    assert_eq!(env.nodes_with(&img.reference).await, nodes);
    assert_synced(&env, "reg", "s02").await;
    env.jobs()
        .delete("s02", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_withdrawn(&img.reference).await;
    wait_no_synced_copy(&env, "reg").await;
}

/// Scenario 3: a Never job whose source secret is updated: the copy follows.
#[tokio::test]
async fn s03_never_job_follows_an_updated_secret() {
    let (env, nodes, _) = two_real_nodes_and_a_fake().await;
    let img = env.push_private("lab/s03", 103);
    env.registry_secret("reg", false).await;
    env.apply_job(manifest(
        "v1beta1",
        "s03",
        &img.reference,
        json!({"selector": real_nodes(), "parallelism": 4, "pullSecrets": ["reg"], "completionPolicy": {"type": "Never"}}),
    ))
    .await;
    assert_synced(&env, "reg", "s03").await;
    env.secrets()
        .patch(
            "reg",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"rotated": "1"}}, "data": {"extra": "MQ=="}}),
            ),
        )
        .await
        .unwrap();
    e2e::wait_for("the copy to carry the new data", DEADLINE, || async {
        let copy = env.synced_copies("reg").await.pop()?;
        copy.data?.contains_key("extra").then_some(())
    })
    .await;
    let st = env
        .wait_job("s03", "every real node succeeded", |s| s.succeeded == 2)
        .await;
    assert_eq!(st.desired, nodes.len() as i32);
    assert!(st.completion_time.is_none(), "a Never job never completes");
    env.jobs()
        .delete("s03", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_withdrawn(&img.reference).await;
    wait_no_synced_copy(&env, "reg").await;
}

/// Scenario 4: an Always job over the real nodes with a legacy `kubernetes.io/dockercfg` secret.
#[tokio::test]
async fn s04_dockercfg_secret() {
    let (env, _, _) = two_real_nodes_and_a_fake().await;
    let img = env.push_private("lab/s04", 104);
    env.registry_secret("legacy", true).await;
    env.apply_job(manifest(
        "v1beta1",
        "s04",
        &img.reference,
        always_with_secret("legacy", Some(5)),
    ))
    .await;
    let st = env
        .wait_job("s04", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.desired, st.succeeded), (2, 2), "{st:?}");
    env.wait_job_gone("s04", "deleted by its TTL").await;
    env.wait_withdrawn(&img.reference).await;
}

/// Scenario 5: one node by `selector.names`.
#[tokio::test]
async fn s05_one_node_by_name() {
    let (env, nodes, _) = two_real_nodes_and_a_fake().await;
    let img = env.push("lab/s05", 105);
    env.apply_job(manifest(
        "v1beta1",
        "s05",
        &img.reference,
        json!({"selector": {"names": [nodes[1]]}, "completionPolicy": {"type": "Always"}}),
    ))
    .await;
    let st = env
        .wait_job("s05", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.desired, st.succeeded), (1, 1));
    assert_eq!(env.nodes_with(&img.reference).await, [nodes[1].clone()]);
    env.jobs()
        .delete("s05", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_withdrawn(&img.reference).await;
}

/// Scenario 6: a Never job with no selector counts the fake NodeImage as desired and never
/// completes, while the real nodes succeed.
#[tokio::test]
async fn s06_never_job_over_all_nodes_counts_the_fake_one() {
    let (env, nodes, fake) = two_real_nodes_and_a_fake().await;
    let img = env.push("lab/s06", 106);
    env.apply_job(manifest(
        "v1beta1",
        "s06",
        &img.reference,
        json!({"parallelism": 5, "completionPolicy": {"type": "Never"}}),
    ))
    .await;
    let st = env
        .wait_job("s06", "the real nodes succeeded", |s| {
            s.desired == 3 && s.succeeded == 2
        })
        .await;
    assert!(st.completion_time.is_none());
    let mut all = nodes.clone();
    all.push(fake.clone());
    all.sort();
    assert_eq!(env.nodes_with(&img.reference).await, all);
    assert!(
        env.images.api.get_opt(&fake).await.unwrap().is_some(),
        "the manager keeps a fake NodeImage without a Node"
    );
}

/// Scenario 7: two Never jobs for the same image on the same node share one tag; the second
/// joins without a new pull round, and deleting one keeps the tag for the other.
#[tokio::test]
async fn s07_two_never_jobs_share_a_tag() {
    let (env, nodes, _) = two_real_nodes_and_a_fake().await;
    let img = env.push("lab/s07", 107);
    let spec = json!({"selector": {"names": [nodes[0]]}, "completionPolicy": {"type": "Never"}});
    env.apply_job(manifest("v1beta1", "job1", &img.reference, spec.clone()))
        .await;
    env.wait_job("job1", "succeeded", |s| s.succeeded == 1)
        .await;
    env.apply_job(manifest("v1beta1", "job2", &img.reference, spec))
        .await;
    env.wait_job("job2", "succeeded", |s| s.succeeded == 1)
        .await;
    let tag = env
        .images
        .tag_spec(&nodes[0], &img.reference)
        .await
        .unwrap();
    let owners: Vec<_> = tag
        .owner_references
        .iter()
        .filter_map(|o| o.name.clone())
        .collect();
    assert_eq!(owners, ["job1", "job2"]);
    assert_eq!(tag.version, 0, "job2 joined without a new pull round");

    env.jobs()
        .delete("job1", &DeleteParams::default())
        .await
        .unwrap();
    e2e::wait_for("job1 to leave the tag's owners", DEADLINE, || async {
        let tag = env.images.tag_spec(&nodes[0], &img.reference).await?;
        let owners: Vec<_> = tag
            .owner_references
            .iter()
            .filter_map(|o| o.name.clone())
            .collect();
        (owners == ["job2"]).then_some(())
    })
    .await;
    env.jobs()
        .delete("job2", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_withdrawn(&img.reference).await;
}

/// Scenario 8: an Always list job of two images over the real nodes, with a TTL: two children,
/// completion, then the list job and its children go. Its deadline of 50 s is below the default
/// pull timeout (600 s): OpenKruise accepts such a list job and then stalls, its children refused
/// by their webhook (§9 item 19); here the list job itself is refused, naming the field.
#[tokio::test]
async fn s08_list_job_of_two_images_cleaned_by_ttl() {
    let (env, _, _) = two_real_nodes_and_a_fake().await;
    let a = env.push("lab/s08-a", 108);
    let b = env.push("lab/s08-b", 118);
    let mut spec = json!({"selector": real_nodes(), "imagePullPolicy": "Always", "parallelism": 4,
        "completionPolicy": {"type": "Always", "activeDeadlineSeconds": 50, "ttlSecondsAfterFinished": 5}});
    let refused = env
        .try_apply_list("s08", &[&a.reference, &b.reference], spec.clone())
        .await
        .expect_err("a deadline below the pull timeout is refused");
    assert!(
        refused.contains("spec.completionPolicy.activeDeadlineSeconds")
            && refused.contains("timeoutSeconds"),
        "{refused}"
    );
    spec["pullPolicy"] = json!({"timeoutSeconds": 50});
    env.apply_list("s08", &[&a.reference, &b.reference], spec)
        .await;
    e2e::wait_for("two child jobs", DEADLINE, || async {
        (env.jobs().list(&Default::default()).await.ok()?.items.len() == 2).then_some(())
    })
    .await;
    let st = env
        .wait_list("s08", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.desired, st.completed, st.succeeded), (2, 2, 2));
    e2e::wait_for(
        "the list job and its children to go after its TTL",
        DEADLINE,
        || async {
            let gone = env.lists().get_opt("s08").await.ok()?.is_none();
            let children = env.jobs().list(&Default::default()).await.ok()?.items.len();
            (gone && children == 0).then_some(())
        },
    )
    .await;
}

/// Scenario 9: an Always list job of two images on one node (IfNotPresent); deleting the list
/// job takes its children with it.
#[tokio::test]
async fn s09_list_job_on_one_node_takes_its_children_when_deleted() {
    let (env, nodes, _) = two_real_nodes_and_a_fake().await;
    let a = env.push("lab/s09-a", 109);
    let b = env.push("lab/s09-b", 119);
    env.apply_list(
        "s09",
        &[&a.reference, &b.reference],
        json!({"selector": {"names": [nodes[0]]}, "imagePullPolicy": "IfNotPresent",
               "completionPolicy": {"type": "Always"}}),
    )
    .await;
    let st = env
        .wait_list("s09", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.desired, st.succeeded), (2, 2));
    env.lists()
        .delete("s09", &DeleteParams::default())
        .await
        .unwrap();
    e2e::wait_for("the children to be collected", DEADLINE, || async {
        env.jobs()
            .list(&Default::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    env.wait_withdrawn(&a.reference).await;
    env.wait_withdrawn(&b.reference).await;
}

/// Scenario 10: an Always list job over all nodes; the fake node's pull is failed by hand; the
/// list job completes with one failed image status naming that node.
#[tokio::test]
async fn s10_list_job_completes_with_a_failed_node() {
    let (env, _, fake) = two_real_nodes_and_a_fake().await;
    let img = env.push("lab/s10", 110);
    env.apply_list(
        "s10",
        &[&img.reference],
        json!({"parallelism": 5, "completionPolicy": {"type": "Always"}}),
    )
    .await;
    env.fail_on(&fake, &img.reference).await;
    let st = env
        .wait_list("s10", "completed", |s| s.completion_time.is_some())
        .await;
    assert_eq!((st.desired, st.completed, st.succeeded), (1, 1, 0));
    assert_eq!(st.failed_image_statuses.len(), 1);
    let failed = &st.failed_image_statuses[0];
    assert_eq!(failed.name.as_deref(), Some(img.reference.as_str()));
    assert!(failed.message.as_deref().unwrap().contains(&fake));
}

/// Scenario 11: the same as a Never list job: the child completes (every node done) with one
/// failure, and the list job counts it completed without finishing itself.
#[tokio::test]
async fn s11_never_list_job_counts_a_completed_child_with_a_failure() {
    let (env, _, fake) = two_real_nodes_and_a_fake().await;
    let img = env.push("lab/s11", 111);
    env.apply_list(
        "s11",
        &[&img.reference],
        json!({"parallelism": 5, "completionPolicy": {"type": "Never"}}),
    )
    .await;
    env.fail_on(&fake, &img.reference).await;
    let st = env
        .wait_list("s11", "the child completed with one failure", |s| {
            s.completed == 1 && s.failed_image_statuses.len() == 1
        })
        .await;
    assert!(
        st.completion_time.is_none(),
        "a Never list job never completes"
    );
    assert_eq!((st.desired, st.succeeded), (1, 0));
}
