//! kruise-daemon: pulls the images its node's NodeImage lists, through the runtime's CRI socket.

kruise_observe::global_allocator!();

fn main() -> anyhow::Result<()> {
    kruise_daemon::main(std::env::args_os())
}
