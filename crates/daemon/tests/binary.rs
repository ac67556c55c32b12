//! The kruise-daemon binary as an operator meets it: its flags, its errors, its admin server and
//! a clean stop on SIGTERM, against a real containerd.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kruise_testlab::{free_port, http_status, Lab};

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
fn no_runtime_is_an_error_that_lists_what_was_tried() {
    let dir = tempfile_dir();
    let out = Command::new(BIN)
        .args([
            "--node-name",
            "n1",
            "--metrics-addr",
            "127.0.0.1:0",
            "--host-run-dir",
            &dir,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no container runtime answered CRI v1")
            && err.contains("containerd.sock")
            && err.contains("--runtime-endpoint"),
        "{err}"
    );
}

#[test]
fn serves_health_and_metrics_and_stops_on_sigterm() {
    let lab = Lab::start().expect("lab");
    let port = free_port().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--node-name",
            "n1",
            "--runtime-endpoint",
            &lab.cri_endpoint(),
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while http_status(port, "/readyz") != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "kruise-daemon exited");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not ready within 30s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_status(port, "/healthz"), Some(200));
    assert_eq!(http_status(port, "/metrics"), Some(200));
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    deadline: Duration,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("did not exit within {deadline:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("kruise-daemon-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}
