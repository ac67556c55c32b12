//! The container image as a node runs it. `scripts/image` builds it (`scripts/test` does so before
//! the tests); here it is pushed to the lab's registry, pulled through CRI into the lab's
//! containerd (the daemon's own pull path), and run with containerd's own runner (`ctr run`).
//! The archive itself is held to the README's size budget and a non-root default user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::Cluster;
use kruise_api::TagPhase;
use kruise_testlab::{free_port, http_status, Lab, Layer};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

/// The archive `scripts/image` wrote: `KRUISE_IMAGE_ARCHIVE`, else its default output.
fn archive() -> PathBuf {
    let path = std::env::var_os("KRUISE_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/image/kruise.oci.tar")
        });
    assert!(
        path.exists(),
        "{} does not exist: build the image first with `scripts/image` (`scripts/test` does)",
        path.display()
    );
    path
}

/// `ctr` on the lab's containerd, in the namespace the CRI plugin pulls into.
fn ctr(lab: &Lab) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address")
        .arg(lab.containerd.socket())
        .args(["--namespace", "k8s.io"]);
    c
}

fn run(mut cmd: Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn container_id(what: &str) -> String {
    format!("kruise-image-{what}-{}", std::process::id())
}

/// Pushes the archive to the lab registry and pulls it through CRI; returns its reference.
async fn pull_into_containerd(lab: &Lab) -> String {
    let reference = format!("{}/kruise:under-test", lab.registry.host());
    let mut push = Command::new("skopeo");
    push.args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive().display()))
        .arg(format!("docker://{reference}"));
    run(push);
    let cri = kruise_cri::detect(Some(&lab.cri_endpoint()), Path::new("/none"))
        .await
        .expect("lab containerd answers CRI")
        .client;
    let request = kruise_cri::PullRequest {
        image: reference.clone(),
        auth: None,
        labels: Default::default(),
        annotations: Default::default(),
    };
    cri.pull_image(request, Some(MINUTE))
        .await
        .expect("the image pulls through CRI");
    reference
}

/// A daemon container: the image's root file system, mounted writable by containerd, run as
/// root as the DaemonSet runs it, on the host network, the runtime's directory at /hostvarrun.
struct DaemonContainer<'a> {
    lab: &'a Lab,
    id: String,
    rootfs: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl DaemonContainer<'_> {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, port: u16) {
        let start = Instant::now();
        while http_status(port, "/readyz") != Some(200) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the daemon container exited with {status}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < MINUTE,
                "the daemon container was not ready within a minute:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM to the task, as the kubelet stops it; returns once `ctr run` has exited.
    async fn terminate(&mut self) {
        let mut kill = ctr(self.lab);
        kill.args(["task", "kill", "--signal", "SIGTERM", &self.id]);
        run(kill);
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        while child.try_wait().ok().flatten().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the daemon container did not stop within 15s of SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = None;
    }
}

impl Drop for DaemonContainer<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let mut kill = ctr(self.lab);
            kill.args(["task", "kill", "--signal", "SIGKILL", &self.id]);
            let _ = kill.output();
            let _ = c.kill();
            let _ = c.wait();
            let mut rm = ctr(self.lab);
            rm.args(["container", "rm", &self.id]);
            let _ = rm.output();
        }
        let mut unmount = ctr(self.lab);
        unmount
            .args(["images", "unmount", "--rm"])
            .arg(self.rootfs.path());
        let _ = unmount.output();
        if std::thread::panicking() {
            eprintln!("---- daemon container log ----\n{}", self.log_text());
        }
    }
}

fn start_daemon_container<'a>(
    lab: &'a Lab,
    reference: &str,
    kubeconfig: &Path,
    node: &str,
    port: u16,
    logs: &Path,
) -> DaemonContainer<'a> {
    let rootfs = tempfile::tempdir().unwrap();
    let mut mount = ctr(lab);
    mount
        .args(["images", "mount", "--rw", reference])
        .arg(rootfs.path());
    run(mount);
    let id = container_id("daemon");
    let runtime_dir = lab.containerd.socket().parent().unwrap().to_path_buf();
    let log = logs.join("daemon-container.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = ctr(lab);
    cmd.args(["run", "--rm", "--rootfs", "--net-host"])
        .arg("--mount")
        .arg(format!(
            "type=bind,src={},dst=/hostvarrun,options=rbind:ro",
            runtime_dir.display()
        ))
        .arg("--mount")
        .arg(format!(
            "type=bind,src={},dst=/kubeconfig,options=rbind:ro",
            kubeconfig.display()
        ))
        .args(["--env", "KUBECONFIG=/kubeconfig"])
        .args(["--env", &format!("NODE_NAME={node}")])
        .arg(rootfs.path())
        .arg(&id)
        .args([
            "/kruise-daemon",
            "--log-format",
            "json",
            "--progress-interval",
            "1s",
        ])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    DaemonContainer {
        lab,
        id,
        rootfs,
        child: Some(child),
        log,
    }
}

/// The JSON log lines of a run, failing on any line that is not JSON.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("--log-format json wrote a line that is not JSON ({e}): {l}")
            })
        })
        .collect()
}

/// `skopeo inspect --raw` of the archive, with `extra` flags, as JSON.
fn inspect_archive(extra: &[&str]) -> (Vec<u8>, Value) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"])
        .args(extra)
        .arg(format!("oci-archive:{}", archive().display()));
    let raw = run(cmd).stdout;
    let json = serde_json::from_slice(&raw).unwrap_or_else(|e| {
        panic!(
            "skopeo inspect {extra:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&raw)
        )
    });
    (raw, json)
}

/// The README's budget for what a node downloads: the manifest, the config and the layers.
const SIZE_BUDGET: u64 = 10 << 20;

/// What a node downloads stays within the README's 10 MiB, and the image does not run as root
/// by default (the manager's pod runs with it; only the daemon's asks for root).
#[test]
fn the_image_stays_within_its_size_budget_and_runs_as_non_root() {
    let (manifest_bytes, manifest) = inspect_archive(&[]);
    assert!(
        manifest["layers"].is_array(),
        "the archive's manifest is not a single image manifest: {manifest}"
    );
    let blob_size = |d: &Value| {
        d["size"]
            .as_u64()
            .unwrap_or_else(|| panic!("a descriptor without a size: {d}"))
    };
    let layers: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(blob_size)
        .sum();
    let size = manifest_bytes.len() as u64 + blob_size(&manifest["config"]) + layers;
    println!(
        "the image is {size} bytes compressed ({:.2} MiB)",
        size as f64 / 1048576.0
    );
    assert!(
        size <= SIZE_BUDGET,
        "the image is {size} bytes compressed ({:.2} MiB), over the README's 10 MiB budget",
        size as f64 / 1048576.0
    );

    let (_, config) = inspect_archive(&["--config"]);
    let user = config["config"]["User"].as_str().unwrap_or_default();
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(name, "" | "0" | "root"),
        "the image's default user is {user:?}: root (set a non-root --user in scripts/image)"
    );
}

#[tokio::test]
async fn the_image_runs_both_binaries_and_the_daemon_finds_the_runtime_by_itself() {
    let lab = Lab::start().expect("containerd lab");
    let reference = pull_into_containerd(&lab).await;

    // Both binaries start from the image, as its default (non-root) user.
    let mut version = ctr(&lab);
    version
        .args(["run", "--rm", &reference, &container_id("version")])
        .args(["/kruise-manager", "--version"]);
    let out = run(version);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("kruise-manager ") && text.contains(env!("CARGO_PKG_VERSION")),
        "kruise-manager --version printed {text:?}"
    );
    let mut help = ctr(&lab);
    help.args(["run", "--rm", &reference, &container_id("help")])
        .args(["/kruise-daemon", "--help"]);
    let out = run(help);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--runtime-endpoint"),
        "kruise-daemon --help from the image lacks its flags"
    );

    // The daemon, mounted as the DaemonSet mounts it, finds containerd under /hostvarrun by
    // itself and pulls what its NodeImage lists through it.
    // The test API server: the container reaches it on the host network with this kubeconfig.
    let cluster = Cluster::local();
    let node = cluster.name("image");
    let images = cluster.node_images();
    images.create(&node).await;
    let small = lab
        .push(
            &lab.registry,
            "lab/from-image",
            "v1",
            &[Layer::random("f", 64 << 10, 9)],
        )
        .unwrap();
    images.want(&node, &small.reference, 0, json!({})).await;
    let logs = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut daemon = start_daemon_container(
        &lab,
        &reference,
        cluster.kubeconfig(),
        &node,
        port,
        logs.path(),
    );
    daemon.wait_ready(port).await;
    images
        .wait_phase(&node, &small.reference, TagPhase::Succeeded, 0, MINUTE)
        .await;
    daemon.terminate().await;

    let lines = json_lines(&daemon.log_text());
    let found = lines
        .iter()
        .find(|l| l["message"] == "container runtime found")
        .unwrap_or_else(|| {
            panic!(
                "no `container runtime found` line in:\n{}",
                daemon.log_text()
            )
        });
    assert_eq!(
        found["endpoint"], "unix:///hostvarrun/containerd.sock",
        "autodetection should find the socket where the DaemonSet mounts the host's /var/run"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "kruise-daemon stopped"),
        "SIGTERM should stop the daemon cleanly:\n{}",
        daemon.log_text()
    );
}
