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
    stored["status"] = json!({"desired": 0, "digestMessage": "unreachable"});
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
