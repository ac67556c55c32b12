//! kruise-manager: fans ImagePullJobs out into NodeImages and sums the nodes' results.

fn main() -> anyhow::Result<()> {
    kruise_manager::main(std::env::args_os())
}
