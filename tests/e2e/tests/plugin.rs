//! `kubectl prewarm` (the real `kubectl-prewarm` binary) against a running system: the API
//! server, the real kruise-manager, a real kruise-daemon on the lab's containerd, and NodeImages
//! no daemon serves (OpenKruise's fake-NodeImage label) where a situation needs a node that does
//! not answer. `status --watch` must end with the job (0 when it completed, non-zero when a node
//! failed), and `why` must name the right reason in each situation the tests set up.

use std::process::Output;

use e2e::node::key_and_tag;
use e2e::system::FAKE_NODE_IMAGE_LABEL;
use e2e::{manifest, wait_for, Binary, System, DEADLINE};
use k8s_openapi::api::core::v1::Node;
use kruise_api::NodeImage;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

/// The plugin's command for this test's cluster and namespace.
fn plugin(env: &System, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(Binary::Plugin.path());
    cmd.arg("--kubeconfig")
        .arg(env.cluster.kubeconfig())
        .args(args)
        .args(["-n", &env.ns])
        .kill_on_drop(true);
    cmd
}

/// Runs the plugin to its end, within the deadline.
async fn run(env: &System, args: &[&str]) -> Output {
    let out = tokio::time::timeout(DEADLINE, plugin(env, args).output())
        .await
        .unwrap_or_else(|_| panic!("kubectl prewarm {args:?} did not finish in {DEADLINE:?}"))
        .expect("kubectl-prewarm runs");
    eprintln!(
        "$ kubectl prewarm {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `why JOB NODE -o json`: the reason's name and its sentence.
async fn why(env: &System, job: &str, node: &str) -> (String, String) {
    let out = run(env, &["why", job, node, "-o", "json"]).await;
    assert!(out.status.success(), "why failed: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("why -o json prints JSON");
    (
        v["reason"].as_str().unwrap_or_default().to_string(),
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits for `why` to name `reason` (the manager and the nodes get there in their own time).
async fn why_becomes(env: &System, job: &str, node: &str, reason: &str) -> String {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let last = why(env, job, node).await;
        if last.0 == reason {
            return last.1;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "why {job} {node}: wanted {reason}, still {last:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The exit code of a running `status --watch`, within the deadline.
async fn exit_code(child: tokio::process::Child) -> (i32, String) {
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("status --watch ended with the job")
        .expect("status --watch ran");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!(
        "$ kubectl prewarm status --watch\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn watch(env: &System, job: &str) -> tokio::process::Child {
    plugin(env, &["status", job, "--watch", "--interval", "300ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl-prewarm starts")
}

/// A Node of this test whose kubelet says it is not Ready.
async fn not_ready_node(env: &System, prefix: &str, labels: Value) -> String {
    let name = env.cluster.name(prefix);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": env.cluster.labelled(labels)},
        "status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "KubeletNotReady", "message": "container runtime is down"}]},
    }))
    .unwrap();
    Api::<Node>::all(env.cluster.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("node created");
    name
}

/// A NodeImage no daemon serves (OpenKruise's fake label), holding `images` entries of a job
/// of another installation (another namespace): the manager leaves those alone.
async fn fake_node_image(env: &System, prefix: &str, images: usize) -> String {
    let name = env.cluster.name(prefix);
    let labels = env
        .cluster
        .labelled(json!({FAKE_NODE_IMAGE_LABEL: "true", "pool": "fake"}));
    let owner = json!([{"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "name": "elsewhere", "namespace": "another-installation", "uid": "00000000-0000-0000-0000-000000000000"}]);
    let entries: serde_json::Map<String, Value> = (0..images)
        .map(|n| {
            let entry = json!({"tags": [{"tag": "v1", "version": 1, "ownerReferences": owner}]});
            (format!("example.invalid/filler-{n}"), entry)
        })
        .collect();
    let ni: NodeImage = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage",
        "metadata": {"name": name, "labels": labels}, "spec": {"images": entries},
    }))
    .unwrap();
    env.images
        .api
        .create(&PostParams::default(), &ni)
        .await
        .expect("fake NodeImage created");
    name
}

/// Reports the job's tag on `node` as its daemon would: `phase` with `message`.
async fn report(env: &System, node: &str, reference: &str, phase: &str, message: &str) {
    let (key, tag) = key_and_tag(reference);
    let version = wait_for("the tag on the fake NodeImage", DEADLINE, || async {
        Some(env.images.tag_spec(node, reference).await?.version)
    })
    .await;
    let mut t = json!({"tag": tag, "phase": phase, "version": version, "message": message, "startTime": "2026-01-01T00:00:00Z"});
    if phase == "Failed" {
        t["completionTime"] = json!("2026-01-01T00:01:00Z");
    }
    let status = json!({"status": {"desired": 1, "imageStatuses": {key: {"tags": [t]}}}});
    env.images
        .api
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("NodeImage status patched");
}

/// A job on a node with a daemon completes: `status --watch` follows it and exits 0, and `why`
/// tells the done node, the node the selector leaves out (naming the label), and the node that
/// is not Ready apart.
#[tokio::test]
async fn watch_exits_zero_when_the_job_completes_and_why_names_selector_and_readiness() {
    let mut env = System::start().await;
    let img = env.push("plugin/app", 191);
    let gpu = env.add_node("gpu", json!({"pool": "gpu"})).await;
    let cpu = env
        .add_node_without_daemon("cpu", json!({"pool": "cpu"}))
        .await;
    let down = not_ready_node(&env, "down", json!({"pool": "gpu"})).await;
    let selector = json!({"matchLabels": env.cluster.labelled(json!({"pool": "gpu"}))});
    env.apply_job(manifest(
        "v1beta1",
        "sel",
        &img.reference,
        json!({"selector": selector, "parallelism": 2}),
    ))
    .await;
    let (code, text) = exit_code(watch(&env, "sel")).await;
    assert_eq!(
        code, 0,
        "status --watch of a completed job exits 0:\n{text}"
    );
    assert!(
        text.contains("1/1 nodes") && text.contains("finished"),
        "{text}"
    );

    let done = why_becomes(&env, "sel", &gpu, "succeeded").await;
    assert!(done.contains("the image is on the node"), "{done}");
    let (reason, text) = why(&env, "sel", &cpu).await;
    assert_eq!(reason, "selectorMismatch", "{text}");
    assert!(
        text.contains("wants pool=gpu; the node has pool=cpu"),
        "{text}"
    );
    let (reason, text) = why(&env, "sel", &down).await;
    assert_eq!(reason, "nodeNotReady", "{text}");
    assert!(text.contains("container runtime is down"), "{text}");

    other_views_of_the_done_job(&env, &gpu).await;
}

/// Parallelism 1 over NodeImages no daemon serves: the placed node's daemon is silent, the
/// other waits its turn, a full NodeImage is named full, a disk-limit report is quoted with its
/// figures, a failed pull with its message; `status --watch` exits non-zero once all failed.
#[tokio::test]
async fn why_follows_nodes_through_queue_silence_disk_limit_full_and_failure() {
    let env = System::start().await;
    let img = env.push("plugin/fake", 192);
    let fakes = [
        fake_node_image(&env, "fa", 0).await,
        fake_node_image(&env, "fb", 0).await,
    ];
    let full = fake_node_image(&env, "full", 256).await;
    let selector = json!({"matchLabels": env.cluster.labelled(json!({"pool": "fake"}))});
    env.apply_job(manifest(
        "v1beta1",
        "q",
        &img.reference,
        json!({"selector": selector, "parallelism": 1}),
    ))
    .await;
    let placed = wait_for("the job on one node", DEADLINE, || async {
        let on = env.nodes_with(&img.reference).await;
        (on.len() == 1).then(|| on[0].clone())
    })
    .await;
    let queued = fakes.iter().find(|n| **n != placed).unwrap().clone();

    silent_queued_and_full(&env, &placed, &queued, &full).await;

    let disk = "waiting for disk space: the image needs 1.0 MiB, 0 B free under the 80% limit of the image filesystem (8.0 GiB of 10.0 GiB used; --image-fs-max-percent)";
    report(&env, &placed, &img.reference, "Waiting", disk).await;
    let text = why_becomes(&env, "q", &placed, "diskLimit").await;
    assert!(
        text.contains("the image needs 1.0 MiB, 0 B free under the 80% limit"),
        "{text}"
    );
    let out = run(&env, &["top"]).await;
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(
        top.contains(&format!("{}/q", env.ns)),
        "top names the job waiting:\n{top}"
    );

    failures_end_the_watch(&env, &img.reference, &placed, &queued).await;
}

/// `status -o json`, `nodes` and `node` on the completed job `sel` and its node.
async fn other_views_of_the_done_job(env: &System, gpu: &str) {
    let out = run(env, &["status", "sel", "-o", "json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("status -o json prints JSON");
    assert_eq!(
        (v[0]["desired"].as_i64(), v[0]["succeeded"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(
        v[0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{v}"
    );
    let out = run(env, &["nodes", "sel"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(gpu) && l.contains("Succeeded")),
        "{text}"
    );
    let out = run(env, &["node", gpu]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("ImagePullJob/{}/sel", env.ns);
    assert!(
        text.contains(&owner) && text.contains("Succeeded"),
        "{text}"
    );
}

/// The placed node's daemon is silent, the other waits its turn, the full NodeImage is full.
async fn silent_queued_and_full(env: &System, placed: &str, queued: &str, full: &str) {
    let silent = why_becomes(env, "q", placed, "daemonSilent").await;
    assert!(silent.contains("has not answered since"), "{silent}");
    let line = why_becomes(env, "q", queued, "queued").await;
    assert!(
        line.contains("1 of 1 slots pulling, this node is #1 of 1 in line"),
        "{line}"
    );
    let (reason, text) = why(env, "q", full).await;
    assert_eq!(reason, "nodeImageFull", "{text}");
    assert!(text.contains("256 images"), "{text}");
}

/// Both fake nodes fail: `why` quotes the runtime's message and `status --watch` exits 1.
async fn failures_end_the_watch(env: &System, reference: &str, placed: &str, queued: &str) {
    let watching = watch(env, "q");
    report(
        env,
        placed,
        reference,
        "Failed",
        "failed after 4 attempts: forced by the test",
    )
    .await;
    let text = why_becomes(env, "q", placed, "pullFailed").await;
    assert!(text.contains("forced by the test"), "{text}");
    report(
        env,
        queued,
        reference,
        "Failed",
        "failed after 4 attempts: forced too",
    )
    .await;
    let (code, text) = exit_code(watching).await;
    assert_eq!(code, 1, "status --watch exits 1 when nodes failed:\n{text}");
    assert!(text.contains("finished, 3 failed"), "{text}");
    let out = run(env, &["nodes", "q", "--failed"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().count(),
        4,
        "a header and the three failed nodes:\n{text}"
    );
}
