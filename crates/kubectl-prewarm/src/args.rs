//! Flags, as kubectl users expect them (`-n`, `-A`, `-o json`, `--kubeconfig`, `--context`).

use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// Image pre-warming (ImagePullJob, NodeImage) from kubectl: progress, why a node is not done,
/// what a node holds, what is pulling now.
#[derive(Debug, Parser)]
#[command(name = "kubectl-prewarm", bin_name = "kubectl prewarm", version)]
pub struct Args {
    /// Path of the kubeconfig; default: $KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Namespace of the job(s); default: the kubeconfig context's.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use; default: the current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The manager's --node-response-timeout, if not the chart's default (10m).
    #[arg(long, global = true, default_value = "10m", value_parser = parse_duration)]
    pub node_response_timeout: Duration,
    /// The manager's --nodeimage-creation-delay, if not the chart's default (30s).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub nodeimage_creation_delay: Duration,
    /// The manager's --resolve-digests, if not its default (true).
    #[arg(long, global = true, default_value_t = true, action = clap::ArgAction::Set)]
    pub resolve_digests: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Progress of jobs over their target nodes: counts, bar, bytes, throughput, ETA, digest.
    Status(StatusArgs),
    /// One row per target node of a job: phase, progress, attempts, since, last message.
    Nodes(NodesArgs),
    /// The one reason NODE does not have JOB's image (yet).
    Why(WhyArgs),
    /// What a node holds and for whom: images, tags, owner jobs, phase, pinned, sizes.
    Node(NodeArgs),
    /// What is pulling now, cluster-wide, per registry and per job.
    Top(Output),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct Output {
    /// Output format: text, or json for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct StatusArgs {
    /// Jobs to show; default: every job in the namespace.
    pub jobs: Vec<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Redraw until the jobs finish; exit 1 if any node failed.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// How often --watch reads the cluster.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Give up --watch after this long (exit 3); default: never.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct NodesArgs {
    pub job: String,
    /// Only the nodes that failed.
    #[arg(long, conflicts_with = "pulling")]
    pub failed: bool,
    /// Only the nodes pulling now.
    #[arg(long)]
    pub pulling: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct WhyArgs {
    pub job: String,
    pub node: String,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Clone, ClapArgs)]
pub struct NodeArgs {
    pub node: String,
    #[command(flatten)]
    pub output: Output,
}

/// `90s`, `10m`, `1h`, `1500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write 30s, 10m, 1h or 1500ms"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    }
}
