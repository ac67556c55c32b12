//! Bytes from the registry and from peers in job statuses, and a restarted manager counting
//! what the running one counted.

use serde_json::json;

use super::*;

/// `node` reports its pull of `KEY:1` `phase`, with `registry` bytes from the registry and
/// `peer` from n0.
fn says(s: &mut Sim, node: &str, phase: &str, registry: i64, peer: i64) {
    let bytes = json!({"registryBytes": registry, "peerBytes": [{"node": "n0", "bytes": peer}]});
    report(s, node, KEY, "1", phase, bytes);
}

/// A job's status: bytes from the registry, from peers.
fn sums(s: &Sim, job: &str) -> (Option<i64>, Option<i64>) {
    let st = s.status(job);
    (st.registry_bytes, st.peer_bytes)
}

/// n0 pulled from the registry, n1 copied from n0, n2 copying: all succeeded but n2.
fn three_pulls() -> Sim {
    let mut s = cluster(4, peers(1, 2));
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 4}));
    s.run();
    says(&mut s, "n0", "Succeeded", 100, 0);
    s.run();
    says(&mut s, "n1", "Succeeded", 5, 95);
    says(&mut s, "n2", "Pulling", 1, 40);
    s.run();
    s
}

#[test]
fn job_status_sums_the_bytes_of_nodes_that_succeeded() {
    let mut s = three_pulls();
    assert_eq!(
        sums(&s, "j"),
        (Some(105), Some(95)),
        "pulling nodes do not count"
    );
    // A job joining counts from scratch what j counted as it went.
    says(&mut s, "n2", "Succeeded", 1, 80);
    s.job("k", &format!("{KEY}:1"), json!({"parallelism": 4}));
    s.run();
    assert_eq!(sums(&s, "j"), (Some(106), Some(175)));
    assert_eq!(sums(&s, "k"), (Some(106), Some(175)));
    // n0 pulled again (for a job that asks for Always): j's sum leaves it out until it
    // succeeds again.
    let spec = json!({"imagePullPolicy": "Always", "selector": {"names": ["n0"]}});
    s.job("again", &format!("{KEY}:1"), spec);
    s.run();
    assert_eq!(pulling(&s, KEY, "1"), ["n0", "n3"]);
    assert_eq!(sums(&s, "j"), (Some(6), Some(175)));
    says(&mut s, "n0", "Succeeded", 0, 100);
    s.run();
    assert_eq!(sums(&s, "j"), (Some(6), Some(275)));
}

#[test]
fn a_change_of_bytes_alone_plans_nothing() {
    let mut s = three_pulls();
    // Progress on a pulling node: nothing marked, nothing written.
    let writes = s.writes.clone();
    says(&mut s, "n2", "Pulling", 1, 80);
    assert!(!s.engine.has_work(), "a progress report marks nothing");
    s.run();
    assert_eq!(s.writes, writes);
    // Bytes corrected on a node that succeeded: that job's status, and no planning.
    says(&mut s, "n1", "Succeeded", 7, 95);
    let out = s.engine.round(s.now);
    let r = s.engine.last_round;
    assert_eq!(
        (r.jobs_rebuilt, r.cells_refreshed, r.nodes_planned),
        (0, 0, 0)
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(matches!(out[0], Write::JobStatus { .. }));
    for w in out {
        s.execute(w);
    }
    s.run();
    assert_eq!(sums(&s, "j"), (Some(107), Some(95)));
}

#[test]
fn a_restarted_manager_counts_the_same() {
    let mut s = cluster(12, peers(2, 2));
    s.job("a", &format!("{KEY}:1"), json!({"parallelism": 12}));
    s.job("b", "reg-b.example.com/z:1", json!({"parallelism": 12}));
    s.run();
    for n in pulling(&s, KEY, "1") {
        report(
            &mut s,
            &n,
            KEY,
            "1",
            "Succeeded",
            json!({"registryBytes": 10}),
        );
    }
    s.run();
    // Some copies done, some failed, some pulling; b's registry pulls still running.
    let copies = pulling(&s, KEY, "1");
    report(
        &mut s,
        &copies[0],
        KEY,
        "1",
        "Succeeded",
        json!({"peerBytes": [{"node": "n0", "bytes": 10}]}),
    );
    report(&mut s, &copies[1], KEY, "1", "Failed", json!({}));
    s.run();
    let counts = s.engine.peer_counts();
    assert!(
        !counts.load.is_empty() && !counts.registry.is_empty(),
        "{counts:?}"
    );
    let restarted = s.fresh_engine(peers(2, 2));
    assert_eq!(restarted.peer_counts().registry, counts.registry);
    assert_eq!(restarted.peer_counts().load, counts.load);
    assert_eq!(restarted.peer_counts().holders, counts.holders);
    // And once it has planned, the same bytes, and nothing that was written is rewritten.
    let before = s.images.clone();
    s.engine = restarted;
    s.run();
    for (n, ni) in &before {
        for (key, image) in ni["spec"]["images"].as_object().into_iter().flatten() {
            assert_eq!(s.images[n]["spec"]["images"][key], *image, "{n} {key}");
        }
    }
    let uid = s.jobs["ns/a"]["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = s.engine.jobs[&*uid].bytes;
    assert_eq!((bytes.registry, bytes.peer), (20, 10));
}
