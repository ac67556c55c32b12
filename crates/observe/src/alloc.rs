//! The executables' allocator: jemalloc, with the options kruise-manager was measured with. One
//! definition for the image's executable and the two standalone ones, so a benchmark or a test
//! of either binary runs what ships.
//!
//! jemalloc gives memory back once a burst is over (a fan-out's responses, an adoption's lists)
//! and fragments less than glibc's malloc, which kept the manager at its peak (5,000 nodes x 30
//! jobs at rest: 81 MiB against 135; see the README's benchmarks). Freed pages go back to the
//! system 30 s after their last use instead of jemalloc's 10: with 10, a 5,000-node fan-out kept
//! giving pages back and faulting them in again, which slowed the manager's rounds by half (the
//! jobs completed in 1.21x the pulls alone instead of 1.16x) for the same memory at rest.

#[doc(hidden)]
pub use tikv_jemallocator::Jemalloc;

/// jemalloc's options, as a C string (read through the `_rjem_malloc_conf` symbol).
#[doc(hidden)]
pub const MALLOC_CONF: &[u8] = b"dirty_decay_ms:30000\0";

/// Makes jemalloc, with [`MALLOC_CONF`], the global allocator of the executable that calls it
/// (once, at the crate root of a binary).
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::alloc::Jemalloc = $crate::alloc::Jemalloc;
        #[export_name = "_rjem_malloc_conf"]
        static MALLOC_CONF: &u8 = &$crate::alloc::MALLOC_CONF[0];
    };
}
