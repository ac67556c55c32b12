//! The project's binaries as child processes, logging to a file that a failing test prints,
//! stopped with SIGTERM (or killed) when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kruise_testlab::{free_port, http_status};

#[derive(Debug, Clone, Copy)]
pub enum Binary {
    Daemon,
    Manager,
    /// `kruise-e2e-cleanup`, which deletes a test's objects from a shared cluster.
    Cleanup,
    /// `kubectl-prewarm`, the kubectl plugin.
    Plugin,
}

impl Binary {
    fn name(self) -> &'static str {
        match self {
            Binary::Daemon => "kruise-daemon",
            Binary::Manager => "kruise-manager",
            Binary::Cleanup => "kruise-e2e-cleanup",
            Binary::Plugin => "kubectl-prewarm",
        }
    }

    /// `target/<profile>/<binary>`, next to the test executable's `deps/` directory.
    pub fn path(self) -> PathBuf {
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe
            .parent()
            .and_then(|d| {
                if d.ends_with("deps") {
                    d.parent()
                } else {
                    Some(d)
                }
            })
            .expect("target dir");
        let path = dir.join(self.name());
        assert!(
            path.exists(),
            "{} not built: run `cargo build --workspace --bins` (scripts/test does)",
            path.display()
        );
        path
    }
}

pub struct Process {
    child: Option<Child>,
    pub log: PathBuf,
    pub admin_port: u16,
    name: String,
}

/// Flags of a daemon run.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub node: String,
    pub runtime_endpoint: String,
    pub max_concurrent_pulls: u32,
    pub image_check_interval: String,
    /// `--progress-interval`: `1s` in tests, so progress shows within a short pull.
    pub progress_interval: String,
    /// More flags, as given.
    pub extra_args: Vec<String>,
}

impl DaemonOptions {
    /// A daemon for `node` on the lab's runtime, as the tests run it: 2 pulls at once, daily
    /// checks, progress every second.
    pub fn local(node: &str, runtime_endpoint: String) -> Self {
        Self {
            node: node.to_string(),
            runtime_endpoint,
            max_concurrent_pulls: 2,
            image_check_interval: "24h".into(),
            progress_interval: "1s".into(),
            extra_args: Vec::new(),
        }
    }
}

impl Process {
    pub fn spawn(
        binary: Binary,
        kubeconfig: &Path,
        args: &[String],
        log_dir: &Path,
        label: &str,
    ) -> Self {
        Self::spawn_with_env(binary, kubeconfig, args, &[], log_dir, label)
    }

    /// [`Process::spawn`] with more environment variables, such as `FAILPOINTS` (the test
    /// build's binaries inject the faults it names).
    pub fn spawn_with_env(
        binary: Binary,
        kubeconfig: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log_dir: &Path,
        label: &str,
    ) -> Self {
        let admin_port = free_port().expect("free port");
        let log = log_dir.join(format!("{label}.log"));
        let out = File::create(&log).expect("log file");
        let child = Command::new(binary.path())
            .args(args)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{admin_port}"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kruise_daemon=debug,kruise_manager=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.name()));
        Self {
            child: Some(child),
            log,
            admin_port,
            name: label.to_string(),
        }
    }

    pub fn daemon(kubeconfig: &Path, opts: &DaemonOptions, log_dir: &Path) -> Self {
        let mut args = vec![
            "--node-name".into(),
            opts.node.clone(),
            "--runtime-endpoint".into(),
            opts.runtime_endpoint.clone(),
            "--max-concurrent-pulls".into(),
            opts.max_concurrent_pulls.to_string(),
            "--image-check-interval".into(),
            opts.image_check_interval.clone(),
            "--progress-interval".into(),
            opts.progress_interval.clone(),
            // The lab's containerd keeps its images on the machine's own disk, shared with
            // everything else on it: disk-space admission is tested on a filesystem of its own
            // (tests/guarantees.rs) and off elsewhere. Later flags win.
            "--image-fs-max-percent".into(),
            "100".into(),
        ];
        args.extend(opts.extra_args.iter().cloned());
        Self::spawn(
            Binary::Daemon,
            kubeconfig,
            &args,
            log_dir,
            &format!("daemon-{}", opts.node),
        )
    }

    /// kruise-manager with no NodeImage creation delay (test Nodes are Ready from the start).
    pub fn manager(kubeconfig: &Path, log_dir: &Path, label: &str) -> Self {
        Self::manager_with(kubeconfig, log_dir, label, &[])
    }

    /// [`Process::manager`] with more flags (a later flag overrides an earlier one).
    pub fn manager_with(kubeconfig: &Path, log_dir: &Path, label: &str, extra: &[&str]) -> Self {
        Self::manager_with_env(kubeconfig, log_dir, label, extra, &[])
    }

    /// [`Process::manager_with`] with more environment variables.
    pub fn manager_with_env(
        kubeconfig: &Path,
        log_dir: &Path,
        label: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let args: Vec<String> = [
            "--nodeimage-creation-delay",
            "0s",
            "--leader-election-namespace",
            "default",
            "--leader-election-lease-duration",
            "3s",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        Self::spawn_with_env(Binary::Manager, kubeconfig, &args, env, log_dir, label)
    }

    /// Waits for `/readyz` to answer 200, failing with the log if the process exits first.
    pub async fn wait_ready(&mut self, deadline: Duration) {
        let start = Instant::now();
        loop {
            if http_status(self.admin_port, "/readyz") == Some(200) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if start.elapsed() > deadline {
                panic!(
                    "{} not ready after {deadline:?}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.admin_port))
            .await
            .expect("admin server");
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).await.unwrap();
        resp
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the exit status, within `deadline`. Async, because the in-process API server
    /// shares the test's runtime: blocking here would starve the very requests a stopping binary
    /// is finishing, and it would never exit.
    pub async fn terminate(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_exit(deadline).await
    }

    /// SIGTERM, as the kubelet stops a pod, without waiting: see [`Process::wait_exit`].
    pub fn send_sigterm(&mut self) {
        let c = self.child.as_ref().expect("running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "kill -TERM {} ({}): {sent:?}",
            c.id(),
            self.name
        );
    }

    /// The exit status once the process has exited after a [`Process::send_sigterm`], within
    /// `deadline` (SIGKILL and a failure after it).
    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if start.elapsed() > deadline {
                let _ = c.kill();
                panic!(
                    "{} did not exit within {deadline:?} of SIGTERM:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process in KiB (`VmRSS`), if it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmRSS:")
    }

    /// The most resident memory the process has had, in KiB (`VmHWM`), if it runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The exit status once the process has exited by itself.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Process {
    /// SIGKILL at once: graceful stops are tested by `terminate`, and waiting here would block the
    /// test's runtime, and with it the in-process API server the binary may be waiting for.
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
        }
    }
}
