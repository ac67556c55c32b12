//! One digest per job and pinning, as the planner writes them into NodeImage entries.

use serde_json::json;

use super::*;

fn resolving() -> Sim {
    let mut s = Sim::new(Settings {
        resolve_digests: true,
        ..settings()
    });
    for n in ["n0", "n1"] {
        s.node(n, json!({}));
    }
    s.run();
    s
}

#[test]
fn a_job_is_resolved_once_and_every_entry_carries_its_digest() {
    let mut s = resolving();
    s.job("j", "nginx:1.25", json!({"parallelism": 2}));
    s.run();
    let st = s.status("j");
    let digest = st.digest.clone().expect("resolved");
    assert_eq!(
        st.short_digest.as_deref(),
        Some(&kruise_api::short_digest(&digest)[..])
    );
    for n in ["n0", "n1"] {
        let tag = &s.spec(n).images["nginx"].tags[0];
        assert_eq!(tag.digest.as_deref(), Some(digest.as_str()), "{n}");
    }
}

#[test]
fn a_job_waits_for_its_digest_before_placing() {
    let mut s = resolving();
    // A status that says resolution was tried and failed: placed without a digest.
    s.job("j", "nginx:1.25", json!({"parallelism": 2}));
    let key = "ns/j".to_string();
    let rv = s.next_rv();
    let stored = s.jobs.get_mut(&key).unwrap();
    stored["status"] =
        json!({"desired": 0, "digestMessage": "unreachable", "resolvedImage": "nginx:1.25"});
    stored["metadata"]["resourceVersion"] = json!(rv);
    let j = s.jobs[&key].clone();
    s.engine.input(
        Input::Job(Event::Apply(serde_json::from_value(j).unwrap())),
        s.now,
    );
    s.run();
    assert_eq!(s.nodes_with("nginx", "1.25").len(), 2);
    assert_eq!(s.spec("n0").images["nginx"].tags[0].digest, None);
    // A digest reference needs no resolving.
    s.job(
        "d",
        &format!("busybox@sha256:{}", "a".repeat(64)),
        json!({"parallelism": 2}),
    );
    s.run();
    assert_eq!(s.status("d").digest, None);
    assert_eq!(
        s.nodes_with("busybox", &format!("sha256:{}", "a".repeat(64)))
            .len(),
        2
    );
}

#[test]
fn never_jobs_pin_always_jobs_only_when_asked() {
    let mut s = Sim::cluster(1);
    s.job(
        "never",
        "a:1",
        json!({"completionPolicy": {"type": "Never"}}),
    );
    s.job("always", "b:1", json!({}));
    s.job("always-pinned", "c:1", json!({}));
    s.job(
        "never-unpinned",
        "d:1",
        json!({"completionPolicy": {"type": "Never"}}),
    );
    for (name, value) in [("always-pinned", "true"), ("never-unpinned", "false")] {
        s.edit_meta(
            name,
            json!({"annotations": {"imagepulljobs.kruise.io/pin": value}}),
        );
    }
    s.run();
    let spec = s.spec("n0");
    let pin = |k: &str| spec.images[k].tags[0].pin;
    assert!(pin("a"), "a Never job pins");
    assert!(!pin("b"), "an Always job does not");
    assert!(pin("c"), "an Always job annotated pin: true does");
    assert!(!pin("d"), "a Never job annotated pin: false does not");
    // Annotated after its tags were placed: the placed entries follow.
    s.edit_meta(
        "always",
        json!({"annotations": {"imagepulljobs.kruise.io/pin": "true"}}),
    );
    s.run();
    assert!(
        s.spec("n0").images["b"].tags[0].pin,
        "the annotation reaches placed entries"
    );
    s.edit_meta(
        "always",
        json!({"annotations": {"imagepulljobs.kruise.io/pin": null}}),
    );
    s.run();
    assert!(!s.spec("n0").images["b"].tags[0].pin);
    // A tag shared by a pinning and a non-pinning job is pinned while the pinning one owns it.
    s.job(
        "shared",
        "b:1",
        json!({"completionPolicy": {"type": "Never"}}),
    );
    s.run();
    assert!(s.spec("n0").images["b"].tags[0].pin);
    s.delete_job("shared");
    s.run();
    assert!(!s.spec("n0").images["b"].tags[0].pin);
}

#[test]
fn a_moved_tag_rolls_its_new_digest_at_the_jobs_parallelism() {
    let mut s = resolving();
    s.node("n2", json!({}));
    s.run();
    s.registry
        .insert("nginx:1.25".into(), format!("sha256:{}", "1".repeat(64)));
    s.job(
        "j",
        "nginx:1.25",
        json!({"parallelism": 1, "completionPolicy": {"type": "Never"}}),
    );
    s.run();
    for n in ["n0", "n1", "n2"] {
        s.report(n, "Succeeded");
        s.run();
    }
    assert_eq!(s.status("j").succeeded, 3);
    let digest = |s: &Sim, n: &str| s.spec(n).images["nginx"].tags[0].digest.clone().unwrap();
    let first = format!("sha256:{}", "1".repeat(64));
    assert!(["n0", "n1", "n2"].iter().all(|n| digest(&s, n) == first));

    // A day later the tag points elsewhere: one node at a time gets the new digest.
    let moved = format!("sha256:{}", "2".repeat(64));
    s.registry.insert("nginx:1.25".into(), moved.clone());
    s.at(24 * 3600 + 1);
    s.run();
    assert_eq!(s.status("j").digest.as_deref(), Some(moved.as_str()));
    let events = s.take_events();
    let moved_event = events
        .iter()
        .find(|e| e.reason == "DigestMoved")
        .expect("an Event says the tag moved");
    assert!(moved_event.note.contains(&first) && moved_event.note.contains(&moved));
    let on_new = |s: &Sim| {
        ["n0", "n1", "n2"]
            .iter()
            .filter(|n| digest(s, n) == moved)
            .count()
    };
    assert_eq!(on_new(&s), 1, "parallelism 1");
    for round in 2..=3 {
        // Every daemon reports what its spec says; only the node on the new digest had news.
        for n in ["n0", "n1", "n2"] {
            s.report(n, "Succeeded");
        }
        s.run();
        assert_eq!(on_new(&s), round);
    }
    assert_eq!(s.status("j").digest.as_deref(), Some(moved.as_str()));
}

#[test]
fn a_job_the_manager_cannot_resolve_takes_its_first_nodes_digest() {
    let mut s = resolving();
    s.registry.insert("nginx:1.25".into(), "unreachable".into());
    s.job(
        "j",
        "nginx:1.25",
        json!({"parallelism": 1, "completionPolicy": {"type": "Never"}}),
    );
    s.run();
    let st = s.status("j");
    assert!(st.digest.is_none());
    assert!(st.digest_message.unwrap().contains("connection refused"));
    // The first node pulls the tag as it resolves it there.
    let first = s.nodes_with("nginx", "1.25");
    assert_eq!(first.len(), 1);
    assert_eq!(s.spec(&first[0]).images["nginx"].tags[0].digest, None);
    let pulled = format!("sha256:{}", "3".repeat(64));
    s.pulled_digest = Some(pulled.clone());
    s.report(&first[0], "Succeeded");
    s.run();
    let st = s.status("j");
    assert_eq!(st.digest.as_deref(), Some(pulled.as_str()));
    assert!(st.digest_message.unwrap().contains(&first[0]));
    // The next node is given that digest.
    let second: Vec<String> = s
        .nodes_with("nginx", "1.25")
        .into_iter()
        .filter(|n| *n != first[0])
        .collect();
    assert_eq!(second.len(), 1);
    assert_eq!(
        s.spec(&second[0]).images["nginx"].tags[0].digest.as_deref(),
        Some(pulled.as_str())
    );
}
