//! Whole rollouts with peers, wave by wave: each wave's nodes succeed, and the next wave copies
//! from them; the registry serves only the first.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;

/// What a rollout took: waves, and the nodes that pulled from the registry.
struct Rollout {
    waves: usize,
    registry_pulls: usize,
    wave_sizes: Vec<usize>,
}

/// Every node pulling `key:tag` succeeds, then the engine places the next ones, until `total`
/// nodes hold it. Each wave is checked: its copies name only nodes that hold the image, at their
/// address, and no seed is the primary of more than `fanout` of them.
fn roll(s: &mut Sim, key: &str, tag: &str, total: usize, fanout: usize) -> Rollout {
    let now = pulling(s, key, tag);
    let mut held: BTreeSet<String> = (s.nodes_with(key, tag).into_iter())
        .filter(|n| !now.contains(n))
        .collect();
    let mut out = Rollout {
        waves: 0,
        registry_pulls: 0,
        wave_sizes: Vec::new(),
    };
    while held.len() < total {
        let wave = pulling(s, key, tag);
        assert!(!wave.is_empty(), "stalled at {} of {total}", held.len());
        let mut primaries: BTreeMap<String, usize> = BTreeMap::new();
        for n in &wave {
            let srcs = sources(s, n, key, tag);
            match srcs.first() {
                None => out.registry_pulls += 1,
                Some((p, _)) => *primaries.entry(p.clone()).or_default() += 1,
            }
            for (peer, address) in &srcs {
                assert!(
                    held.contains(peer),
                    "{n} copies from {peer}, which does not hold it"
                );
                let i: usize = peer[1..].parse().unwrap();
                assert_eq!(*address, format!("{}:{PORT}", ip(i)));
            }
        }
        let busiest = primaries.values().max().copied().unwrap_or(0);
        assert!(busiest <= fanout, "a seed serves {busiest} nodes at once");
        out.waves += 1;
        out.wave_sizes.push(wave.len());
        for n in wave {
            report(s, &n, key, tag, "Succeeded", json!({}));
            held.insert(n);
        }
        s.run();
    }
    out
}

#[test]
fn the_first_wave_pulls_from_the_registry_then_seeds_serve_the_next() {
    let mut s = cluster(10, peers(2, 2));
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": 10}));
    s.run();
    let first = pulling(&s, KEY, "1");
    assert_eq!(first, ["n0", "n1"], "the budget, not the parallelism");
    assert!(first.iter().all(|n| sources(&s, n, KEY, "1").is_empty()));
    let counts = s.engine.peer_counts();
    assert_eq!(counts.registry["registry.example.com"], 2);
    assert_eq!(counts.waiting, 1, "the job waits for a slot or a seed");
    let st = s.status("j");
    assert_eq!(
        (st.active, st.registry_bytes, st.peer_bytes),
        (2, Some(0), Some(0))
    );

    // n0 and n1 succeed: the next four copy from them, each seed primary for two.
    for n in ["n0", "n1"] {
        report(&mut s, n, KEY, "1", "Succeeded", json!({}));
    }
    s.run();
    let second = pulling(&s, KEY, "1");
    assert_eq!(second.len(), 4, "{second:?}");
    let addr = |i: usize| format!("{}:{PORT}", ip(i));
    assert_eq!(
        sources(&s, &second[0], KEY, "1"),
        [("n0".into(), addr(0)), ("n1".into(), addr(1))],
        "least loaded first, then by name; the other a fallback"
    );
    let counts = s.engine.peer_counts();
    assert_eq!(
        counts.load,
        BTreeMap::from([("n0".into(), 2), ("n1".into(), 2)])
    );
    assert!(
        counts.registry.is_empty(),
        "no registry pull while a seed holds it"
    );
    let rest = roll(&mut s, KEY, "1", 10, 2);
    let waves = rest.waves + 1;
    println!(
        "10 nodes, budget 2, fanout 2: {waves} waves ({:?} after the first)",
        rest.wave_sizes
    );
    assert!(waves <= 4, "{waves} waves");
    assert_eq!(rest.registry_pulls, 0);
    assert_eq!(s.status("j").succeeded, 10);
}

/// The rollout on paper at fleet scale: 5,000 nodes, each placed node succeeding one wave later.
/// `cargo test -p kruise-manager --lib five_thousand -- --nocapture` prints the figures.
#[test]
fn five_thousand_nodes_on_paper() {
    let (nodes, budget, fanout) = (5000, 3, 2);
    let mut s = cluster(nodes, peers(budget, fanout));
    s.job("j", &format!("{KEY}:1"), json!({"parallelism": nodes}));
    s.run();
    let r = roll(&mut s, KEY, "1", nodes, fanout as usize);
    println!(
        "{nodes} nodes, budget {budget}, fanout {fanout}: {} waves, {} registry pulls; waves {:?}",
        r.waves, r.registry_pulls, r.wave_sizes
    );
    assert!(r.waves <= 12, "{} waves", r.waves);
    assert_eq!(r.registry_pulls, budget as usize, "the first wave only");
    assert_eq!(s.status("j").succeeded, nodes as i32);
    assert_eq!(
        s.engine.peer_counts().load,
        BTreeMap::new(),
        "nothing left in flight"
    );
}
