//! Runs the test API server until SIGTERM or SIGINT, for scripts and the local demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// A small, strict Kubernetes API server for tests and the local demo (plain HTTP, no auth).
#[derive(Debug, Parser)]
#[command(name = "kruise-test-apiserver", version, about)]
struct Args {
    /// Where to listen; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directories of CRD YAML to install at start (e.g. config/crd).
    #[arg(long = "crd-dir")]
    crd_dirs: Vec<PathBuf>,
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    log: kruise_observe::LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    kruise_observe::init_logging(&args.log)?;
    let dirs: Vec<&std::path::Path> = args.crd_dirs.iter().map(PathBuf::as_path).collect();
    let server =
        kruise_test_apiserver::TestApiServer::start(args.listen, &dirs, Some(&args.kubeconfig))
            .await?;
    println!(
        "kruise-test-apiserver listening on {} (kubeconfig {})",
        server.url(),
        server.kubeconfig().display()
    );
    kruise_observe::shutdown_on_signal().cancelled().await;
    Ok(())
}
