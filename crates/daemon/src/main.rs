//! kruise-daemon: pulls the images its node's NodeImage lists, through the runtime's CRI socket.

/// The allocator of the image's executable, which the daemon shares with kruise-manager (see
/// `crates/kruise`), so this binary behaves as the shipped one does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    kruise_daemon::main(std::env::args_os())
}
