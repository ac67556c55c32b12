//! The kruise-manager binary as an operator meets it: flags, admin server, clean stop.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kruise-manager");

#[test]
fn help_lists_the_flags() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--nodeimage-creation-delay",
        "--metrics-addr",
        "--log-level",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn a_bad_duration_names_the_flag() {
    let out = Command::new(BIN)
        .args(["--nodeimage-creation-delay", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--nodeimage-creation-delay") && err.contains("like 90s"),
        "{err}"
    );
}

#[test]
fn without_an_api_server_it_says_how_to_reach_one() {
    let out = Command::new(BIN)
        .args(["--metrics-addr", "127.0.0.1:0"])
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
