//! Command-line flags (each also settable by environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Pulls the images listed in this node's NodeImage through the container runtime's CRI socket.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kruise-daemon", version, about, args_override_self = true)]
pub struct Args {
    /// This node's name; the daemon reads and writes only the NodeImage of that name.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// The runtime's CRI socket, e.g. unix:///run/containerd/containerd.sock. Without it the
    /// daemon probes containerd, CRI-O and cri-dockerd sockets under --host-run-dir.
    #[arg(long, env = "KRUISE_RUNTIME_ENDPOINT")]
    pub runtime_endpoint: Option<String>,

    /// Where the host's /var/run is mounted.
    #[arg(long, env = "KRUISE_HOST_RUN_DIR", default_value = "/hostvarrun")]
    pub host_run_dir: PathBuf,

    /// Most image pulls running at once on this node; the rest wait.
    #[arg(long, env = "KRUISE_MAX_CONCURRENT_PULLS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_pulls: u32,

    /// How often a pulled image is checked for presence (and re-pulled if gone, or always for
    /// `imagePullPolicy: Always`), with ±10% jitter: `24h`, `30m`, `90s`.
    #[arg(long, env = "KRUISE_IMAGE_CHECK_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    pub image_check_interval: std::time::Duration,

    /// How often a pull's byte progress is read from containerd's content store and, when it
    /// changed, reported in the tag's status; `0s` reports phases only. Each report is a status
    /// write, so at thousands of nodes pulling at once keep this at tens of seconds.
    #[arg(long, env = "KRUISE_PROGRESS_INTERVAL", default_value = "30s", value_parser = kruise_observe::parse_duration)]
    pub progress_interval: std::time::Duration,

    /// How long the status writer's queue may go without progress while work is pending before the process
    /// counts itself stalled: it then fails /healthz, says why, and exits non-zero (restarted by
    /// the kubelet, relieved by the standby).
    #[arg(long, env = "KRUISE_STALL_TIMEOUT", default_value = "2m", value_parser = kruise_observe::parse_duration)]
    pub stall_timeout: std::time::Duration,

    /// Pin the images that tags ask to pin (a `Never` job's, or a job annotated
    /// `imagepulljobs.kruise.io/pin: "true"`) so that the kubelet's image GC keeps them;
    /// `false` turns pinning off on this node (pins this daemon made are withdrawn).
    #[arg(long, env = "KRUISE_PIN_IMAGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub pin_images: bool,

    /// Start no pull that would take the image filesystem above this percentage of its capacity
    /// (the kubelet's image GC starts at 85% by default); 100 turns the check off.
    #[arg(long, env = "KRUISE_IMAGE_FS_MAX_PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub image_fs_max_percent: u8,

    /// The image filesystem to watch for disk-space admission; by default the mountpoint the
    /// runtime's ImageFsInfo names (mounted read-only into the daemon's pod at the same path).
    #[arg(long, env = "KRUISE_IMAGE_FS_PATH")]
    pub image_fs_path: Option<PathBuf>,

    /// How often a pull waiting for disk space looks again.
    #[arg(long, env = "KRUISE_IMAGE_FS_RECHECK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub image_fs_recheck_interval: std::time::Duration,

    /// Registries (`host[:port]`) spoken to over plain HTTP when reading manifests, besides
    /// loopback ones; comma-separated.
    #[arg(long, env = "KRUISE_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,

    /// Port this daemon serves the blobs of the images it holds on, to the other daemons (which
    /// copy from it instead of the registry when the manager names it as a source); 0: serve
    /// nothing. The manager's --peer-port must be the same.
    #[arg(long, env = "KRUISE_PEER_PORT", default_value_t = 0)]
    pub peer_port: u16,

    /// Address the peer blob server binds (with --peer-port).
    #[arg(long, env = "KRUISE_PEER_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub peer_bind_address: std::net::IpAddr,

    /// The projected service-account token this daemon presents to peers (audience
    /// --peer-audience); the kubelet rotates it, so it is read anew for each copy.
    #[arg(
        long,
        env = "KRUISE_PEER_TOKEN_FILE",
        default_value = "/var/run/secrets/kruise.io/peer/token"
    )]
    pub peer_token_file: PathBuf,

    /// The audience peers' tokens must carry (checked by TokenReview).
    #[arg(
        long,
        env = "KRUISE_PEER_AUDIENCE",
        default_value = "kruise-daemon-peer"
    )]
    pub peer_audience: String,

    /// Service accounts (`namespace:name`, comma-separated) whose tokens may read blobs: the
    /// daemons of this installation.
    #[arg(long, env = "KRUISE_PEER_SERVICE_ACCOUNTS", value_delimiter = ',')]
    pub peer_service_accounts: Vec<String>,

    /// Blobs served to peers at once; more callers wait up to 5 s, then try another source.
    #[arg(long, env = "KRUISE_PEER_MAX_UPLOADS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub peer_max_uploads: u32,

    /// Bytes per second served to peers in all; 0: no limit.
    #[arg(long, env = "KRUISE_PEER_UPLOAD_BYTES_PER_SECOND", default_value_t = 0)]
    pub peer_upload_bytes_per_second: u64,

    /// A peer sending slower than this (after its first 5 s) is dropped for the blob, and the
    /// next source is tried; 0: no minimum.
    #[arg(long, env = "KRUISE_PEER_MIN_BYTES_PER_SECOND", default_value_t = 1 << 20)]
    pub peer_min_bytes_per_second: u64,

    /// Address of the admin server: /metrics, /healthz, /readyz.
    #[arg(long, env = "KRUISE_METRICS_ADDR", default_value = "0.0.0.0:10221")]
    pub metrics_addr: SocketAddr,

    #[command(flatten)]
    pub log: kruise_observe::LogArgs,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = kruise_observe::parse_duration(s)?;
    if d.is_zero() {
        return Err("the interval must be at least 1s".into());
    }
    Ok(d)
}
