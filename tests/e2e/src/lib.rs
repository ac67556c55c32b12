//! The process-level test harness: an API server (the project's test API server, or a real
//! cluster's when `E2E_KUBECONFIG` is set), a containerd and registries on loopback, and the real
//! `kruise-daemon` and `kruise-manager` binaries run as processes. Every wait has a deadline; every
//! process and object a test makes goes away when its handle drops.

pub mod chart;
pub mod cluster;
pub mod fake_peer;
pub mod fleet;
pub mod node;
pub mod peers;
pub mod process;
pub mod rbac;
pub mod system;
pub mod wait;
pub mod workloads;

pub use cluster::Cluster;
pub use process::{Binary, DaemonOptions, Process};
pub use system::{manifest, System, DEADLINE};
pub use wait::wait_for;
