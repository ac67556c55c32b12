//! The kruise-daemon binary's command line as an operator meets it: its flags and the errors of
//! bad ones. (Its stop on SIGTERM, its admin server and its pulls through a real containerd are in
//! `tests/e2e/tests/daemon.rs`, which runs it as a process.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kruise-daemon");

#[test]
fn help_lists_the_flags() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--node-name",
        "--runtime-endpoint",
        "--host-run-dir",
        "--max-concurrent-pulls",
        "--progress-interval",
        "--metrics-addr",
        "--log-level",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_missing_node_name_is_a_clear_error() {
    let out = Command::new(BIN).env_remove("NODE_NAME").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-name"));
}

#[test]
fn without_an_api_server_it_says_how_to_reach_one() {
    let out = Command::new(BIN)
        .args(["--node-name", "n1", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connecting to the Kubernetes API (in-cluster or KUBECONFIG)"),
        "{err}"
    );
}
