//! The plugin's decisions and rendering, without a cluster: objects built as the API serves them.

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImagePullJob, NodeImage};
use pretty_assertions::assert_eq;
use serde_json::{json, Value};

use crate::model::{self, Phase, Snapshot};
use crate::why::{why, Reason};
use crate::{render, status, watch};

const UID: &str = "uid-1";
const IMAGE: &str = "registry.example.com/team/app:v1";
const KEY: &str = "registry.example.com/team/app";
const T0: &str = "2026-01-01T00:00:00Z";

fn now() -> Timestamp {
    "2026-01-01T00:05:00Z".parse().unwrap()
}

fn job(spec: Value, status: Value) -> ImagePullJob {
    let mut s = json!({"image": IMAGE});
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    let mut status = if status == json!({}) {
        Value::Null
    } else {
        status
    };
    // The manager writes a digest with the image it belongs to.
    if let Some(o) = status.as_object_mut() {
        if o.contains_key("digest") && !o.contains_key("resolvedImage") {
            o.insert("resolvedImage".into(), s["image"].clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": UID, "creationTimestamp": T0},
        "spec": s, "status": status,
    }))
    .unwrap()
}

fn owner() -> Value {
    json!([{"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "name": "j", "namespace": "ns", "uid": UID}])
}

/// A NodeImage with `labels`, the job's tag placed (when `placed`) and the daemon's `report`.
fn ni(name: &str, labels: Value, placed: bool, report: Option<Value>) -> NodeImage {
    let spec = if placed {
        json!({"images": {KEY: {"tags": [{"tag": "v1", "version": 1, "createdAt": T0, "ownerReferences": owner()}]}}})
    } else {
        json!({})
    };
    let status = match report {
        Some(mut r) => {
            r["tag"] = json!("v1");
            r["version"] = json!(1);
            json!({"imageStatuses": {KEY: {"tags": [r]}}})
        }
        None => json!({}),
    };
    serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage",
        "metadata": {"name": name, "labels": labels}, "spec": spec, "status": status,
    }))
    .unwrap()
}

fn node(name: &str, ready: bool, labels: Value) -> Node {
    let status = if ready { "True" } else { "False" };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": status, "reason": "KubeletNotReady", "message": "PLEG is not healthy", "lastTransitionTime": T0}],
                   "images": [{"names": ["registry.example.com/team/app:v1"], "sizeBytes": 10485760}]},
    }))
    .unwrap()
}

fn snap(jobs: Vec<ImagePullJob>, nis: Vec<NodeImage>, nodes: Vec<Node>) -> Snapshot {
    Snapshot {
        jobs,
        node_images: nis
            .into_iter()
            .map(|n| (n.metadata.name.clone().unwrap(), n))
            .collect(),
        nodes: nodes
            .into_iter()
            .map(|n| (n.metadata.name.clone().unwrap(), n))
            .collect(),
        now: now(),
        settings: Default::default(),
    }
}

/// A job status with the digest the manager resolved.
fn digest() -> Value {
    json!({"desired": 1, "digest": "sha256:41f5c2a9b0e1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})
}

fn gpu() -> Value {
    json!({"pool": "gpu"})
}

fn reason_of(s: &Snapshot, node: &str) -> Reason {
    why(s, &s.jobs[0], node)
}

#[test]
fn why_names_the_label_the_selector_wants() {
    let j = job(
        json!({"selector": {"matchLabels": {"pool": "gpu"}}}),
        json!({}),
    );
    let s = snap(
        vec![j],
        vec![ni("n1", json!({"pool": "cpu"}), false, None)],
        vec![],
    );
    assert_eq!(
        reason_of(&s, "n1"),
        Reason::SelectorMismatch {
            detail: "selector.matchLabels wants pool=gpu; the node has pool=cpu".into()
        }
    );
    let j = job(
        json!({"selector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}}),
        json!({}),
    );
    let s = snap(vec![j], vec![ni("n1", gpu(), false, None)], vec![]);
    assert!(
        matches!(reason_of(&s, "n1"), Reason::SelectorMismatch { detail } if detail.contains("zone In [a,b]; the node has no label zone"))
    );
    let j = job(json!({"selector": {"names": ["n2"]}}), json!({}));
    let s = snap(vec![j], vec![ni("n1", gpu(), false, None)], vec![]);
    assert!(matches!(
        reason_of(&s, "n1"),
        Reason::SelectorMismatch { .. }
    ));
}

#[test]
fn why_a_node_without_nodeimage_is_not_ready_or_not_yet_created() {
    let s = snap(
        vec![job(json!({}), json!({}))],
        vec![],
        vec![node("n1", false, gpu())],
    );
    match reason_of(&s, "n1") {
        Reason::NodeNotReady { detail, .. } => assert!(detail.contains("PLEG"), "{detail}"),
        r => panic!("{r:?}"),
    }
    let s = snap(
        vec![job(json!({}), json!({}))],
        vec![],
        vec![node("n1", true, gpu())],
    );
    assert!(matches!(
        reason_of(&s, "n1"),
        Reason::NodeImageMissing { due: Some(_), .. }
    ));
    assert_eq!(reason_of(&s, "nowhere"), Reason::NoSuchNode);
}

#[test]
fn why_a_placed_node_is_waiting_pulling_or_done() {
    let j = || job(json!({}), json!({}));
    let cases = [
        (None, "daemonSilent"),
        (Some(json!({"phase": "Waiting"})), "waitingForSlot"),
        (
            Some(
                json!({"phase": "Waiting", "message": "waiting for disk space: the image needs 2.0 GiB, 1.0 GiB free under the 80% limit"}),
            ),
            "diskLimit",
        ),
        (Some(json!({"phase": "Pulling", "progress": 40})), "pulling"),
        (
            Some(
                json!({"phase": "Pulling", "message": "attempt 1 of 4 failed: connection reset; retrying in 2s"}),
            ),
            "retrying",
        ),
        (
            Some(json!({"phase": "Failed", "message": "failed after 4 attempts: not found"})),
            "pullFailed",
        ),
        (
            Some(json!({"phase": "Succeeded", "completionTime": T0})),
            "succeeded",
        ),
    ];
    for (report, want) in cases {
        let s = snap(
            vec![j()],
            vec![ni("n1", gpu(), true, report.clone())],
            vec![],
        );
        assert_eq!(reason_of(&s, "n1").name(), want, "{report:?}");
    }
    let s = snap(vec![j()], vec![ni("n1", gpu(), true, None)], vec![]);
    let text = crate::why::explain(&reason_of(&s, "n1"), &s);
    assert!(
        text.contains("has not answered since 2026-01-01T00:00:00Z (5m00s ago)"),
        "{text}"
    );
}

#[test]
fn why_a_silent_daemon_past_the_response_timeout_failed_the_node() {
    let mut s = snap(
        vec![job(json!({}), json!({}))],
        vec![ni("n1", gpu(), true, None)],
        vec![],
    );
    s.settings.response_timeout = std::time::Duration::from_secs(60);
    assert_eq!(
        reason_of(&s, "n1"),
        Reason::DaemonSilent {
            since: Some(T0.parse().unwrap()),
            failed: true
        }
    );
    // A node that is not Ready is the reason its daemon is silent.
    let s = snap(
        vec![job(json!({}), json!({}))],
        vec![ni("n1", gpu(), true, None)],
        vec![node("n1", false, gpu())],
    );
    assert_eq!(reason_of(&s, "n1").name(), "nodeNotReady");
}

#[test]
fn why_a_node_waits_behind_parallelism_with_its_place_in_line() {
    let j = job(json!({"parallelism": 1}), digest());
    let nis = vec![
        ni("a", gpu(), true, Some(json!({"phase": "Pulling"}))),
        ni("b", gpu(), false, None),
        ni("c", gpu(), false, None),
    ];
    let s = snap(vec![j], nis, vec![]);
    assert_eq!(
        reason_of(&s, "c"),
        Reason::Queued {
            place: 2,
            queued: 2,
            parallelism: 1,
            active: 1
        }
    );
    let text = crate::why::explain(&reason_of(&s, "b"), &s);
    assert!(
        text.contains("1 of 1 slots pulling, this node is #1 of 2 in line"),
        "{text}"
    );
}

#[test]
fn why_a_full_nodeimage_and_a_paused_or_finished_job() {
    let mut full = ni("n1", gpu(), false, None);
    for n in 0..256 {
        full.spec
            .images
            .insert(format!("filler/{n}"), Default::default());
    }
    let s = snap(vec![job(json!({}), json!({}))], vec![full], vec![]);
    assert_eq!(reason_of(&s, "n1"), Reason::NodeImageFull { images: 256 });
    let s = snap(
        vec![job(json!({"parallelism": 0}), digest())],
        vec![ni("n1", gpu(), false, None)],
        vec![],
    );
    assert_eq!(reason_of(&s, "n1"), Reason::Paused);
    let s = snap(
        vec![job(json!({}), json!({}))],
        vec![ni("n1", gpu(), false, None)],
        vec![],
    );
    assert_eq!(
        reason_of(&s, "n1"),
        Reason::AwaitingDigest,
        "the manager resolves the tag first"
    );
    let done = json!({"desired": 1, "succeeded": 1, "completionTime": T0});
    let s = snap(
        vec![job(json!({}), done)],
        vec![ni("n1", gpu(), false, None)],
        vec![],
    );
    assert_eq!(reason_of(&s, "n1"), Reason::JobCompleted);
}

#[test]
fn nodes_rows_carry_phase_progress_attempts_and_since() {
    let nis = vec![
        ni(
            "a",
            gpu(),
            true,
            Some(
                json!({"phase": "Pulling", "progress": 40, "startTime": T0, "message": "attempt 2 of 4 failed: reset; retrying in 5s"}),
            ),
        ),
        ni("b", gpu(), false, None),
    ];
    let s = snap(vec![job(json!({}), json!({}))], nis, vec![]);
    let rows = model::rows(&s, &model::analyse(&s, &s.jobs[0]));
    assert_eq!(
        rows.iter().map(|r| r.phase).collect::<Vec<_>>(),
        [Phase::Pulling, Phase::Queued]
    );
    assert_eq!(rows[0].attempts.as_deref(), Some("2/4"));
    let lines = render::node_rows(&rows, s.now);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>()[..5],
        ["NODE", "PHASE", "PROGRESS", "ATTEMPTS", "SINCE"]
    );
    assert!(
        lines[1].starts_with("a     Pulling  40%       2/4       5m00s  attempt 2"),
        "{lines:#?}"
    );
    assert_eq!(
        model::attempts("failed after 4 attempts: x").as_deref(),
        Some("4/4")
    );
}

#[test]
fn status_sums_progress_and_estimates_from_the_observed_rate() {
    let st = json!({"desired": 4, "succeeded": 1, "active": 2, "startTime": "2026-01-01T00:04:00Z", "digest": "sha256:41f5c2a9b0e1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"});
    let nis = vec![
        ni("a", gpu(), true, Some(json!({"phase": "Succeeded"}))),
        ni(
            "b",
            gpu(),
            true,
            Some(json!({"phase": "Pulling", "progress": 50})),
        ),
        ni("c", gpu(), true, Some(json!({"phase": "Waiting"}))),
        ni("d", gpu(), false, None),
    ];
    let s = snap(
        vec![job(json!({"parallelism": 2}), st)],
        nis,
        vec![node("a", true, gpu())],
    );
    let sum = status::summarize(&s, &s.jobs[0], None);
    assert_eq!((sum.pulling, sum.waiting, sum.done), (1, 2, 1.5));
    // 1.5 nodes in 60 s; 2.5 left.
    assert_eq!(sum.eta_seconds, Some(100));
    assert_eq!(sum.image_bytes, Some(10 << 20));
    let lines = render::status_lines(&sum);
    assert_eq!(lines[0], format!("ns/j  {IMAGE}  sha256:41f5c2a9b0e1"));
    assert_eq!(
        lines[1],
        "  [########>>>>..................]  37%  1/4 nodes  succeeded 1  failed 0  pulling 1  waiting 2"
    );
    assert_eq!(lines[2], "  15.0 MiB of 40.0 MiB  256.0 KiB/s  ETA 1m40s");
    assert_eq!(watch::verdict(&[sum]), None);
}

#[test]
fn watch_ends_with_the_jobs_and_fails_when_a_node_failed() {
    let done = |failed: i32| {
        let st =
            json!({"desired": 2, "succeeded": 2 - failed, "failed": failed, "completionTime": T0});
        let s = snap(vec![job(json!({}), st)], vec![], vec![]);
        status::summarize(&s, &s.jobs[0], None)
    };
    assert_eq!(watch::verdict(&[done(0)]), Some(crate::EXIT_OK));
    assert_eq!(
        watch::verdict(&[done(0), done(1)]),
        Some(crate::EXIT_FAILED)
    );
    let never = job(
        json!({"completionPolicy": {"type": "Never"}}),
        json!({"desired": 2, "succeeded": 2}),
    );
    assert!(
        model::finished(&never),
        "a Never job is done when every current target is"
    );
    let mut rates = watch::Rates::default();
    let t = |s: i64| Timestamp::from_second(s).unwrap();
    assert_eq!(rates.observe("j", (t(0), 0.0)), None);
    assert_eq!(rates.observe("j", (t(30), 1.0)), Some((t(0), 0.0)));
    assert_eq!(
        rates.observe("j", (t(90), 2.0)),
        Some((t(30), 1.0)),
        "older than the window"
    );
}

#[test]
fn top_counts_pulls_per_registry_and_per_job() {
    let nis = vec![
        ni(
            "a",
            gpu(),
            true,
            Some(json!({"phase": "Pulling", "progress": 40})),
        ),
        ni("b", gpu(), true, Some(json!({"phase": "Waiting"}))),
        ni("c", gpu(), true, Some(json!({"phase": "Succeeded"}))),
    ];
    let s = snap(vec![], nis, vec![]);
    let t = status::top(&s);
    let r = &t.registries["registry.example.com"];
    assert_eq!((r.pulling, r.waiting, r.progress), (1, 1, 40));
    assert_eq!(t.jobs["ns/j"].pulling, 1);
    let lines = render::top_lines(&t);
    assert!(
        lines[1].starts_with("registry.example.com  1        1        40%"),
        "{lines:#?}"
    );
}

#[test]
fn node_lists_what_it_holds_with_owners_and_sizes() {
    let s = snap(
        vec![],
        vec![ni(
            "a",
            gpu(),
            true,
            Some(json!({"phase": "Succeeded", "pinned": true})),
        )],
        vec![node("a", true, gpu())],
    );
    let held = render::held(&s, "a");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].owners, ["ImagePullJob/ns/j"]);
    assert_eq!((held[0].pinned, held[0].size), (true, Some(10 << 20)));
    let lines = render::held_lines("a", &held, 1);
    assert_eq!(lines[0], "NodeImage a: 1 of 256 images");
    assert!(
        lines[2].contains("Succeeded  0%        pinned  10.0 MiB"),
        "{lines:#?}"
    );
}

#[test]
fn durations_sizes_and_flags() {
    assert_eq!(render::duration(59), "59s");
    assert_eq!(render::duration(200), "3m20s");
    assert_eq!(render::duration(3720), "1h02m");
    assert_eq!(render::bytes(900), "900 B");
    assert_eq!(render::bytes(3 << 30), "3.0 GiB");
    assert_eq!(
        crate::args::parse_duration("10m"),
        Ok(std::time::Duration::from_secs(600))
    );
    assert!(crate::args::parse_duration("10x")
        .unwrap_err()
        .contains("unknown unit"));
}

#[test]
fn the_queue_puts_first_the_nodes_more_jobs_want_as_the_manager_does() {
    let j = job(json!({"parallelism": 1}), digest());
    let mut other = job(json!({"selector": {"names": ["c"]}}), digest());
    other.metadata.name = Some("other".into());
    other.metadata.uid = Some("uid-2".into());
    let nis = vec![
        ni("a", gpu(), true, Some(json!({"phase": "Pulling"}))),
        ni("b", gpu(), false, None),
        ni("c", gpu(), false, None),
    ];
    let s = snap(vec![j, other], nis, vec![]);
    let place = |node| match reason_of(&s, node) {
        Reason::Queued { place, .. } => place,
        r => panic!("{node}: {r:?}"),
    };
    assert_eq!((place("c"), place("b")), (1, 2), "c is wanted by two jobs");
}

#[test]
fn why_names_what_stops_a_job_or_a_node_before_any_placement() {
    let s = snap(
        vec![job(json!({}), digest())],
        vec![],
        vec![node("vk", true, json!({"type": "virtual-kubelet"}))],
    );
    assert_eq!(reason_of(&s, "vk"), Reason::VirtualNode);
    let mut deleting = job(json!({}), digest());
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let s = snap(vec![deleting], vec![ni("n1", gpu(), true, None)], vec![]);
    assert_eq!(reason_of(&s, "n1"), Reason::JobDeleting);
    let mut bad = job(json!({}), digest());
    bad.spec.image = "nginx@sha256:not-hex".into();
    let s = snap(vec![bad], vec![ni("n1", gpu(), false, None)], vec![]);
    assert_eq!(reason_of(&s, "n1").name(), "invalidImage");
}
