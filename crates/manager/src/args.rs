//! Command-line flags (each also settable by environment variable).

use std::net::SocketAddr;
use std::time::Duration;

/// Fans ImagePullJobs out into one NodeImage per node and sums the nodes' results.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kruise-manager", version, about, args_override_self = true)]
pub struct Args {
    /// How long a Node must have been Ready before it gets a NodeImage (so its daemon is up).
    #[arg(long, env = "KRUISE_NODEIMAGE_CREATION_DELAY", default_value = "30s", value_parser = kruise_observe::parse_duration)]
    pub nodeimage_creation_delay: Duration,

    /// How long a node's daemon may stay silent about a tag before the node counts as failed.
    #[arg(long, env = "KRUISE_NODE_RESPONSE_TIMEOUT", default_value = "10m", value_parser = kruise_observe::parse_duration)]
    pub node_response_timeout: Duration,

    /// The longest a job's next node waits for the other jobs that want it, so they reach it in
    /// one write (jobs created together then write each node once). A job waits a quarter of its
    /// own pulls' time at most (2 s before its first pull finished); `0s` places at once.
    #[arg(long, env = "KRUISE_PLACEMENT_WINDOW", default_value = "10s", value_parser = kruise_observe::parse_duration)]
    pub placement_window: Duration,

    /// The least time between two status writes of one job (a completion is written at once).
    #[arg(long, env = "KRUISE_STATUS_INTERVAL", default_value = "5s", value_parser = kruise_observe::parse_duration)]
    pub status_interval: Duration,

    /// Pre-download the new images of a rolling workload onto the nodes of its pods still to
    /// update: OpenKruise's CloneSet, Advanced StatefulSet and Advanced DaemonSet (while their
    /// CRDs are installed), and Deployments, StatefulSets and DaemonSets annotated
    /// `apps.kruise.io/image-predownload: "true"`.
    #[arg(long, env = "KRUISE_IMAGE_PREDOWNLOAD", default_value_t = true, action = clap::ArgAction::Set)]
    pub image_predownload: bool,

    /// Pre-download for every Deployment, StatefulSet and DaemonSet, not only annotated ones
    /// (a workload annotated `apps.kruise.io/image-predownload: "false"` still opts out).
    #[arg(long, env = "KRUISE_IMAGE_PREDOWNLOAD_ALL_WORKLOADS", default_value_t = false, action = clap::ArgAction::Set)]
    pub image_predownload_all_workloads: bool,

    /// How often to look for OpenKruise's workload CRDs being installed or removed.
    #[arg(long, env = "KRUISE_PREDOWNLOAD_DISCOVERY_INTERVAL", default_value = "10s", value_parser = kruise_observe::parse_duration)]
    pub predownload_discovery_interval: Duration,

    /// Manage only the NodeImages of the Nodes this label selector matches (`pool=gpu`,
    /// `!canary`, `tier in (a,b)`), so installations can share a cluster by node; jobs then
    /// target only these nodes. Empty: every node. Two managers must never manage one node.
    #[arg(long, env = "KRUISE_NODE_SELECTOR", default_value = "")]
    pub node_selector: String,

    /// Handle only the ImagePullJobs and ImageListPullJobs of this namespace (and its pods and
    /// pull secrets), so installations can share a cluster by namespace. Empty: every namespace.
    #[arg(long, env = "KRUISE_JOB_NAMESPACE", default_value = "")]
    pub job_namespace: String,

    /// Elect one leader among replicas through a Lease; only the leader writes.
    #[arg(long, env = "KRUISE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease (the manager's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kruise-system")]
    pub leader_election_namespace: String,

    /// Name of the leader-election Lease: replicas with the same name elect one leader.
    #[arg(
        long,
        env = "KRUISE_LEADER_ELECTION_ID",
        default_value = "kruise-manager"
    )]
    pub leader_election_id: String,

    /// How long a leader's claim holds without renewal.
    #[arg(long, env = "KRUISE_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = kruise_observe::parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// How long the engine's round (and its hand-over of writes) or the writer's queue may go without progress while work is pending before the process
    /// counts itself stalled: it then fails /healthz, says why, and exits non-zero (restarted by
    /// the kubelet, relieved by the standby).
    #[arg(long, env = "KRUISE_STALL_TIMEOUT", default_value = "2m", value_parser = kruise_observe::parse_duration)]
    pub stall_timeout: Duration,

    /// Address of the admin server: /metrics, /healthz, /readyz.
    #[arg(long, env = "KRUISE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Resolve each job's tag to a digest once (a manifest HEAD with the job's pull secrets) and
    /// have every node pull exactly that digest; `false`: every node resolves the tag itself.
    #[arg(long, env = "KRUISE_RESOLVE_DIGESTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub resolve_digests: bool,

    /// How often a `Never` job's tag is resolved again; when it moved, the new digest rolls across
    /// the nodes at the job's parallelism, and an Event says from which digest to which.
    #[arg(long, env = "KRUISE_DIGEST_CHECK_INTERVAL", default_value = "24h", value_parser = kruise_observe::parse_duration)]
    pub digest_check_interval: Duration,

    /// Registries (`host[:port]`) spoken to over plain HTTP when resolving digests, besides
    /// loopback ones; comma-separated.
    #[arg(long, env = "KRUISE_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,

    /// The port the daemons serve image blobs to their peers on (the daemon's own flag of that
    /// name). Set, each pull that starts names up to three nodes holding the image to copy from,
    /// and the registry serves only each image's first nodes; `0`: every node pulls from the
    /// registry, as OpenKruise does.
    #[arg(long, env = "KRUISE_PEER_PORT", default_value_t = 0)]
    pub peer_port: u16,

    /// With `--peer-port`: how many nodes may pull one registry host's images from the registry
    /// at once, cluster-wide (the rest copy from them, or wait for them).
    #[arg(long, env = "KRUISE_REGISTRY_BUDGET", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub registry_budget: u32,

    /// With `--peer-port`: how many nodes one node serves image blobs to at once.
    #[arg(long, env = "KRUISE_PEER_FANOUT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub peer_fanout: u32,

    #[command(flatten)]
    pub log: kruise_observe::LogArgs,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Args;

    #[test]
    fn peers_are_off_unless_a_port_is_given() {
        let a = Args::try_parse_from(["kruise-manager"]).unwrap();
        assert_eq!((a.peer_port, a.registry_budget, a.peer_fanout), (0, 3, 2));
        let a =
            Args::try_parse_from(["m", "--peer-port", "9090", "--registry-budget", "1"]).unwrap();
        assert_eq!((a.peer_port, a.registry_budget), (9090, 1));
        // A budget or a fan-out of 0 would leave images waiting for ever.
        assert!(Args::try_parse_from(["m", "--registry-budget", "0"]).is_err());
        assert!(Args::try_parse_from(["m", "--peer-fanout", "0"]).is_err());
    }
}
