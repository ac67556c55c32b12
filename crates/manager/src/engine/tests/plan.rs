//! What the planner decides, case by case (OpenKruise's rules, without its races).

use serde_json::json;

use super::*;

#[test]
fn node_images_follow_nodes() {
    let mut s = Sim::new(settings());
    s.node("ready", json!({"a": "1"}));
    s.run();
    assert_eq!(s.images["ready"]["metadata"]["labels"], json!({"a": "1"}));
    assert_eq!(
        s.images["ready"]["metadata"]["ownerReferences"][0]["uid"],
        "uid-ready"
    );
    // A node Ready for 10 s gets its NodeImage 20 s later; one not Ready gets none.
    let young = json!({"metadata": {"name": "young", "uid": "uid-young", "resourceVersion": "1"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": at(-10).to_string()}]}});
    s.engine.input(
        Input::Node(Event::Apply(serde_json::from_value(young).unwrap())),
        s.now,
    );
    let not_ready = json!({"metadata": {"name": "down", "uid": "uid-down", "resourceVersion": "1"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    s.engine.input(
        Input::Node(Event::Apply(serde_json::from_value(not_ready).unwrap())),
        s.now,
    );
    s.node("vk", json!({"type": "virtual-kubelet"}));
    s.run();
    assert!(
        !s.images.contains_key("young")
            && !s.images.contains_key("down")
            && !s.images.contains_key("vk")
    );
    assert_eq!(
        s.engine.next_timer(),
        Some(stored(21)),
        "20 s after, at the next whole second"
    );
    s.at(21);
    s.run();
    assert!(s.images.contains_key("young"));
    // Labels follow the Node; NodeImages without a Node go, fake ones stay.
    s.node("ready", json!({"a": "2"}));
    s.node_image("orphan", json!({}), json!({}));
    s.node_image(
        "fake",
        json!({"apps.kruise.io/fake-nodeimage": "true"}),
        json!({}),
    );
    s.run();
    assert_eq!(s.images["ready"]["metadata"]["labels"], json!({"a": "2"}));
    assert!(!s.images.contains_key("orphan"));
    assert!(s.images.contains_key("fake"));
    s.remove_node("ready");
    s.run();
    assert!(!s.images.contains_key("ready"));
}

#[test]
fn parallelism_bounds_the_nodes_pulling_at_once() {
    let mut s = Sim::cluster(5);
    s.job("j", "nginx:1.25", json!({"parallelism": 2}));
    s.run();
    assert_eq!(s.nodes_with("nginx", "1.25"), ["n0", "n1"]);
    let st = s.status("j");
    assert_eq!(
        (st.desired, st.active, st.succeeded, st.failed),
        (5, 2, 0, 0)
    );
    assert_eq!(st.start_time.as_ref().unwrap().0, stored(0));
    assert_eq!(
        s.take_events().iter().map(|e| e.reason).collect::<Vec<_>>(),
        ["PullJobStarted"]
    );
    // Nothing new until a node finishes, however often it is planned.
    s.at(5);
    s.engine.mark_all(s.now);
    s.run();
    assert_eq!(s.nodes_with("nginx", "1.25").len(), 2);
    // n0 done: one slot frees, n2 gets the tag.
    s.at(10);
    s.report("n0", "Succeeded");
    s.run();
    assert_eq!(s.nodes_with("nginx", "1.25"), ["n0", "n1", "n2"]);
    let st = s.status("j");
    assert_eq!((st.active, st.succeeded), (2, 1));
}

#[test]
fn parallelism_zero_pauses_and_strings_count() {
    let mut s = Sim::cluster(3);
    s.job("paused", "nginx", json!({"parallelism": 0}));
    s.job("str", "busybox", json!({"parallelism": "2"}));
    s.run();
    assert!(s.nodes_with("nginx", "latest").is_empty());
    assert_eq!(s.nodes_with("busybox", "latest").len(), 2);
}

#[test]
fn jobs_created_together_share_nodes_and_writes() {
    let mut s = Sim::cluster(6);
    let before = s.writes["nodeimage"];
    for i in 0..3 {
        s.job(
            &format!("j{i}"),
            &format!("img{i}:v1"),
            json!({"parallelism": 2}),
        );
    }
    s.run();
    // Every job picks n0 and n1 first: those two NodeImages get all three tags, one write each.
    assert_eq!(s.writes["nodeimage"] - before, 2);
    assert_eq!(s.spec("n0").images.len(), 3);
    assert!(s.spec("n2").images.is_empty());
}

#[test]
fn a_second_job_joins_a_tag_without_restarting_its_pull() {
    let mut s = Sim::cluster(1);
    s.job("first", "nginx:1", json!({}));
    s.run();
    s.at(5);
    s.job("second", "nginx:1", json!({}));
    s.run();
    let tag = &s.spec("n0").images["nginx"].tags[0];
    assert_eq!(tag.version, 0, "no new round for the first job");
    assert_eq!(
        tag.created_at.as_ref().unwrap().0,
        stored(0),
        "createdAt kept"
    );
    assert_eq!(s.tagged("nginx", "1")["n0"], ["first", "second"]);

    // Once it succeeded, a later job with IfNotPresent counts the node as done at once; one with
    // Always gets a fresh round.
    s.report("n0", "Succeeded");
    s.at(10);
    s.job("third", "nginx:1", json!({}));
    s.run();
    assert_eq!(s.spec("n0").images["nginx"].tags[0].version, 0);
    assert_eq!(s.status("third").succeeded, 1);
    assert!(s.status("third").completion_time.is_some());
    s.at(20);
    s.job("fourth", "nginx:1", json!({"imagePullPolicy": "Always"}));
    s.run();
    let tag = &s.spec("n0").images["nginx"].tags[0];
    assert_eq!(
        (tag.version, tag.created_at.as_ref().unwrap().0),
        (1, stored(20))
    );
    assert_eq!(s.status("fourth").active, 1);
}

#[test]
fn targets_by_names_labels_and_pods() {
    let mut s = Sim::cluster(4);
    s.job(
        "names",
        "a:1",
        json!({"parallelism": 10, "selector": {"names": ["n2", "n9"]}}),
    );
    s.job(
        "labels",
        "b:1",
        json!({"parallelism": 10, "selector": {"matchLabels": {"pool": "a"}}}),
    );
    s.job("exprs", "c:1", json!({"parallelism": 10, "selector": {"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["a"]}]}}));
    s.job(
        "pods",
        "d:1",
        json!({"parallelism": 10, "podSelector": {"matchLabels": {"app": "web"}}}),
    );
    let pod = |name: &str, node: &str, ns: &str, phase: &str| {
        serde_json::from_value::<crate::lean::LeanPod>(json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
            "spec": {"nodeName": node}, "status": {"phase": phase},
        }))
        .unwrap()
    };
    for p in [
        pod("a", "n1", "ns", "Running"),
        pod("b", "n3", "ns", "Succeeded"),
        pod("c", "n2", "other", "Running"),
    ] {
        s.engine.input(Input::Pod(Event::Apply(p)), s.now);
    }
    s.run();
    assert_eq!(s.nodes_with("a", "1"), ["n2"]);
    assert_eq!(s.nodes_with("b", "1"), ["n0", "n2"]);
    assert_eq!(s.nodes_with("c", "1"), ["n1", "n3"]);
    assert_eq!(
        s.nodes_with("d", "1"),
        ["n1"],
        "only active pods in the job's namespace count"
    );
    assert_eq!(
        s.status("names").desired,
        1,
        "a named node without a NodeImage is not targeted"
    );
    // The pod moves: the job follows it, and leaves the node it left.
    s.engine.input(
        Input::Pod(Event::Apply(pod("a", "n3", "ns", "Running"))),
        s.now,
    );
    s.run();
    assert_eq!(s.nodes_with("d", "1"), ["n3"]);
}

/// A podSelector job created after its pods (a rollout's pre-download job) counts them.
#[test]
fn a_pod_selector_job_counts_the_pods_that_were_there_first() {
    let mut s = Sim::cluster(4);
    for (name, node) in [("a", "n1"), ("b", "n2")] {
        let p: crate::lean::LeanPod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": node}, "status": {"phase": "Running"},
        }))
        .unwrap();
        s.engine.input(Input::Pod(Event::Apply(p)), s.now);
    }
    s.run();
    s.job(
        "late",
        "d:1",
        json!({"parallelism": 10, "podSelector": {"matchLabels": {"app": "web"}}}),
    );
    s.run();
    assert_eq!(s.nodes_with("d", "1"), ["n1", "n2"]);
    assert_eq!(s.status("late").desired, 2);
}

#[test]
fn editing_or_deleting_a_job_withdraws_its_tags() {
    let mut s = Sim::cluster(2);
    s.job("keep", "nginx:1", json!({"parallelism": 5}));
    s.job("edit", "nginx:1", json!({"parallelism": 5}));
    s.job("gone", "redis:7", json!({"parallelism": 5}));
    s.run();
    s.at(5);
    s.edit_job(
        "edit",
        json!({"image": "nginx:2", "selector": {"names": ["n1"]}}),
    );
    s.delete_job("gone");
    s.run();
    assert_eq!(s.tagged("nginx", "1")["n0"], ["keep"]);
    assert_eq!(s.tagged("nginx", "1")["n1"], ["keep"]);
    assert_eq!(s.nodes_with("nginx", "2"), ["n1"]);
    assert!(s.nodes_with("redis", "7").is_empty());
}

#[test]
fn tags_of_jobs_deleted_while_no_manager_ran_are_withdrawn() {
    let mut s = Sim::cluster(1);
    s.job("gone", "redis:7", json!({}));
    s.run();
    s.jobs.clear();
    // A new manager lists the cluster: the job is not there, its tag goes.
    s.engine = s.fresh_engine(settings());
    s.run();
    assert!(s.nodes_with("redis", "7").is_empty());
}

#[test]
fn an_always_job_completes_and_counts_failures() {
    let mut s = Sim::cluster(3);
    s.job("j", "nginx", json!({"parallelism": 3}));
    s.run();
    s.at(5);
    s.report("n0", "Succeeded");
    s.report("n1", "Failed");
    s.run();
    let st = s.status("j");
    assert_eq!((st.succeeded, st.failed, st.active), (1, 1, 1));
    assert_eq!(st.failed_nodes, ["n1"]);
    assert_eq!(
        st.message.as_deref(),
        Some("job is running, progress 66.7%")
    );
    s.at(6);
    s.report("n2", "Succeeded");
    s.run();
    let st = s.status("j");
    assert_eq!(
        (
            st.succeeded,
            st.failed,
            st.active,
            st.completion_time.as_ref().map(|t| t.0)
        ),
        (2, 1, 0, Some(stored(6)))
    );
    assert_eq!(st.message.as_deref(), Some("job has completed"));
    assert!(s
        .take_events()
        .iter()
        .any(|e| e.reason == "PullJobCompleted"));
}

#[test]
fn a_never_job_never_completes_and_covers_new_nodes() {
    let mut s = Sim::cluster(2);
    s.job(
        "base",
        "base:latest",
        json!({"parallelism": 10, "completionPolicy": {"type": "Never"}}),
    );
    s.run();
    s.at(5);
    s.report("n0", "Succeeded");
    s.report("n1", "Succeeded");
    s.run();
    assert!(s.status("base").completion_time.is_none());
    assert_eq!(s.status("base").succeeded, 2);
    s.at(10);
    s.node("n2", json!({}));
    s.run();
    assert!(
        s.tagged("base", "latest").contains_key("n2"),
        "a new node gets the image"
    );
    assert_eq!(s.status("base").desired, 3);
}

#[test]
fn silent_daemons_and_deadlines_fail_nodes() {
    let mut s = Sim::cluster(2);
    s.job("j", "nginx", json!({"parallelism": 1, "completionPolicy": {"type": "Always", "activeDeadlineSeconds": 900}}));
    s.run();
    // No daemon answers n0 for the response window (10 min): it counts as failed and n1 is next.
    assert_eq!(s.engine.next_timer(), Some(stored(600)));
    s.at(601);
    s.run();
    let st = s.status("j");
    assert_eq!(
        (st.failed, st.failed_nodes.clone()),
        (1, vec!["n0".to_string()])
    );
    assert!(s
        .take_events()
        .iter()
        .any(|e| e.reason == "NodeNotResponding" && e.note.contains("n0")));
    assert!(s.tagged("nginx", "latest").contains_key("n1"));
    // n0's tag is closed: its deadline is the response window, already past, so a daemon coming
    // back there fails it at once instead of pulling beyond parallelism 1 while n1 pulls.
    let closed = &s.spec("n0").images["nginx"].tags[0];
    assert_eq!(
        closed
            .pull_policy
            .as_ref()
            .and_then(|p| p.active_deadline_seconds),
        Some(600)
    );
    let writes = s.writes["nodeimage"];
    s.at(602);
    s.engine.mark_all(s.now);
    s.run();
    assert_eq!(s.writes["nodeimage"], writes, "closed once, no rewrite");
    assert!(!s
        .take_events()
        .iter()
        .any(|e| e.reason == "NodeNotResponding"));
    s.at(603);
    s.report("n0", "Failed");
    s.run();
    let st = s.status("j");
    assert_eq!(
        (st.failed, st.active),
        (1, 1),
        "the late answer changes nothing"
    );
    // The job's deadline: everything unfinished fails.
    s.at(901);
    s.run();
    let st = s.status("j");
    assert_eq!((st.failed, st.active), (2, 0));
    assert_eq!(
        st.message.as_deref(),
        Some("job exceeds activeDeadlineSeconds")
    );
    assert!(st.completion_time.is_some());
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let mut s = Sim::cluster(1);
    s.job(
        "j",
        "nginx",
        json!({"completionPolicy": {"type": "Always", "ttlSecondsAfterFinished": 300}}),
    );
    s.run();
    s.at(1);
    s.report("n0", "Succeeded");
    s.run();
    assert!(s.status("j").completion_time.is_some());
    s.at(100);
    s.run();
    assert!(s.jobs.contains_key("ns/j"));
    assert_eq!(s.engine.next_timer(), Some(stored(301)));
    s.at(301);
    s.run();
    assert!(!s.jobs.contains_key("ns/j"), "deleted after its TTL");
}

#[test]
fn entries_are_lean_and_digests_keep_their_at() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut s = Sim::cluster(1);
    s.job(
        "d",
        &format!("registry.example.com/app:v1@{digest}"),
        json!({"pullPolicy": {"timeoutSeconds": 300, "backoffLimit": 3}}),
    );
    s.run();
    let tag = &s.images["n0"]["spec"]["images"]["registry.example.com/app"]["tags"][0];
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
    let mut s = Sim::cluster(1);
    let source: Secret = serde_json::from_value(json!({
        "metadata": {"name": "reg", "namespace": "ns"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "e30="},
    }))
    .unwrap();
    s.source(source);
    s.job(
        "j",
        "private.example.com/app:1",
        json!({"pullSecrets": ["reg", "missing"]}),
    );
    s.run();
    let copy = crate::secrets::synced_name("ns/reg");
    let refs = &s.spec("n0").images["private.example.com/app"].pull_secrets;
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name.as_deref(), Some(copy.as_str()));
    assert!(s.copies.contains_key(&copy), "the copy is made");
    let msg = s.status("j").message.unwrap();
    assert!(msg.contains("pull secret ns/missing not found"), "{msg}");
    assert!(s
        .take_events()
        .iter()
        .any(|e| e.reason == "PullSecretNotFound"));
    s.delete_job("j");
    s.run();
    assert!(s.spec("n0").images.is_empty());
}

#[test]
fn a_job_joining_a_failed_tag_gets_a_fresh_round() {
    let mut s = Sim::cluster(1);
    s.job("wrong-secret", "private:1", json!({}));
    s.run();
    s.report("n0", "Failed");
    s.at(5);
    s.job("right-secret", "private:1", json!({}));
    s.run();
    let tag = &s.spec("n0").images["private"].tags[0];
    assert_eq!(
        tag.version, 1,
        "a new round instead of inheriting the failure"
    );
    assert_eq!(s.status("right-secret").active, 1);
}

#[test]
fn editing_the_pull_policy_reaches_written_tags() {
    let mut s = Sim::cluster(1);
    s.job(
        "j",
        "nginx:1",
        json!({"completionPolicy": {"type": "Never"}}),
    );
    s.run();
    s.at(5);
    s.edit_job(
        "j",
        json!({"pullPolicy": {"timeoutSeconds": 30}, "imagePullPolicy": "Always"}),
    );
    s.run();
    let tag = &s.spec("n0").images["nginx"].tags[0];
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
fn a_deadline_with_no_node_ends_the_job() {
    let mut s = Sim::cluster(1);
    s.job("j", "nginx", json!({"selector": {"names": ["none"]}, "completionPolicy": {"type": "Always", "activeDeadlineSeconds": 600}}));
    s.run();
    assert_eq!(
        s.status("j").message.as_deref(),
        Some("job is running, no node matches it yet")
    );
    s.at(601);
    s.run();
    let st = s.status("j");
    assert!(st.completion_time.is_some());
    assert_eq!(
        st.message.as_deref(),
        Some("job exceeds activeDeadlineSeconds")
    );
}

#[test]
fn a_full_node_image_fails_the_node_instead_of_refused_patches() {
    let mut s = Sim::cluster(2);
    for i in 0..kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE {
        s.job(
            &format!("j{i:03}"),
            &format!("img{i}:1"),
            json!({"selector": {"names": ["n0"]}}),
        );
    }
    s.run();
    s.at(1);
    s.job("zlate", "late:1", json!({"parallelism": 2}));
    s.run();
    assert_eq!(
        s.spec("n0").images.len(),
        kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE
    );
    assert!(!s.spec("n0").images.contains_key("late"));
    assert_eq!(s.nodes_with("late", "1"), ["n1"]);
    let st = s.status("zlate");
    assert_eq!((st.desired, st.active, st.failed), (2, 1, 1));
    assert_eq!(st.failed_nodes, ["n0"]);
    assert!(s
        .take_events()
        .iter()
        .any(|e| e.reason == "NodeImageFull" && e.note.contains("node n0")));
    s.at(5);
    s.report("n1", "Succeeded");
    s.run();
    assert!(s.status("zlate").completion_time.is_some());
    assert!(
        !s.take_events().iter().any(|e| e.reason == "NodeImageFull"),
        "said once"
    );
}

#[test]
fn heartbeats_and_progress_reports_cost_no_round() {
    let mut s = Sim::cluster(3);
    s.job(
        "j",
        "nginx",
        json!({"parallelism": 3, "completionPolicy": {"type": "Never"}}),
    );
    s.run();
    s.report("n0", "Pulling");
    s.run();
    assert!(!s.engine.has_work());
    // The kubelet's heartbeat: the same labels and Ready, a new resourceVersion.
    s.node("n1", json!({"pool": "b"}));
    assert!(
        !s.engine.has_work(),
        "a heartbeat changes nothing the decisions read"
    );
    // The daemon's progress: the same phase, another percentage.
    let rv = "9999";
    let ni = s.images.get_mut("n0").unwrap();
    ni["status"]["imageStatuses"]["nginx"]["tags"][0]["progress"] = json!(40);
    ni["metadata"]["resourceVersion"] = json!(rv);
    let ni = ni.clone();
    s.engine.input(
        Input::NodeImage(Event::Apply(serde_json::from_value(ni).unwrap())),
        s.now,
    );
    assert!(
        !s.engine.has_work(),
        "a progress report changes nothing the decisions read"
    );
}
