//! Jobs created together stay in step: each node gets their tags in one write, also when their
//! pulls finish at different times and when their selectors differ (the nodes more jobs want
//! come first for everyone), and no job waits longer than the placement window for another.

use std::time::Duration;

use serde_json::json;

use super::*;

fn window() -> Settings {
    Settings {
        placement_window: Duration::from_secs(2),
        ..settings()
    }
}

#[test]
fn jobs_of_different_selectors_meet_on_the_nodes_they_share() {
    let mut s = Sim::new(window());
    for i in 0..8 {
        s.node(
            &format!("n{i}"),
            json!({"pool": if i % 2 == 0 { "gpu" } else { "cpu" }}),
        );
    }
    s.run();
    let created = s.writes["nodeimage"];
    // Two jobs over all nodes, two over the gpu pool, parallelism 2 each.
    for (name, selector) in [
        ("all1", json!(null)),
        ("all2", json!(null)),
        ("gpu1", json!({"matchLabels": {"pool": "gpu"}})),
        ("gpu2", json!({"matchLabels": {"pool": "gpu"}})),
    ] {
        let mut spec = json!({"parallelism": 2, "completionPolicy": {"type": "Never"}});
        if !selector.is_null() {
            spec["selector"] = selector;
        }
        s.job(name, &format!("{name}:1"), spec);
    }
    s.run();
    // The gpu nodes come first for every job: n0 and n2 take all four tags in one write each.
    assert_eq!(s.writes["nodeimage"] - created, 2);
    assert_eq!(s.spec("n0").images.len(), 4);
    assert_eq!(s.spec("n2").images.len(), 4);
    // The nodes finish in turn; each next node still gets all its tags at once.
    for (t, node) in [(20, "n0"), (21, "n2"), (40, "n4"), (41, "n6")] {
        s.at(t);
        s.report(node, "Succeeded");
        s.run();
    }
    s.at(60);
    s.run();
    for n in ["n4", "n6"] {
        assert_eq!(s.spec(n).images.len(), 4, "{n} holds every job's tag");
    }
    for n in ["n1", "n3"] {
        assert_eq!(
            s.spec(n).images.len(),
            2,
            "then the all-node jobs go on to {n}"
        );
    }
    assert!(
        s.patches.values().all(|n| *n == 1),
        "every node written once: {:?}",
        s.patches
    );
    let _ = created;
}

#[test]
fn a_job_waits_at_most_the_window_for_a_slower_one() {
    let mut s = Sim::new(window());
    for i in 0..4 {
        s.node(&format!("n{i}"), json!({}));
    }
    s.run();
    s.job("fast", "fast:1", json!({"parallelism": 1}));
    s.job("slow", "slow:1", json!({"parallelism": 1}));
    s.run();
    assert_eq!(s.nodes_with("fast", "1"), ["n0"]);
    assert_eq!(s.nodes_with("slow", "1"), ["n0"]);
    // fast finishes on n0; slow is still pulling there: fast reserves n1 and waits for slow...
    s.at(10);
    let ni = s.images.get_mut("n0").unwrap();
    ni["status"] = json!({"imageStatuses": {"fast": {"tags": [{"tag": "1", "phase": "Succeeded", "version": 0}]}}});
    ni["metadata"]["resourceVersion"] = json!("5000");
    let ni = ni.clone();
    s.engine.input(
        Input::NodeImage(Event::Apply(serde_json::from_value(ni).unwrap())),
        s.now,
    );
    s.run();
    assert_eq!(
        s.nodes_with("fast", "1"),
        ["n0"],
        "waiting for slow to take n1 too"
    );
    assert_eq!(
        s.status("fast").active,
        1,
        "the reserved node holds its slot"
    );
    // ... but not longer than the window.
    s.at(12);
    s.run();
    assert_eq!(s.nodes_with("fast", "1"), ["n0", "n1"]);
}

/// Jobs moving at one pace, their pulls finishing one at a time in a random order: each node is
/// still written once.
#[test]
fn results_in_any_order_still_write_each_node_once() {
    let mut s = Sim::new(window());
    for i in 0..40 {
        s.node(
            &format!("n{i:02}"),
            json!({"pool": if i % 2 == 0 { "a" } else { "b" }}),
        );
    }
    s.run();
    let jobs: Vec<String> = (0..6).map(|j| format!("j{j}")).collect();
    for (j, name) in jobs.iter().enumerate() {
        let mut spec = json!({"parallelism": 4});
        if j % 2 == 1 {
            spec["selector"] = json!({"matchLabels": {"pool": "a"}});
        }
        s.job(name, &format!("{name}:1"), spec);
    }
    s.run();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut t = 0;
    while jobs.iter().any(|j| s.status(j).completion_time.is_none()) {
        t += 1;
        assert!(t < 2000, "the jobs never finished");
        s.at(t);
        // Each job's oldest pulling tag finishes, the jobs in a random order, each result a
        // round of its own.
        let pulling: Vec<(String, String)> = s
            .images
            .iter()
            .flat_map(|(n, ni)| {
                ni["spec"]["images"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(move |(k, _)| {
                        let done = ni["status"]["imageStatuses"][k]["tags"]
                            .as_array()
                            .is_some_and(|t| t.iter().any(|t| t["phase"] == "Succeeded"));
                        (!done).then(|| (n.clone(), k.clone()))
                    })
            })
            .collect();
        let mut order: Vec<String> = jobs.clone();
        rng.shuffle(&mut order);
        for job in order {
            if let Some((node, key)) = pulling.iter().find(|(_, k)| *k == job) {
                s.report_tag(node, key, "1", "Succeeded");
                s.run();
            }
        }
    }
    let twice: Vec<_> = s.patches.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "written more than once: {twice:?} of {}",
        s.patches.len()
    );
}
