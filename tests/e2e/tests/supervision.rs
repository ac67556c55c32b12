//! Failing loudly and healing: faults injected into the real binaries (through `FAILPOINTS`,
//! which this test build's binaries read) and into the real container runtime. A manager whose
//! engine panics or whose writer stalls exits non-zero in a stated time and hands over; a daemon
//! whose runtime goes away mid-pull says so, is not ready meanwhile, and finishes the pull when
//! the runtime is back.

use std::time::{Duration, Instant};

use e2e::system::{manifest, System};
use e2e::{wait_for, Cluster, DaemonOptions, Process};
use kruise_api::TagPhase;
use kruise_testlab::{http_status, Lab, Layer};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

/// Waits for `process` to exit, at most `deadline`; its exit status.
async fn exit_of(
    process: &mut Process,
    what: &str,
    deadline: Duration,
) -> std::process::ExitStatus {
    wait_for(what, deadline, || {
        let status = process.exit_status();
        async move { status }
    })
    .await
}

/// How many times `needle` stands in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

async fn wait_leading(process: &Process) {
    wait_for("the manager to lead", DEADLINE, || async {
        process
            .log_text()
            .contains("became the leader")
            .then_some(())
    })
    .await;
}

/// The engine panics in its first round with writes (a bug such as an `expect` in a round):
/// the leader logs the cause once, exits non-zero within 15 s, gives its Lease back, and the
/// standby plans everything.
#[tokio::test]
async fn an_engine_panic_makes_the_leader_exit_and_the_standby_take_over() {
    let mut env = System::without_manager(Cluster::start().await).await;
    let faults = [("FAILPOINTS", "engine-round-panic=return")];
    let mut leader = env.manager_process_with_env("manager-panics", &[], &faults);
    leader.wait_ready(DEADLINE).await;
    wait_leading(&leader).await;
    let mut standby = env.manager_process("manager-standby", &[]);
    standby.wait_ready(DEADLINE).await;

    let node_added = Instant::now();
    // Its NodeImage is the leader's first write: the leader's engine panics planning it, and the
    // standby creates it.
    env.add_node("a", json!({})).await;
    let status = exit_of(&mut leader, "the panicking leader to exit", DEADLINE).await;
    let took = node_added.elapsed();
    let log = leader.log_text();
    assert!(!status.success(), "exits non-zero: {status:?}\n{log}");
    assert!(
        took < Duration::from_secs(15),
        "exited {took:?} after the node came\n{log}"
    );
    assert!(
        log.contains("kruise-engine panicked: injected fault: the engine-round-panic fail point"),
        "{log}"
    );
    assert_eq!(
        count(&log, "a supervised task failed"),
        1,
        "the cause is logged once\n{log}"
    );
    assert!(
        log.contains("released the lease"),
        "hands the Lease back\n{log}"
    );

    let img = env.push("lab/supervised", 21);
    env.apply_job(manifest(
        "v1beta1",
        "after-panic",
        &img.reference,
        json!({}),
    ))
    .await;
    env.wait_job("after-panic", "completed by the standby", |s| {
        s.completion_time.is_some() && s.succeeded == 1
    })
    .await;
    assert!(standby.log_text().contains("became the leader"));
    eprintln!("the panicking leader exited {took:?} after the node came");
}

/// The writer stops taking writes: with `--stall-timeout 3s` the manager fails `/healthz`,
/// says which task stalled, and exits non-zero within 15 s.
#[tokio::test]
async fn a_stalled_writer_fails_the_manager_within_its_stall_timeout() {
    let env = System::without_manager(Cluster::start().await).await;
    let faults = [("FAILPOINTS", "writer-stall=return")];
    let mut manager =
        env.manager_process_with_env("manager-stalls", &["--stall-timeout", "3s"], &faults);
    manager.wait_ready(DEADLINE).await;
    wait_leading(&manager).await;

    let stalled_at = Instant::now();
    // A Node makes a NodeImage to create: the writer takes the batch and stalls.
    env.cluster
        .create_node(&env.cluster.name("a"), json!({}))
        .await;
    let unhealthy = wait_for("/healthz to fail or the process to exit", DEADLINE, || {
        let code = http_status(manager.admin_port, "/healthz");
        let running = manager.is_running();
        async move { (code == Some(500) || !running).then_some(code) }
    })
    .await;
    let status = exit_of(&mut manager, "the stalled manager to exit", DEADLINE).await;
    let took = stalled_at.elapsed();
    let log = manager.log_text();
    assert!(!status.success(), "exits non-zero: {status:?}\n{log}");
    assert!(
        took < Duration::from_secs(15),
        "exited {took:?} after the stall\n{log}"
    );
    assert!(
        log.contains("the writer made no progress for") && log.contains("its deadline is 3s"),
        "{log}"
    );
    assert_eq!(count(&log, "a supervised task failed"), 1, "{log}");
    eprintln!("/healthz answered {unhealthy:?} before the exit; exited {took:?} after the stall");
}

/// containerd stops in the middle of a pull and starts again: while it is away the daemon is not
/// ready, `kruise_daemon_runtime_up` is 0 and the tag's message names the runtime; once it is
/// back, the pull completes.
#[tokio::test]
async fn a_runtime_restart_mid_pull_is_waited_for_and_the_pull_completes() {
    let cluster = Cluster::start().await;
    let mut lab = Lab::start().expect("containerd lab");
    let images = cluster.node_images();
    let logs = tempfile::tempdir().unwrap();
    let img = lab
        .push(
            &lab.registry,
            "lab/outage",
            "v1",
            &[Layer::random("o", 16 << 20, 61)],
        )
        .expect("image pushed");
    // 16 MiB at 2 MiB/s: about 8 s of pulling to stop containerd in.
    let proxy = lab.slow_proxy(&lab.registry, 2 << 20).expect("proxy");
    let reference = img.reference.replace(&lab.registry.host(), &proxy.host());
    let node = cluster.name("n");
    images.create(&node).await;
    let opts = DaemonOptions::local(&node, lab.cri_endpoint());
    let mut daemon = Process::daemon(cluster.kubeconfig(), &opts, logs.path());
    daemon.wait_ready(DEADLINE).await;
    images.want(&node, &reference, 1, json!({})).await;
    wait_for("the pull to be under way", DEADLINE, || async {
        let st = images.tag_status(&node, &reference).await?;
        (st.phase == TagPhase::Pulling && st.progress > 0).then_some(())
    })
    .await;

    lab.containerd.stop();
    wait_for("/readyz to say not ready", DEADLINE, || async {
        (http_status(daemon.admin_port, "/readyz") == Some(503)).then_some(())
    })
    .await;
    let metrics = daemon.metrics().await;
    assert!(metrics.contains("kruise_daemon_runtime_up 0"), "{metrics}");
    let message = wait_for(
        "the tag's message to name the runtime",
        DEADLINE,
        || async {
            let st = images.tag_status(&node, &reference).await?;
            let m = st.message.unwrap_or_default();
            m.contains("waiting for the container runtime to come back")
                .then_some(m)
        },
    )
    .await;
    assert!(daemon
        .log_text()
        .contains("the container runtime stopped answering"));

    lab.containerd.start_again().expect("containerd back");
    let done = images
        .wait_phase(
            &node,
            &reference,
            TagPhase::Succeeded,
            1,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(done.progress, 100);
    wait_for("/readyz to say ready again", DEADLINE, || async {
        (http_status(daemon.admin_port, "/readyz") == Some(200)).then_some(())
    })
    .await;
    assert!(daemon
        .metrics()
        .await
        .contains("kruise_daemon_runtime_up 1"));
    eprintln!("while containerd was away the tag said: {message}");
}
