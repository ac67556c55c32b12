//! kruise-daemon: pulls the images its node's NodeImage lists, through the runtime's CRI socket.

/// The allocator of the image's executable, which the daemon shares with kruise-manager (see
/// `crates/kruise`), so this binary behaves as the shipped one does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// The image's executable's jemalloc options (see `crates/kruise/src/main.rs` for why).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 = &b"dirty_decay_ms:30000\0"[0];

fn main() -> anyhow::Result<()> {
    kruise_daemon::main(std::env::args_os())
}
