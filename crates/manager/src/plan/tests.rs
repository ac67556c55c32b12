//! The planner, tested like linkerd's index: build the watched state, assert the plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImagePullJob, NodeImage, ReferenceObject};
use serde_json::{json, Value};

use super::*;

fn t0() -> Timestamp {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + k8s_openapi::jiff::SignedDuration::from_secs(secs)
}

fn node(name: &str, labels: Value) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        uid: format!("uid-{name}"),
        labels: serde_json::from_value(labels).unwrap(),
        ready_since: Some("2026-11-26T09:00:00Z".parse().unwrap()),
    }
}

fn ni(name: &str, labels: Value) -> Arc<NodeImage> {
    Arc::new(serde_json::from_value(json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage", "metadata": {"name": name, "labels": labels, "resourceVersion": "1"}, "spec": {}})).unwrap())
}

fn job(name: &str, image: &str, spec: Value) -> Arc<ImagePullJob> {
    let mut s = json!({"image": image, "completionPolicy": {"type": "Always"}});
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    Arc::new(serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "creationTimestamp": "2026-11-26T09:30:00Z"},
        "spec": s,
    }))
    .unwrap())
}

/// `count` nodes n0.. with NodeImages.
fn cluster(count: usize) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..count {
        s.nodes.push(node(
            &format!("n{i}"),
            json!({"pool": if i % 2 == 0 { "a" } else { "b" }}),
        ));
        s.node_images.push(ni(
            &format!("n{i}"),
            json!({"pool": if i % 2 == 0 { "a" } else { "b" }}),
        ));
    }
    s
}

fn run(s: &Snapshot, now: Timestamp) -> Plan {
    plan(s, &Settings::default(), now)
}

/// Node names whose planned spec lists `key:tag`, and the owners' names.
fn tagged(p: &Plan, key: &str, tag: &str) -> BTreeMap<String, Vec<String>> {
    p.specs
        .iter()
        .filter_map(|(n, spec)| {
            let t = spec.images.get(key)?.tags.iter().find(|t| t.tag == tag)?;
            Some((
                n.clone(),
                t.owner_references
                    .iter()
                    .map(|r| r.name.clone().unwrap())
                    .collect(),
            ))
        })
        .collect()
}

/// Makes the cluster what the writers would: specs applied, statuses written.
fn apply(s: &mut Snapshot, p: &Plan) {
    for ni in &mut s.node_images {
        if let Some(spec) = p.specs.get(ni.metadata.name.as_deref().unwrap()) {
            Arc::make_mut(ni).spec = spec.clone();
        }
    }
    for j in &mut s.jobs {
        if let Some(st) = p.job_status.get(&job_key(j)) {
            Arc::make_mut(j).status = Some(st.clone());
        }
    }
}

/// The daemon on `node` reports `phase` for every tag in its spec.
fn report(s: &mut Snapshot, node: &str, phase: &str) {
    let ni = s
        .node_images
        .iter_mut()
        .find(|n| n.metadata.name.as_deref() == Some(node))
        .map(Arc::make_mut)
        .unwrap();
    let mut statuses = serde_json::Map::new();
    for (key, image) in &ni.spec.images {
        let tags: Vec<Value> = image.tags.iter().map(|t| json!({"tag": t.tag, "phase": phase, "version": t.version, "completionTime": "2026-11-26T10:00:00Z"})).collect();
        statuses.insert(key.clone(), json!({"tags": tags}));
    }
    ni.status = Some(serde_json::from_value(json!({"imageStatuses": statuses})).unwrap());
}

#[test]
fn node_images_follow_nodes() {
    let mut s = Snapshot::default();
    s.nodes.push(node("ready", json!({"a": "1"})));
    let mut young = node("young", json!({}));
    young.ready_since = Some(at(-10));
    s.nodes.push(young);
    let mut not_ready = node("notready", json!({}));
    not_ready.ready_since = None;
    s.nodes.push(not_ready);
    s.nodes.push(node("vk", json!({"type": "virtual-kubelet"})));
    s.nodes.push(node("relabelled", json!({"pool": "new"})));
    s.node_images.push(ni("relabelled", json!({"pool": "old"})));
    s.node_images.push(ni("orphan", json!({})));
    s.node_images
        .push(ni("fake", json!({"apps.kruise.io/fake-nodeimage": "true"})));
    let p = run(&s, t0());
    assert_eq!(
        p.node_images,
        BTreeMap::from([
            (
                "ready".to_string(),
                NodeImageChange::Create {
                    labels: BTreeMap::from([("a".into(), "1".into())]),
                    node_uid: "uid-ready".into()
                }
            ),
            (
                "relabelled".to_string(),
                NodeImageChange::Relabel {
                    labels: BTreeMap::from([("pool".into(), "new".into())])
                }
            ),
            ("orphan".to_string(), NodeImageChange::Delete),
        ])
    );
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(20)),
        "the young node gets its NodeImage 30 s after Ready"
    );
}

#[test]
fn parallelism_bounds_the_nodes_pulling_at_once() {
    let mut s = cluster(5);
    s.jobs
        .push(job("j", "nginx:1.25", json!({"parallelism": 2})));
    let p = run(&s, t0());
    assert_eq!(
        tagged(&p, "nginx", "1.25")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["n0", "n1"]
    );
    let st = &p.job_status["ns/j"];
    assert_eq!(
        (st.desired, st.active, st.succeeded, st.failed),
        (5, 2, 0, 0)
    );
    assert_eq!(st.start_time.as_ref().unwrap().0, t0());
    assert_eq!(
        p.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        ["PullJobStarted"]
    );

    // Nothing new until a node finishes, however often it is planned.
    apply(&mut s, &p);
    assert_eq!(tagged(&run(&s, at(5)), "nginx", "1.25").len(), 2);
    // n0 done: one slot frees, n2 gets the tag; failures free slots too.
    report(&mut s, "n0", "Succeeded");
    let p = run(&s, at(10));
    assert_eq!(
        tagged(&p, "nginx", "1.25")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        ["n0", "n1", "n2"]
    );
    assert_eq!(
        (p.job_status["ns/j"].active, p.job_status["ns/j"].succeeded),
        (2, 1)
    );
}

#[test]
fn parallelism_zero_pauses_and_strings_count() {
    let mut s = cluster(3);
    s.jobs
        .push(job("paused", "nginx", json!({"parallelism": 0})));
    s.jobs
        .push(job("str", "busybox", json!({"parallelism": "2"})));
    let p = run(&s, t0());
    assert!(tagged(&p, "nginx", "latest").is_empty());
    assert_eq!(tagged(&p, "busybox", "latest").len(), 2);
}

#[test]
fn jobs_created_together_share_nodes_and_writes() {
    let mut s = cluster(6);
    for i in 0..3 {
        s.jobs.push(job(
            &format!("j{i}"),
            &format!("img{i}:v1"),
            json!({"parallelism": 2}),
        ));
    }
    let p = run(&s, t0());
    // Every job picks n0 and n1 first, so those two NodeImages get all three tags in one write
    // each and the other four need none.
    let changed: Vec<&String> = p
        .specs
        .iter()
        .filter(|(_, spec)| !spec.images.is_empty())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(changed, ["n0", "n1"]);
    assert_eq!(p.specs["n0"].images.len(), 3);
}

#[test]
fn a_second_job_joins_a_tag_without_restarting_its_pull() {
    let mut s = cluster(1);
    s.jobs.push(job("first", "nginx:1", json!({})));
    let p = run(&s, t0());
    apply(&mut s, &p);
    s.jobs.push(job("second", "nginx:1", json!({})));
    let p = run(&s, at(5));
    let tag = &p.specs["n0"].images["nginx"].tags[0];
    assert_eq!(tag.version, 0, "no new round for the first job");
    assert_eq!(tag.created_at.as_ref().unwrap().0, t0(), "createdAt kept");
    assert_eq!(tagged(&p, "nginx", "1")["n0"], ["first", "second"]);

    // Once it succeeded, a later job with IfNotPresent counts the node as done at once; one with
    // Always gets a fresh round.
    apply(&mut s, &p);
    report(&mut s, "n0", "Succeeded");
    s.jobs.push(job("third", "nginx:1", json!({})));
    let p = run(&s, at(10));
    assert_eq!(p.specs["n0"].images["nginx"].tags[0].version, 0);
    assert_eq!(p.job_status["ns/third"].succeeded, 1);
    assert!(p.job_status["ns/third"].completion_time.is_some());
    s.jobs.push(job(
        "fourth",
        "nginx:1",
        json!({"imagePullPolicy": "Always"}),
    ));
    let p = run(&s, at(20));
    let tag = &p.specs["n0"].images["nginx"].tags[0];
    assert_eq!(
        (tag.version, tag.created_at.as_ref().unwrap().0),
        (1, at(20))
    );
    assert_eq!(p.job_status["ns/fourth"].active, 1);
}

#[test]
fn targets_by_names_labels_and_pods() {
    let mut s = cluster(4);
    s.jobs.push(job(
        "names",
        "a:1",
        json!({"parallelism": 10, "selector": {"names": ["n2", "n9"]}}),
    ));
    s.jobs.push(job(
        "labels",
        "b:1",
        json!({"parallelism": 10, "selector": {"matchLabels": {"pool": "a"}}}),
    ));
    s.jobs.push(job("exprs", "c:1", json!({"parallelism": 10, "selector": {"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["a"]}]}})));
    s.jobs.push(job(
        "pods",
        "d:1",
        json!({"parallelism": 10, "podSelector": {"matchLabels": {"app": "web"}}}),
    ));
    let pod = |node: &str, ns: &str, active: bool| PodInfo {
        namespace: ns.into(),
        labels: BTreeMap::from([("app".into(), "web".into())]),
        node_name: node.into(),
        active,
    };
    s.pods = vec![
        pod("n1", "ns", true),
        pod("n3", "ns", false),
        pod("n2", "other", true),
    ];
    let p = run(&s, t0());
    let nodes = |k: &str, t: &str| tagged(&p, k, t).keys().cloned().collect::<Vec<_>>();
    assert_eq!(nodes("a", "1"), ["n2"]);
    assert_eq!(nodes("b", "1"), ["n0", "n2"]);
    assert_eq!(nodes("c", "1"), ["n1", "n3"]);
    assert_eq!(
        nodes("d", "1"),
        ["n1"],
        "only active pods in the job's namespace count"
    );
    assert_eq!(
        p.job_status["ns/names"].desired, 1,
        "a named node without a NodeImage is not targeted"
    );
}

#[test]
fn editing_or_deleting_a_job_withdraws_its_tags() {
    let mut s = cluster(2);
    s.jobs
        .push(job("keep", "nginx:1", json!({"parallelism": 5})));
    s.jobs
        .push(job("edit", "nginx:1", json!({"parallelism": 5})));
    s.jobs
        .push(job("gone", "redis:7", json!({"parallelism": 5})));
    let p = run(&s, t0());
    apply(&mut s, &p);
    // Edit the image of one job, narrow its selector, and delete another.
    Arc::make_mut(&mut s.jobs[1]).spec.image = "nginx:2".into();
    Arc::make_mut(&mut s.jobs[1]).spec.template.selector =
        Some(serde_json::from_value(json!({"names": ["n1"]})).unwrap());
    s.jobs.remove(2);
    let p = run(&s, at(5));
    assert_eq!(tagged(&p, "nginx", "1")["n0"], ["keep"]);
    assert_eq!(tagged(&p, "nginx", "1")["n1"], ["keep"]);
    assert_eq!(
        tagged(&p, "nginx", "2").keys().cloned().collect::<Vec<_>>(),
        ["n1"]
    );
    assert!(
        tagged(&p, "redis", "7").is_empty(),
        "a deleted job's tags go, also after a manager restart"
    );
}

#[test]
fn an_always_job_completes_and_counts_failures() {
    let mut s = cluster(3);
    s.jobs.push(job("j", "nginx", json!({"parallelism": 3})));
    let p = run(&s, t0());
    apply(&mut s, &p);
    report(&mut s, "n0", "Succeeded");
    report(&mut s, "n1", "Failed");
    let p = run(&s, at(5));
    let st = &p.job_status["ns/j"];
    assert_eq!((st.succeeded, st.failed, st.active), (1, 1, 1));
    assert_eq!(st.failed_nodes, ["n1"]);
    assert_eq!(
        st.message.as_deref(),
        Some("job is running, progress 66.7%")
    );
    apply(&mut s, &p);
    report(&mut s, "n2", "Succeeded");
    let p = run(&s, at(6));
    let st = &p.job_status["ns/j"];
    assert_eq!(
        (
            st.succeeded,
            st.failed,
            st.active,
            st.completion_time.as_ref().map(|t| t.0)
        ),
        (2, 1, 0, Some(at(6)))
    );
    assert_eq!(st.message.as_deref(), Some("job has completed"));
    assert!(p.events.iter().any(|e| e.reason == "PullJobCompleted"));
}

#[test]
fn a_never_job_never_completes_and_covers_new_nodes() {
    let mut s = cluster(2);
    s.jobs.push(job(
        "base",
        "base:latest",
        json!({"parallelism": 10, "completionPolicy": {"type": "Never"}}),
    ));
    let p = run(&s, t0());
    apply(&mut s, &p);
    report(&mut s, "n0", "Succeeded");
    report(&mut s, "n1", "Succeeded");
    let p = run(&s, at(5));
    assert!(p.job_status["ns/base"].completion_time.is_none());
    assert_eq!(p.job_status["ns/base"].succeeded, 2);
    apply(&mut s, &p);
    s.nodes.push(node("n2", json!({})));
    s.node_images.push(ni("n2", json!({})));
    let p = run(&s, at(10));
    assert!(
        tagged(&p, "base", "latest").contains_key("n2"),
        "a new node gets the image"
    );
    assert_eq!(p.job_status["ns/base"].desired, 3);
}

#[test]
fn silent_daemons_and_deadlines_fail_nodes() {
    let mut s = cluster(2);
    s.jobs.push(job("j", "nginx", json!({"parallelism": 1, "completionPolicy": {"type": "Always", "activeDeadlineSeconds": 900}})));
    let p = run(&s, t0());
    apply(&mut s, &p);
    // No daemon answers n0 for the response window (10 min): it counts as failed and n1 is next.
    let p = run(&s, at(601));
    let st = &p.job_status["ns/j"];
    assert_eq!(
        (st.failed, st.failed_nodes.clone()),
        (1, vec!["n0".to_string()])
    );
    assert!(p
        .events
        .iter()
        .any(|e| e.reason == "NodeNotResponding" && e.note.contains("n0")));
    assert!(tagged(&p, "nginx", "latest").contains_key("n1"));
    // n0's tag is closed: its deadline is the response window, already past, so a daemon coming
    // back there fails it at once instead of pulling beyond parallelism 1 while n1 pulls.
    let closed = &p.specs["n0"].images["nginx"].tags[0];
    assert_eq!(
        closed
            .pull_policy
            .as_ref()
            .and_then(|p| p.active_deadline_seconds),
        Some(600)
    );
    apply(&mut s, &p);
    let p = run(&s, at(602));
    assert_eq!(
        p.specs["n0"], s.node_images[0].spec,
        "closed once, no rewrite"
    );
    assert!(!p.events.iter().any(|e| e.reason == "NodeNotResponding"));
    report(&mut s, "n0", "Failed");
    let p = run(&s, at(603));
    let st = &p.job_status["ns/j"];
    assert_eq!(
        (st.failed, st.active),
        (1, 1),
        "the late answer changes nothing"
    );
    apply(&mut s, &p);
    // The job's deadline: everything unfinished fails.
    let p = run(&s, at(901));
    let st = &p.job_status["ns/j"];
    assert_eq!((st.failed, st.active), (2, 0));
    assert_eq!(
        st.message.as_deref(),
        Some("job exceeds activeDeadlineSeconds")
    );
    assert!(st.completion_time.is_some());
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let mut s = cluster(1);
    s.jobs.push(job(
        "j",
        "nginx",
        json!({"completionPolicy": {"type": "Always", "ttlSecondsAfterFinished": 300}}),
    ));
    let p = run(&s, t0());
    apply(&mut s, &p);
    report(&mut s, "n0", "Succeeded");
    let p = run(&s, at(1));
    apply(&mut s, &p);
    let p = run(&s, at(100));
    assert!(p.delete_jobs.is_empty());
    assert_eq!(p.requeue_after, Some(Duration::from_secs(201)));
    let p = run(&s, at(301));
    assert_eq!(p.delete_jobs, [("ns".to_string(), "j".to_string())]);
}

#[test]
fn entries_are_lean_and_digests_keep_their_at() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut s = cluster(1);
    s.jobs.push(job(
        "d",
        &format!("registry.example.com/app:v1@{digest}"),
        json!({"pullPolicy": {"timeoutSeconds": 300, "backoffLimit": 3}}),
    ));
    let p = run(&s, t0());
    let spec = serde_json::to_value(&p.specs["n0"]).unwrap();
    let tag = &spec["images"]["registry.example.com/app"]["tags"][0];
    assert_eq!(tag["tag"], format!("v1@{digest}"));
    assert_eq!(
        tag["pullPolicy"],
        json!({"timeoutSeconds": 300}),
        "backoffLimit 3 is the default and omitted"
    );
    assert!(tag.get("version").is_none() && tag.get("imagePullPolicy").is_none());
}

#[test]
fn pull_secrets_are_referenced_while_an_owner_needs_them() {
    let mut s = cluster(1);
    s.jobs.push(job(
        "j",
        "private.example.com/app:1",
        json!({"pullSecrets": ["reg", "missing"]}),
    ));
    let synced = ReferenceObject {
        namespace: Some("kruise-daemon-config".into()),
        name: Some("reg-1a2b3c".into()),
        mode: Some("batch".into()),
    };
    s.synced_secrets.insert("ns/reg".into(), synced.clone());
    let p = run(&s, t0());
    assert_eq!(
        p.specs["n0"].images["private.example.com/app"].pull_secrets,
        [synced]
    );
    let msg = p.job_status["ns/j"].message.clone().unwrap();
    assert!(msg.contains("pull secret ns/missing not found"), "{msg}");
    assert!(p.events.iter().any(|e| e.reason == "PullSecretNotFound"));
    apply(&mut s, &p);
    s.jobs.clear();
    assert!(run(&s, at(1)).specs["n0"].images.is_empty());
}

#[test]
fn a_job_joining_a_failed_tag_gets_a_fresh_round() {
    let mut s = cluster(1);
    s.jobs.push(job("wrong-secret", "private:1", json!({})));
    let p = run(&s, t0());
    apply(&mut s, &p);
    report(&mut s, "n0", "Failed");
    s.jobs.push(job("right-secret", "private:1", json!({})));
    let p = run(&s, at(5));
    let tag = &p.specs["n0"].images["private"].tags[0];
    assert_eq!(
        tag.version, 1,
        "a new round instead of inheriting the failure"
    );
    assert_eq!(p.job_status["ns/right-secret"].active, 1);
}

#[test]
fn editing_the_pull_policy_reaches_written_tags() {
    let mut s = cluster(1);
    s.jobs.push(job(
        "j",
        "nginx:1",
        json!({"completionPolicy": {"type": "Never"}}),
    ));
    let p = run(&s, t0());
    apply(&mut s, &p);
    let edited: ImagePullJob = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "uid-j", "creationTimestamp": "2026-11-26T09:30:00Z"},
        "spec": {"image": "nginx:1", "completionPolicy": {"type": "Never"}, "pullPolicy": {"timeoutSeconds": 30}, "imagePullPolicy": "Always"},
    }))
    .unwrap();
    let status = s.jobs[0].status.clone();
    s.jobs[0] = Arc::new(ImagePullJob { status, ..edited });
    let p = run(&s, at(5));
    let tag = &p.specs["n0"].images["nginx"].tags[0];
    assert_eq!(
        tag.pull_policy.as_ref().and_then(|p| p.timeout_seconds),
        Some(30)
    );
    assert_eq!(
        (tag.image_pull_policy, tag.version),
        (Some(kruise_api::ImagePullPolicy::Always), 1)
    );
}

#[test]
fn a_deadline_with_no_node_ends_the_job_instead_of_replanning_every_second() {
    let mut s = cluster(1);
    s.jobs.push(job("j", "nginx", json!({"selector": {"names": ["none"]}, "completionPolicy": {"type": "Always", "activeDeadlineSeconds": 600}})));
    let p = run(&s, t0());
    apply(&mut s, &p);
    let p = run(&s, at(601));
    let st = &p.job_status["ns/j"];
    assert!(st.completion_time.is_some());
    assert_eq!(
        st.message.as_deref(),
        Some("job exceeds activeDeadlineSeconds")
    );
}

#[test]
fn a_full_node_image_fails_the_node_instead_of_refused_patches() {
    let mut s = cluster(2);
    for i in 0..kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE {
        s.jobs.push(job(
            &format!("j{i}"),
            &format!("img{i}:1"),
            json!({"selector": {"names": ["n0"]}}),
        ));
    }
    s.jobs
        .push(job("late", "late:1", json!({"parallelism": 2})));
    let p = run(&s, t0());
    assert_eq!(
        p.specs["n0"].images.len(),
        kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE,
        "never more than a NodeImage may hold"
    );
    assert!(!p.specs["n0"].images.contains_key("late"));
    assert_eq!(tagged(&p, "late", "1").keys().collect::<Vec<_>>(), ["n1"]);
    let st = &p.job_status["ns/late"];
    assert_eq!((st.desired, st.active, st.failed), (2, 1, 1));
    assert_eq!(st.failed_nodes, ["n0"]);
    assert!(p
        .events
        .iter()
        .any(|e| e.reason == "NodeImageFull" && e.note.contains("node n0")));
    apply(&mut s, &p);
    report(&mut s, "n1", "Succeeded");
    let p = run(&s, at(5));
    let st = &p.job_status["ns/late"];
    assert!(st.completion_time.is_some(), "the job completes: {st:?}");
    assert!(
        !p.events.iter().any(|e| e.reason == "NodeImageFull"),
        "said once"
    );
}
