//! A registry's rate limit holds every tag of its host (crate::registry_gate): the tag says
//! until when, a second tag of the host makes no attempt meanwhile, and a rate-limited attempt
//! counts as one of the tag's attempts.

use super::*;
use crate::registry_gate::INITIAL_BACKOFF;

const LIMITED: &str = "failed to resolve reference \"registry.example.com/app:v1\": pulling from host registry.example.com failed with status code [manifests v1]: 429 Too Many Requests";

/// Statuses of `tags` until each is final, by tag.
async fn until_all_final(h: &mut Harness, tags: &[&str]) -> HashMap<String, Vec<ImageTagStatus>> {
    let mut seen: HashMap<String, Vec<ImageTagStatus>> = HashMap::new();
    let done = |seen: &HashMap<String, Vec<ImageTagStatus>>, t: &str| {
        seen.get(t)
            .and_then(|s| s.last())
            .is_some_and(|s| matches!(s.phase, TagPhase::Succeeded | TagPhase::Failed))
    };
    while !tags.iter().all(|t| done(&seen, t)) {
        let update = tokio::time::timeout(Duration::from_secs(600), h.rx.recv())
            .await
            .expect("a status within the deadline")
            .expect("open");
        if let StatusUpdate::Tag {
            key,
            status: Some(s),
        } = update
        {
            seen.entry(key.1).or_default().push(s);
        }
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_holds_every_tag_of_the_host_until_it_ends() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().extend([
        Outcome::Err(CriErrorKind::RateLimited, LIMITED),
        Outcome::Ok("sha256:a"),
        Outcome::Ok("sha256:b"),
    ]);
    let start = tokio::time::Instant::now();
    let _a = spawn(h.ctx.clone(), task("v1"), None);
    // v1 is limited; its message says by which host and until when.
    let waiting = loop {
        let Some(StatusUpdate::Tag {
            status: Some(s), ..
        }) = h.rx.recv().await
        else {
            continue;
        };
        if s.message.as_deref().is_some_and(|m| {
            m.starts_with("rate-limited by the registry registry.example.com, retrying at ")
        }) {
            break s;
        }
    };
    let at = waiting
        .message
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let at: k8s_openapi::jiff::Timestamp = at.parse().expect("an RFC 3339 time");
    let wall_now = k8s_openapi::jiff::Timestamp::try_from(h.ctx.clock.now()).unwrap();
    let ahead = (at - wall_now).get_seconds();
    assert!((6..=13).contains(&ahead), "retrying {ahead}s from now");

    // A second tag of the same host arrives meanwhile: it waits, saying so, without a pull.
    let _b = spawn(h.ctx.clone(), task("v2"), None);
    let seen = until_all_final(&mut h, &["v1", "v2"]).await;
    let b = &seen["v2"];
    assert!(
        b.iter().any(|s| s.phase == TagPhase::Waiting
            && s.message.as_deref().is_some_and(
                |m| m.starts_with("rate-limited by the registry registry.example.com")
            )),
        "{b:?}"
    );
    assert_eq!(b.last().unwrap().phase, TagPhase::Succeeded);
    assert_eq!(seen["v1"].last().unwrap().phase, TagPhase::Succeeded);
    assert_eq!(
        h.runtime.pulls.load(Ordering::SeqCst),
        3,
        "one limited attempt, then one each"
    );
    assert!(
        start.elapsed() >= INITIAL_BACKOFF.mul_f64(0.8),
        "{:?}",
        start.elapsed()
    );
    let attempts = |result: &str| {
        h.ctx
            .metrics
            .attempts
            .get_or_create(&crate::metrics::ResultLabels {
                result: result.into(),
            })
            .get()
    };
    assert_eq!((attempts("rate_limited"), attempts("succeeded")), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_attempts_count_against_the_backoff_limit() {
    let mut h = harness(2);
    h.runtime.script.lock().unwrap().extend([
        Outcome::Err(CriErrorKind::RateLimited, LIMITED),
        Outcome::Err(CriErrorKind::RateLimited, LIMITED),
        Outcome::Ok("sha256:never"),
    ]);
    let start = tokio::time::Instant::now();
    let _w = spawn(
        h.ctx.clone(),
        TagTask {
            backoff_limit: 1,
            ..task("v1")
        },
        None,
    );
    let done = h.until_final("v1").await.pop().unwrap();
    assert_eq!(done.phase, TagPhase::Failed);
    let msg = done.message.unwrap();
    assert!(
        msg.starts_with("failed after 2 attempts: rate-limited by the registry: ")
            && msg.ends_with("429 Too Many Requests"),
        "{msg}"
    );
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 2);
    // The second attempt waited for the host's backoff, not only the tag's own 1 s.
    assert!(
        start.elapsed() >= INITIAL_BACKOFF.mul_f64(0.8),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_inside_the_backoff_fails_the_tag_at_its_deadline() {
    let mut h = harness(2);
    h.runtime
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::Err(CriErrorKind::RateLimited, LIMITED));
    let start = tokio::time::Instant::now();
    let _w = spawn(
        h.ctx.clone(),
        TagTask {
            deadline: Some(h.ctx.clock.now() + Duration::from_secs(4)),
            ..task("v1")
        },
        None,
    );
    let done = h.until_final("v1").await.pop().unwrap();
    assert_eq!(done.phase, TagPhase::Failed);
    assert!(
        done.message
            .as_deref()
            .unwrap()
            .contains("activeDeadlineSeconds"),
        "{done:?}"
    );
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 1);
    assert!(
        start.elapsed() <= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
