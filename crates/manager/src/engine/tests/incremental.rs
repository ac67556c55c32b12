//! Incrementality as a property: after any sequence of changes, each replanned only where it
//! changed something, the world the engine wrote is one that planning everything from scratch
//! (a fresh engine listing the same objects) leaves exactly as it is, and both engines count
//! every job the same on every node (with peers on, also its bytes and the peer index: a job
//! left waiting for a seed or a registry slot that has room is a wake-up missed).

use serde_json::json;

use super::*;

/// A random walk over the events a cluster sees, planned with `settings`.
fn walk(seed: u64, steps: usize, settings: &Settings) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut s = Sim::new(settings.clone());
    let peers = settings.peers_on();
    let mut elapsed = 0;
    let pools = ["a", "b", "c"];
    let images = ["nginx:1", "nginx:2", "redis:7", "app:v1"];
    // With peers on, nodes n0…n4 have an InternalIP (seeds), the others none.
    let node = |s: &mut Sim, n: &str, pool: &str| match n[1..].parse::<u8>() {
        Ok(i) if peers && i < 5 => super::peers::node(s, n, pool, Some(&format!("10.0.0.{i}"))),
        _ => s.node(n, json!({ "pool": pool })),
    };
    for i in 0..6 {
        node(&mut s, &format!("n{i}"), pools[i % 3]);
    }
    s.run();
    let mut log = Vec::new();
    for step in 0..steps {
        let action = rng.u8(0..10);
        match action {
            0 => {
                let n = format!("n{}", rng.u8(0..9));
                log.push(format!("node {n}"));
                node(&mut s, &n, pools[rng.usize(0..3)]);
            }
            1 => {
                let n = format!("n{}", rng.u8(0..9));
                log.push(format!("remove node {n}"));
                s.remove_node(&n);
            }
            2 | 3 => {
                let name = format!("j{}", rng.u8(0..6));
                let mut spec = json!({
                    "parallelism": rng.u8(0..4),
                    "completionPolicy": {"type": if rng.bool() { "Always" } else { "Never" }},
                });
                match rng.u8(0..4) {
                    0 => {
                        spec["selector"] = json!({"matchLabels": {"pool": pools[rng.usize(0..3)]}})
                    }
                    1 => spec["selector"] = json!({"names": ["n1", "n3", "n8"]}),
                    _ => {}
                }
                if rng.u8(0..4) == 0 {
                    spec["imagePullPolicy"] = json!("Always");
                }
                let image = images[rng.usize(0..images.len())];
                log.push(format!("job {name} {image} {spec}"));
                if s.jobs.contains_key(&format!("ns/{name}")) && rng.bool() {
                    spec["image"] = json!(image);
                    s.edit_job(&name, spec);
                } else {
                    s.job(&name, image, spec);
                }
            }
            4 => {
                let name = format!("j{}", rng.u8(0..6));
                log.push(format!("delete {name}"));
                s.delete_job(&name);
            }
            5..=7 => {
                let node = format!("n{}", rng.u8(0..9));
                if s.images.contains_key(&node) {
                    let phase = ["Pulling", "Succeeded", "Failed"][rng.usize(0..3)];
                    // With peers, bytes too (drawn only then: the walk without stays as it was).
                    let bytes = match peers {
                        true => {
                            json!({"registryBytes": rng.u8(0..3), "peerBytes": [{"node": "n0", "bytes": rng.u8(0..3)}]})
                        }
                        false => json!({}),
                    };
                    log.push(format!("report {node} {phase} {bytes}"));
                    s.report_with(&node, phase, &bytes);
                }
            }
            _ => {
                elapsed += [1, 30, 700][rng.usize(0..3)];
                log.push(format!("time {elapsed}"));
                s.at(elapsed);
            }
        }
        s.run();
        check_fixed_point(&s, settings, seed, step, &log);
    }
}

fn check_fixed_point(s: &Sim, settings: &Settings, seed: u64, step: usize, log: &[String]) {
    let mut fresh = s.fresh_engine(settings.clone());
    // Counted after the fresh engine's first round: entries whose daemon stayed silent count
    // for nothing once their cells are computed at this time.
    let writes = fresh.round(s.now);
    assert_eq!(
        s.engine.peer_counts().registry,
        fresh.peer_counts().registry,
        "seed {seed} step {step}: registry pulls\nafter {log:#?}"
    );
    assert_eq!(
        s.engine.peer_counts().load,
        fresh.peer_counts().load,
        "seed {seed} step {step}: seeds' loads\nafter {log:#?}"
    );
    let relevant: Vec<&Write> = writes
        .iter()
        .filter(|w| !matches!(w, Write::Secrets { .. } | Write::List { .. }))
        .collect();
    if !relevant.is_empty() {
        let nodes: Vec<String> = relevant
            .iter()
            .map(|w| match w {
                Write::PatchNodeImage { name, patch } => format!(
                    "{name}: stored {}\n  fresh patch {}",
                    s.images[name]["spec"], patch["spec"]
                ),
                Write::JobStatus { name, patch, .. } => format!(
                    "job {name}: stored {}\n  fresh {}",
                    s.jobs[&format!("ns/{name}")]["status"],
                    patch["status"]
                ),
                other => format!("{other:?}"),
            })
            .collect();
        panic!(
            "seed {seed} step {step}: planning everything anew would write:\n{}\nafter:\n{}",
            nodes.join("\n"),
            log.join("\n")
        );
    }
    for (uid, job) in &s.engine.jobs {
        let other = fresh.jobs.get(uid).expect("the same jobs");
        let mut a: Vec<_> = job.cells.iter().map(|(n, c)| (n.clone(), *c)).collect();
        let mut b: Vec<_> = other.cells.iter().map(|(n, c)| (n.clone(), *c)).collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            a, b,
            "seed {seed} step {step}: cells of {uid}\nafter {log:#?}"
        );
        assert_eq!(
            (job.active, job.succeeded, &job.failed),
            (other.active, other.succeeded, &other.failed),
            "seed {seed} step {step}: counts of {uid}"
        );
        assert_eq!(
            job.bytes, other.bytes,
            "seed {seed} step {step}: bytes of {uid}\nafter {log:#?}"
        );
    }
}

#[test]
fn planning_what_changed_equals_planning_everything() {
    for seed in 0..40 {
        walk(seed, 60, &settings());
    }
}

#[test]
fn with_peers_planning_what_changed_equals_planning_everything() {
    // A budget and a fan-out of one keep jobs waiting most of the walk; two, less often.
    for n in [1, 2] {
        let settings = Settings {
            peer_port: 9000,
            registry_budget: n,
            peer_fanout: n,
            ..settings()
        };
        for seed in 0..40 {
            walk(seed, 60, &settings);
        }
    }
}
