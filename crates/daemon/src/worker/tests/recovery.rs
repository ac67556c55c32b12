//! How a worker recovers: failed tags tried again sooner than the daily check and quietly, a
//! changed entry reaching a failed tag at once, a restarting runtime that does not use up
//! retries, and a failed re-pull that does not hide an image still on the node.

use super::*;

/// Drains what was reported so far without waiting.
fn reported(h: &mut Harness) -> Vec<ImageTagStatus> {
    let mut out = Vec::new();
    while let Ok(update) = h.rx.try_recv() {
        if let StatusUpdate::Tag {
            status: Some(s), ..
        } = update
        {
            out.push(s);
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_failed_tag_is_tried_again_within_minutes_and_quietly() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().extend([
        Outcome::Err(CriErrorKind::NotFound, "x: not found"),
        Outcome::Err(CriErrorKind::NotFound, "x: not found"),
        Outcome::Ok("sha256:late"),
    ]);
    let started = tokio::time::Instant::now();
    let _w = spawn(h.ctx.clone(), task("v1"), None);
    assert_eq!(
        h.until_final("v1").await.pop().unwrap().phase,
        TagPhase::Failed
    );
    // The second try (about 1 min later) fails too: nothing new is reported.
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 2, "tried again");
    assert!(
        reported(&mut h).is_empty(),
        "a failure again writes nothing"
    );
    // The image appears in the registry; the third try (about 2 min after the second) pulls it,
    // well before the hourly check interval.
    let done = h.until_final("v1").await;
    assert_eq!(
        phases(&done),
        [TagPhase::Succeeded],
        "only the new outcome is reported"
    );
    assert_eq!(
        done[0].image_id.as_deref(),
        Some("registry.example.com/app@sha256:late")
    );
    assert!(started.elapsed() < Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn a_changed_entry_reaches_a_failed_tag_at_once() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().extend([
        Outcome::Err(CriErrorKind::Unauthorized, "401 Unauthorized"),
        Outcome::Ok("sha256:private"),
    ]);
    let w = spawn(h.ctx.clone(), task("v1"), None);
    assert_eq!(
        h.until_final("v1").await.pop().unwrap().phase,
        TagPhase::Failed
    );
    let fixed_at = tokio::time::Instant::now();
    let mut with_secret = task("v1");
    with_secret.pull_secrets = vec![kruise_api::ReferenceObject {
        namespace: Some("kruise-daemon-config".into()),
        name: Some("reg-abc123".into()),
        mode: Some("batch".into()),
    }];
    w.update(with_secret.clone());
    let done = h.until_final("v1").await.pop().unwrap();
    assert_eq!(done.phase, TagPhase::Succeeded);
    assert!(
        fixed_at.elapsed() < Duration::from_secs(10),
        "retried when the secret arrived, not at the next retry"
    );
    assert_eq!(w.task(), with_secret, "the worker holds the new entry");
}

#[tokio::test(start_paused = true)]
async fn a_restarting_runtime_does_not_use_up_retries() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().extend([
        Outcome::Err(CriErrorKind::RuntimeUnavailable, "connection refused"),
        Outcome::Err(CriErrorKind::RuntimeUnavailable, "connection refused"),
        Outcome::Err(CriErrorKind::RuntimeUnavailable, "connection refused"),
        Outcome::Err(CriErrorKind::RuntimeUnavailable, "connection refused"),
        Outcome::Err(CriErrorKind::RuntimeUnavailable, "connection refused"),
        Outcome::Ok("sha256:back"),
    ]);
    let one_attempt = TagTask {
        backoff_limit: 0,
        ..task("v1")
    };
    let _w = spawn(h.ctx.clone(), one_attempt, None);
    let seen = h.until_final("v1").await;
    assert_eq!(seen.last().unwrap().phase, TagPhase::Succeeded);
    assert!(
        seen.iter().any(|s| s
            .message
            .as_deref()
            .is_some_and(|m| m.contains("waiting for the container runtime"))),
        "the wait is explained: {seen:?}"
    );
    assert!(h.events.failed.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_repull_of_a_present_image_keeps_it_succeeded() {
    let mut h = harness(2);
    let always = TagTask {
        policy: ImagePullPolicy::Always,
        backoff_limit: 1,
        ..task("v1")
    };
    let _w = spawn(h.ctx.clone(), always, None);
    assert_eq!(
        h.until_final("v1").await.pop().unwrap().phase,
        TagPhase::Succeeded
    );
    h.runtime.script.lock().unwrap().extend([
        Outcome::Err(CriErrorKind::RegistryUnreachable, "connection refused"),
        Outcome::Err(CriErrorKind::RegistryUnreachable, "connection refused"),
    ]);
    // The hourly Always re-pull meets a registry outage; the image is still on the node.
    tokio::time::sleep(Duration::from_secs(4000)).await;
    assert_eq!(
        h.runtime.pulls.load(Ordering::SeqCst),
        3,
        "re-pulled, twice"
    );
    assert!(
        reported(&mut h).is_empty(),
        "the status stays Succeeded: the image is there"
    );
    assert!(h.events.failed.lock().unwrap().is_empty(), "and no alarm");
}

#[tokio::test(start_paused = true)]
async fn a_tag_failed_past_its_deadline_waits_for_a_new_entry() {
    let mut h = harness(2);
    h.runtime
        .script
        .lock()
        .unwrap()
        .extend([Outcome::Hang, Outcome::Ok("sha256:later")]);
    let deadline = h.ctx.clock.now() + Duration::from_secs(5);
    let bounded = TagTask {
        deadline: Some(deadline),
        ..task("v1")
    };
    let w = spawn(h.ctx.clone(), bounded.clone(), None);
    assert_eq!(
        h.until_final("v1").await.pop().unwrap().phase,
        TagPhase::Failed
    );
    // No timer brings it back: the deadline is over (as when the manager closes a tag).
    tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 1, "not tried again");
    // A later deadline in the entry is a reason to try again.
    w.update(TagTask {
        deadline: Some(deadline + Duration::from_secs(86_400)),
        ..bounded
    });
    assert_eq!(
        h.until_final("v1").await.pop().unwrap().phase,
        TagPhase::Succeeded
    );
}
