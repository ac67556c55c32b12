//! Progress while a pull runs: sampled every progress interval, reported when it changed, 100
//! only with the result, and nothing sampled in quiet rounds.

use super::*;

#[tokio::test(start_paused = true)]
async fn progress_is_reported_as_it_changes_then_100_with_the_result() {
    let mut h = harness(2);
    h.runtime
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::Slow(Duration::from_secs(9), "sha256:big"));
    // Sampled every 2 s: at 2, 4, 6 and 8 s.
    h.runtime.progress.lock().unwrap().extend([10, 40, 40, 70]);
    let _w = spawn(h.ctx.clone(), task("v1"), None);
    let seen = h.until_final("v1").await;
    let pulling: Vec<i32> = seen
        .iter()
        .filter(|s| s.phase == TagPhase::Pulling)
        .map(|s| s.progress)
        .collect();
    assert_eq!(pulling, [0, 10, 40, 70], "one report per change");
    let done = seen.last().unwrap();
    assert_eq!((done.phase, done.progress), (TagPhase::Succeeded, 100));
}

#[tokio::test(start_paused = true)]
async fn quiet_rounds_sample_no_progress() {
    let mut h = harness(2);
    let always = TagTask {
        policy: ImagePullPolicy::Always,
        ..task("v1")
    };
    let _w = spawn(h.ctx.clone(), always, None);
    assert_eq!(
        h.until_final("v1").await.pop().unwrap().phase,
        TagPhase::Succeeded
    );
    h.runtime
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::Slow(Duration::from_secs(9), "sha256:again"));
    h.runtime.progress.lock().unwrap().extend([10, 20, 30, 40]);
    // The hourly Always re-pull runs quietly: no progress sampled, nothing reported.
    tokio::time::sleep(Duration::from_secs(4000)).await;
    assert_eq!(h.runtime.pulls.load(Ordering::SeqCst), 2);
    assert_eq!(h.runtime.progress.lock().unwrap().len(), 4, "never sampled");
    let mut reported = 0;
    while let Ok(StatusUpdate::Tag { .. }) = h.rx.try_recv() {
        reported += 1;
    }
    assert_eq!(reported, 1, "only the changed image ID of the re-pull");
}
