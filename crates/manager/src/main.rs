//! kruise-manager: fans ImagePullJobs out into NodeImages and sums the nodes' results.

/// jemalloc gives memory back once a burst is over (a fan-out's responses, an adoption's lists)
/// and fragments less than glibc's malloc, which kept the process at its peak (5,000 nodes x 30
/// jobs at rest: 81 MiB against 135; see the README's benchmarks). As in the image's executable.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// The image's executable's jemalloc options (see `crates/kruise/src/main.rs` for why).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 = &b"dirty_decay_ms:30000\0"[0];

fn main() -> anyhow::Result<()> {
    kruise_manager::main(std::env::args_os())
}
