//! Command-line flags (each also settable by environment variable).

use std::net::SocketAddr;
use std::time::Duration;

/// Fans ImagePullJobs out into one NodeImage per node and sums the nodes' results.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kruise-manager", version, about)]
pub struct Args {
    /// How long a Node must have been Ready before it gets a NodeImage (so its daemon is up).
    #[arg(long, env = "KRUISE_NODEIMAGE_CREATION_DELAY", default_value = "30s", value_parser = parse_duration)]
    pub nodeimage_creation_delay: Duration,

    /// Address of the admin server: /metrics, /healthz, /readyz.
    #[arg(long, env = "KRUISE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    #[command(flatten)]
    pub log: kruise_observe::LogArgs,
}

/// `30s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration like 30s, 5m or 1h")),
    };
    Ok(Duration::from_secs(secs))
}
