//! kruise-manager: fans ImagePullJobs out into NodeImages and sums the nodes' results.

kruise_observe::global_allocator!();

fn main() -> anyhow::Result<()> {
    kruise_manager::main(std::env::args_os())
}
