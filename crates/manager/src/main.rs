//! kruise-manager: fans ImagePullJobs out into NodeImages and sums the nodes' results.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kruise_manager::Args::parse();
    kruise_observe::init_logging(&args.log)?;
    kruise_manager::run(args).await
}
