//! kruise-daemon: pulls the images its node's NodeImage lists, through the runtime's CRI socket.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kruise_daemon::Args::parse();
    kruise_observe::init_logging(&args.log)?;
    kruise_daemon::run(args).await
}
