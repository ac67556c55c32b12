//! A simulated fleet for benchmarks of kruise-manager at scale, driving the test API server:
//! Nodes with kubelet heartbeats, pods churning, and one simulated kruise-daemon per node
//! ([`daemons`]), plus the figures a benchmark reads ([`measure`]). `benches/fleet.rs` runs the
//! scenarios.

pub mod apiserver;
pub mod daemons;
pub mod measure;
pub mod nodes;
