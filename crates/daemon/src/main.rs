//! kruise-daemon: pulls the images its node's NodeImage lists, through the runtime's CRI socket.

fn main() -> anyhow::Result<()> {
    kruise_daemon::main(std::env::args_os())
}
