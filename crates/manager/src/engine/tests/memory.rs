//! What the engine holds per placed tag once a fleet has settled. The index is most of the
//! manager's memory at rest, so its size is checked here, exactly and without a cluster: an
//! allocator wrapper counts the bytes this thread holds, and dropping the engine gives them back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::*;

/// The most a settled placed tag may cost (all of the engine, divided by its tags): 448 bytes
/// when written. The index before it was made compact took about 850 (by glibc's count), which
/// at 150,000 tags is the difference between 64 and 120 MiB.
const BUDGET_PER_TAG: usize = 520;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // A thread being torn down has no counter left; nothing measured runs there.
    let _ = HELD.try_with(|h| h.set(h.get() + delta));
}

/// The system allocator, counting per thread (tests run side by side in one process).
struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; only a thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> isize {
    HELD.with(Cell::get)
}

/// `nodes` nodes, `jobs` Never jobs (half over a label, as in the fleet bench), every tag placed
/// and reported Succeeded.
fn settled(nodes: usize, jobs: usize) -> Sim {
    let mut s = Sim::cluster(nodes);
    for j in 0..jobs {
        let mut spec = json!({"parallelism": nodes, "completionPolicy": {"type": "Never"}});
        if j % 2 == 1 {
            spec["selector"] = json!({"matchLabels": {"pool": "a"}});
        }
        s.job(
            &format!("job-{j:03}"),
            &format!("registry.example.com/bench/job-{j:03}:v1"),
            spec,
        );
    }
    s.run();
    s.at(30);
    for n in 0..nodes {
        s.report(&format!("n{n}"), "Succeeded");
    }
    s.run();
    s
}

#[test]
fn a_settled_fleet_costs_little_per_placed_tag() {
    let (nodes, jobs) = (1000, 30);
    let mut s = settled(nodes, jobs);
    let sizes = s.engine.sizes();
    assert_eq!(sizes.tags, nodes * jobs / 2 + nodes / 2 * jobs / 2);
    assert_eq!(sizes.cells, sizes.tags);
    assert_eq!(sizes.planned, 0, "nothing left in flight");
    let kept = held();
    drop(std::mem::replace(&mut s.engine, Engine::new(settings())));
    let engine = (kept - held()) as usize;
    let per_tag = engine / sizes.tags;
    println!(
        "engine at rest: {nodes} nodes x {jobs} jobs, {} placed tags: {:.1} MiB, {per_tag} bytes per tag",
        sizes.tags,
        engine as f64 / (1 << 20) as f64
    );
    assert!(per_tag > 100, "the engine's memory was not counted");
    assert!(
        per_tag <= BUDGET_PER_TAG,
        "{per_tag} bytes per placed tag, over the budget of {BUDGET_PER_TAG}"
    );
}
