use super::*;
use serde_json::json;

fn node_image(spec: serde_json::Value, status: serde_json::Value) -> NodeImage {
    serde_json::from_value(json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage", "metadata": {"name": "n1"}, "spec": spec, "status": status})).unwrap()
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn tasks_carry_the_tag_policy_with_defaults() {
    let ni = node_image(
        json!({"images": {
            "nginx": {"tags": [
                {"tag": "1.25", "version": 2, "createdAt": "2026-11-26T08:00:00Z", "pullPolicy": {"timeoutSeconds": 30, "activeDeadlineSeconds": 120}, "imagePullPolicy": "Always"},
                {"tag": DIGEST},
            ], "pullSecrets": [{"namespace": "kruise-daemon-config", "name": "s-abc123", "mode": "batch"}], "sandboxConfig": {"labels": {"a": "b"}}},
        }}),
        json!({}),
    );
    let tasks = desired_tags(&ni);
    let t = &tasks[&("nginx".to_string(), "1.25".to_string())];
    assert_eq!(t.reference, "nginx:1.25");
    assert_eq!(
        (t.version, t.policy, t.timeout, t.backoff_limit),
        (2, ImagePullPolicy::Always, Duration::from_secs(30), 3)
    );
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_680_000);
    assert_eq!(t.deadline, Some(created + Duration::from_secs(120)));
    assert_eq!(t.pull_secrets[0].name.as_deref(), Some("s-abc123"));
    assert_eq!(t.sandbox.labels["a"], "b");
    let d = &tasks[&("nginx".to_string(), DIGEST.to_string())];
    assert_eq!(
        d.reference,
        format!("nginx@{DIGEST}"),
        "digest tags pull by digest"
    );
    assert_eq!(
        (d.policy, d.timeout, d.deadline),
        (
            ImagePullPolicy::IfNotPresent,
            Duration::from_secs(600),
            None
        )
    );
}

fn key(i: &str, t: &str) -> TagKey {
    (i.to_string(), t.to_string())
}

#[test]
fn plan_starts_stops_and_adopts() {
    let ni = node_image(
        json!({"images": {"a": {"tags": [{"tag": "1", "version": 1}, {"tag": "2", "version": 5}, {"tag": "3"}]}}}),
        json!({"imageStatuses": {"a": {"tags": [
            {"tag": "1", "phase": "Succeeded", "version": 1, "completionTime": "2026-11-26T08:00:00Z"},
            {"tag": "2", "phase": "Succeeded", "version": 4, "completionTime": "2026-11-26T08:00:00Z"},
            {"tag": "3", "phase": "Pulling", "startTime": "2026-11-26T08:00:00Z"},
        ]}}}),
    );
    let desired = desired_tags(&ni);
    let finished = finished_statuses(&ni);
    // A fresh daemon: tag 1 adopts its result, tag 2's result is for an older version, tag 3 was
    // in flight and starts again.
    let actions = plan(&BTreeMap::new(), &desired, &finished);
    let adopted: Vec<(String, bool)> = actions
        .iter()
        .map(|a| match a {
            Action::Start { task, adopt } => (task.tag.clone(), adopt.is_some()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        adopted,
        [("1".into(), true), ("2".into(), false), ("3".into(), false)]
    );

    // Running workers: tag 2 at an old version restarts, tag 9 was withdrawn, tag 1 is left
    // alone, tag 3's entry changed without a new version (a pull secret added) and is handed over.
    let mut running = desired.clone();
    running.get_mut(&key("a", "2")).unwrap().version = 4;
    let mut withdrawn = desired[&key("a", "1")].clone();
    withdrawn.tag = "9".into();
    running.insert(key("a", "9"), withdrawn);
    let with_secret = node_image(
        json!({"images": {"a": {"tags": [{"tag": "1", "version": 1}, {"tag": "2", "version": 5}, {"tag": "3"}],
            "pullSecrets": [{"namespace": "kruise-daemon-config", "name": "s-abc123", "mode": "batch"}]}}}),
        json!({}),
    );
    let desired = desired_tags(&with_secret);
    running.get_mut(&key("a", "1")).unwrap().pull_secrets =
        desired[&key("a", "1")].pull_secrets.clone();
    let actions = plan(&running, &desired, &finished);
    assert_eq!(
        actions,
        vec![
            Action::Stop {
                key: key("a", "2"),
                removed: false
            },
            Action::Update {
                task: Box::new(desired[&key("a", "3")].clone()),
            },
            Action::Stop {
                key: key("a", "9"),
                removed: true
            },
            Action::Start {
                task: Box::new(desired[&key("a", "2")].clone()),
                adopt: None
            },
        ]
    );
}
