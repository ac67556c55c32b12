//! The kruise-manager binary as an operator meets it: flags, admin server, clean stop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kruise_testlab::{free_port, http_status};

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
fn serves_health_and_metrics_and_stops_on_sigterm() {
    let port = free_port().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while http_status(port, "/healthz") != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "kruise-manager exited");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not serving within 30s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_status(port, "/metrics"), Some(200));
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not stop within 10s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
