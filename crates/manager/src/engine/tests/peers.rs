//! Peer sources as the planner writes them: the registry serves an image's first wave within
//! its host's budget, each wave after copies from the nodes that hold it (each seed serving at
//! most the fan-out), waits are woken by what frees, and the counts survive a restart. Here the
//! rules, case by case; the waves of whole rollouts in `waves`, bytes and restarts in `bytes`.

mod bytes;
mod waves;

use kruise_api::ImageTagSpec;
use serde_json::{json, Value};

use super::*;

const PORT: u16 = 9000;
const KEY: &str = "registry.example.com/app";

fn peers(budget: u32, fanout: u32) -> Settings {
    Settings {
        peer_port: PORT,
        registry_budget: budget,
        peer_fanout: fanout,
        ..settings()
    }
}

/// The address node `n{i}` gets.
fn ip(i: usize) -> String {
    format!("10.0.{}.{}", i / 250, i % 250 + 1)
}

/// A Ready Node in `pool` (none: no labels) with an InternalIP (or none).
pub fn node(s: &mut Sim, name: &str, pool: &str, ip: Option<&str>) {
    let rv = s.next_rv();
    let labels = if pool.is_empty() {
        json!({})
    } else {
        json!({ "pool": pool })
    };
    let mut n = json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels, "resourceVersion": rv},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T09:00:00Z"}],
            "addresses": [{"type": "Hostname", "address": name}]}});
    if let Some(ip) = ip {
        n["status"]["addresses"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "InternalIP", "address": ip}));
    }
    s.nodes.insert(name.into(), n.clone());
    let lean: LeanNode = serde_json::from_value(n).unwrap();
    s.engine.input(Input::Node(Event::Apply(lean)), s.now);
}

/// `count` nodes n0, n1, … with addresses, and their NodeImages.
fn cluster(count: usize, settings: Settings) -> Sim {
    let mut s = Sim::new(settings);
    for i in 0..count {
        node(&mut s, &format!("n{i}"), "", Some(&ip(i)));
    }
    s.run();
    s
}

/// The daemon on `node` reports `phase` for `key:tag` at its entry's version, with `extra`
/// fields (digest, bytes), keeping its other reports.
fn report(s: &mut Sim, node: &str, key: &str, tag: &str, phase: &str, extra: Value) {
    s.report_tag_with(node, key, tag, phase, &extra);
}

fn entry(s: &Sim, node: &str, key: &str, tag: &str) -> Option<ImageTagSpec> {
    let spec = s.spec(node);
    spec.images
        .get(key)?
        .tags
        .iter()
        .find(|t| t.tag == tag)
        .cloned()
}

/// `(node, address)` of each source of `node`'s entry, in order.
fn sources(s: &Sim, node: &str, key: &str, tag: &str) -> Vec<(String, String)> {
    let e = entry(s, node, key, tag).expect("placed");
    e.sources.into_iter().map(|p| (p.node, p.address)).collect()
}

/// Nodes where `key:tag` is placed and has no result yet for its entry's version.
fn pulling(s: &Sim, key: &str, tag: &str) -> Vec<String> {
    let done = |n: &String| {
        let version = entry(s, n, key, tag).map_or(0, |e| e.version);
        let st = &s.images[n]["status"]["imageStatuses"][key]["tags"];
        st.as_array().is_some_and(|t| {
            t.iter().any(|t| {
                t["tag"] == tag
                    && t["version"].as_i64().unwrap_or(0) == version
                    && matches!(t["phase"].as_str(), Some("Succeeded" | "Failed"))
            })
        })
    };
    s.nodes_with(key, tag)
        .into_iter()
        .filter(|n| !done(n))
        .collect()
}

#[test]
fn peers_off_nothing_changes() {
    let mut s = cluster(10, settings());
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 10}));
    s.run();
    assert_eq!(s.nodes_with(KEY, "1").len(), 10, "no registry budget");
    for n in 0..10 {
        report(&mut s, &format!("n{n}"), KEY, "1", "Succeeded", json!({}));
    }
    s.run();
    s.job("k", &format!("{KEY}:2"), json!({"parallelism": 10}));
    s.run();
    for n in s.nodes_with(KEY, "2") {
        assert!(sources(&s, &n, KEY, "2").is_empty(), "no sources on {n}");
    }
    let st = &s.jobs["ns/j"]["status"];
    assert!(
        st.get("registryBytes").is_none() && st.get("peerBytes").is_none(),
        "{st}"
    );
    assert_eq!(
        s.engine.peer_counts(),
        Default::default(),
        "nothing indexed"
    );
}

#[test]
fn a_job_joining_a_pull_keeps_its_sources_and_counts_once() {
    let mut s = cluster(4, peers(1, 2));
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 4}));
    s.run();
    report(&mut s, "n0", KEY, "1", "Succeeded", json!({}));
    s.run();
    let copies = pulling(&s, KEY, "1");
    assert_eq!(copies, ["n1", "n2"]);
    let before = sources(&s, "n1", KEY, "1");
    let writes = s.patches.get("n1").copied();
    s.job("k", &format!("{KEY}:1"), json!({"parallelism": 4}));
    s.run();
    assert_eq!(s.tagged(KEY, "1")["n1"], ["j", "k"]);
    assert_eq!(
        sources(&s, "n1", KEY, "1"),
        before,
        "joining rewrites no sources"
    );
    assert_eq!(s.engine.peer_counts().load["n0"], 2, "one entry, one unit");
    // Succeeded: the entry keeps its sources, with no write for them.
    report(&mut s, "n1", KEY, "1", "Succeeded", json!({}));
    s.run();
    assert_eq!(sources(&s, "n1", KEY, "1"), before);
    assert_eq!(
        s.patches.get("n1").copied(),
        writes.map(|w| w + 1),
        "k's join only"
    );
}

#[test]
fn the_registry_budget_is_per_host_and_shared_by_its_jobs() {
    let mut s = cluster(6, peers(2, 2));
    s.job("a", "reg-a.example.com/x:1", json!({"parallelism": 6}));
    s.job("b", "reg-a.example.com/y:1", json!({"parallelism": 6}));
    s.job("c", "reg-b.example.com/z:1", json!({"parallelism": 6}));
    s.run();
    let a = pulling(&s, "reg-a.example.com/x", "1").len();
    let b = pulling(&s, "reg-a.example.com/y", "1").len();
    let c = pulling(&s, "reg-b.example.com/z", "1").len();
    assert_eq!((a + b, c), (2, 2), "a {a}, b {b}, c {c}");
    let counts = s.engine.peer_counts();
    assert_eq!(
        counts.registry,
        BTreeMap::from([
            ("reg-a.example.com".into(), 2),
            ("reg-b.example.com".into(), 2)
        ])
    );
    // One of a's pulls ends: the slot goes to whichever of a and b waits for it.
    let n = s.nodes_with("reg-a.example.com/x", "1").pop().unwrap();
    report(&mut s, &n, "reg-a.example.com/x", "1", "Failed", json!({}));
    s.run();
    let a = pulling(&s, "reg-a.example.com/x", "1").len();
    let b = pulling(&s, "reg-a.example.com/y", "1").len();
    assert_eq!(a + b, 2, "the freed slot is taken again");
    // Docker Hub names count against docker.io.
    s.job("d", "nginx:1", json!({"parallelism": 6}));
    s.job(
        "e",
        "docker.io/library/busybox:1",
        json!({"parallelism": 6}),
    );
    s.run();
    assert_eq!(s.engine.peer_counts().registry["docker.io"], 2);
}

#[test]
fn a_node_without_an_internal_ip_is_never_a_seed() {
    let mut s = Sim::new(peers(1, 2));
    node(&mut s, "n0", "", None);
    for i in 1..6 {
        node(&mut s, &format!("n{i}"), "", Some(&ip(i)));
    }
    s.run();
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 6}));
    s.run();
    assert_eq!(pulling(&s, KEY, "1"), ["n0"]);
    report(&mut s, "n0", KEY, "1", "Succeeded", json!({}));
    s.run();
    // n0 holds it but cannot serve: the registry again, within the budget.
    assert_eq!(pulling(&s, KEY, "1"), ["n1"]);
    assert!(sources(&s, "n1", KEY, "1").is_empty());
    report(&mut s, "n1", KEY, "1", "Succeeded", json!({}));
    s.run();
    let copies = pulling(&s, KEY, "1");
    assert_eq!(copies, ["n2", "n3"]);
    for n in &copies {
        assert_eq!(
            sources(&s, n, KEY, "1"),
            [("n1".into(), format!("{}:{PORT}", ip(1)))]
        );
    }
}

#[test]
fn an_address_arriving_makes_a_seed_of_a_holder() {
    let mut s = Sim::new(peers(1, 2));
    node(&mut s, "n0", "", None);
    for i in 1..5 {
        node(&mut s, &format!("n{i}"), "", Some(&ip(i)));
    }
    s.run();
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 5}));
    s.run();
    report(&mut s, "n0", KEY, "1", "Succeeded", json!({}));
    s.run();
    assert_eq!(
        pulling(&s, KEY, "1"),
        ["n1"],
        "the registry, n0 cannot serve"
    );
    // A heartbeat marks nothing; n0 getting its address wakes the waiting job, which copies
    // from it at once.
    node(&mut s, "n0", "", None);
    assert!(!s.engine.has_work(), "a heartbeat");
    node(&mut s, "n0", "", Some("fd00::10"));
    assert!(s.engine.has_work(), "a new address");
    s.run();
    assert_eq!(pulling(&s, KEY, "1"), ["n1", "n2", "n3"]);
    assert_eq!(
        sources(&s, "n2", KEY, "1"),
        [("n0".into(), format!("[fd00::10]:{PORT}"))]
    );
}

#[test]
fn a_seed_holding_another_digest_is_not_used() {
    let mut s = cluster(
        5,
        Settings {
            resolve_digests: true,
            ..peers(1, 2)
        },
    );
    let want = format!("sha256:{}", "a".repeat(64));
    let other = format!("sha256:{}", "b".repeat(64));
    s.registry.insert(format!("{KEY}:1"), want.clone());
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 5}));
    s.run();
    assert_eq!(s.status("j").digest.as_deref(), Some(want.as_str()));
    assert_eq!(pulling(&s, KEY, "1"), ["n0"]);
    // n0 reports holding another digest than the job's (the tag moved under it).
    report(
        &mut s,
        "n0",
        KEY,
        "1",
        "Succeeded",
        json!({"digest": other}),
    );
    s.run();
    assert_eq!(
        pulling(&s, KEY, "1"),
        ["n1"],
        "n0 is no seed for this digest"
    );
    assert!(sources(&s, "n1", KEY, "1").is_empty());
    report(&mut s, "n1", KEY, "1", "Succeeded", json!({"digest": want}));
    s.run();
    let copies = pulling(&s, KEY, "1");
    assert_eq!(copies, ["n2", "n3"]);
    for n in &copies {
        let peers: Vec<String> = sources(&s, n, KEY, "1").into_iter().map(|p| p.0).collect();
        assert_eq!(peers, ["n1"]);
    }
}

#[test]
fn a_failed_copy_frees_its_seed_and_parallelism_still_bounds() {
    let mut s = cluster(8, peers(1, 2));
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 3}));
    s.run();
    report(&mut s, "n0", KEY, "1", "Succeeded", json!({}));
    s.run();
    assert_eq!(
        pulling(&s, KEY, "1"),
        ["n1", "n2"],
        "n0's fan-out, under the parallelism"
    );
    report(&mut s, "n1", KEY, "1", "Failed", json!({}));
    s.run();
    assert_eq!(
        pulling(&s, KEY, "1"),
        ["n2", "n3"],
        "n1's unit of n0 went to n3"
    );
    assert_eq!(s.engine.peer_counts().load["n0"], 2);
    // n2 succeeds: n0 has room for one, n2 for two, the job for two only.
    report(&mut s, "n2", KEY, "1", "Succeeded", json!({}));
    s.run();
    assert_eq!(pulling(&s, KEY, "1"), ["n3", "n4", "n5"]);
    let st = s.status("j");
    assert_eq!((st.active, st.succeeded, st.failed), (3, 2, 1));
    let load = s.engine.peer_counts().load;
    assert_eq!(load.values().sum::<u32>(), 3, "{load:?}");
    assert!(load.values().all(|l| *l <= 2), "{load:?}");
}

#[test]
fn a_silent_node_gives_back_its_registry_slot() {
    let mut s = cluster(3, peers(1, 2));
    s.at(0);
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 3}));
    s.run();
    let first = pulling(&s, KEY, "1");
    assert_eq!(first.len(), 1, "one registry pull: {first:?}");
    // Its daemon never answers: after the response timeout the node counts as failed for the
    // job, and the registry slot goes to the next node instead of being held for good.
    s.at(601);
    s.run();
    let now = pulling(&s, KEY, "1");
    assert_eq!(now.len(), 2, "the next node pulls: {now:?}");
    let second = now
        .iter()
        .find(|n| **n != first[0])
        .expect("another node")
        .clone();
    assert!(
        sources(&s, &second, KEY, "1").is_empty(),
        "from the registry"
    );
    let counts = s.engine.peer_counts();
    assert_eq!(counts.registry.values().sum::<u32>(), 1, "{counts:?}");
    // A late answer that succeeds still makes a seed for the rest.
    report(&mut s, &first[0], KEY, "1", "Succeeded", json!({}));
    s.run();
    let third = pulling(&s, KEY, "1")
        .into_iter()
        .find(|n| *n != second)
        .expect("the third node is placed");
    assert_eq!(
        sources(&s, &third, KEY, "1")[0].0,
        first[0],
        "copies from the late node"
    );
}
