//! A private containerd with the CRI plugin, its own root, state, socket and `certs.d`, pulling
//! over plain HTTP from the lab's loopback registries. By default the system's containerd
//! (Debian 12: 1.6.20); [`ContainerdBinary::Pinning`] runs Debian trixie's 1.7.24 instead, and
//! [`ContainerdOptions::image_fs_bytes`] puts its root on a size-limited filesystem.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Service;

/// Where `.ci/install-deps` unpacks Debian trixie's containerd 1.7.
pub const PINNING_CONTAINERD: &str = "/opt/kruise-lab/containerd-1.7/usr/bin/containerd";
/// Overrides [`PINNING_CONTAINERD`].
pub const PINNING_CONTAINERD_ENV: &str = "KRUISE_LAB_CONTAINERD_PINNING";

/// Which containerd executable the lab runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ContainerdBinary {
    /// `containerd` from `PATH`: Debian 12's 1.6.20, which never reports CRI `pinned: true`.
    #[default]
    System,
    /// A containerd that applies the `io.cri-containerd.pinned` label live (1.7.10 and later):
    /// `$KRUISE_LAB_CONTAINERD_PINNING`, else [`PINNING_CONTAINERD`] (Debian trixie's 1.7.24,
    /// installed by `bash .ci/install-deps`).
    Pinning,
    /// This executable.
    Path(PathBuf),
}

impl ContainerdBinary {
    /// The executable to run; fails, naming the path and how to install it, when it is missing.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        match self {
            Self::System => Ok(PathBuf::from("containerd")),
            Self::Path(path) => Ok(path.clone()),
            Self::Pinning => {
                let (path, from) = match std::env::var_os(PINNING_CONTAINERD_ENV) {
                    Some(p) if !p.is_empty() => (PathBuf::from(p), PINNING_CONTAINERD_ENV),
                    _ => (PathBuf::from(PINNING_CONTAINERD), "the default path"),
                };
                if !path.is_file() {
                    anyhow::bail!(
                        "the pinning containerd (1.7, which reports CRI `pinned: true`) is missing at \
                         {} ({from}); `bash .ci/install-deps` installs Debian trixie's containerd \
                         1.7.24 at {PINNING_CONTAINERD}, beside the system's (or set \
                         {PINNING_CONTAINERD_ENV} to a containerd 1.7.10 or later)",
                        path.display()
                    );
                }
                Ok(path)
            }
        }
    }
}

/// How [`Containerd::start_with`] runs containerd.
#[derive(Clone, Debug, Default)]
pub struct ContainerdOptions {
    pub binary: ContainerdBinary,
    /// Puts containerd's root (content store and overlayfs snapshots, i.e. the image
    /// filesystem) on a tmpfs of this many bytes, detached when the [`Containerd`] is dropped.
    pub image_fs_bytes: Option<u64>,
}

pub struct Containerd {
    dir: PathBuf,
    binary: PathBuf,
    /// The size-limited filesystem mounted on `root`, if any.
    image_fs: Option<PathBuf>,
    service: Option<Service>,
}

impl Containerd {
    /// The system's containerd on a root in `dir`.
    pub fn start(dir: &Path, registry_ports: &[u16]) -> anyhow::Result<Self> {
        Self::start_with(dir, registry_ports, ContainerdOptions::default())
    }

    pub fn start_with(
        dir: &Path,
        registry_ports: &[u16],
        options: ContainerdOptions,
    ) -> anyhow::Result<Self> {
        let binary = options.binary.resolve()?;
        for sub in ["root", "state", "opt", "certs.d", "cni/bin", "cni/net.d"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for port in registry_ports {
            write_hosts_toml(dir, *port)?;
        }
        let d = dir.display();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "127.0.0.1:9/lab/pause:unused"
  disable_apparmor = true
  max_concurrent_downloads = 3
  stats_collect_period = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
"#
            ),
        )?;
        let mut c = Self {
            dir: dir.to_path_buf(),
            binary,
            image_fs: None,
            service: None,
        };
        if let Some(bytes) = options.image_fs_bytes {
            detach_stale_image_fs();
            mount_image_fs(&c.root(), bytes)?;
            c.image_fs = Some(c.root());
        }
        c.start_again()?;
        Ok(c)
    }

    /// Starts containerd (again), the same executable on the same root (and image filesystem),
    /// e.g. after [`Containerd::kill`] or [`Containerd::stop`].
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let socket = self.socket();
        // A socket left by a killed instance would fool the readiness check.
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config").arg(self.dir.join("config.toml"));
        let mut service = Service::spawn("containerd", cmd, &self.dir.join("log"))?;
        let log = self.dir.join("log");
        service.wait_ready(Duration::from_secs(30), || {
            socket.exists()
                && self
                    .ctr()
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
        })?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("failed to load plugin io.containerd.grpc.v1.cri"))
        {
            anyhow::bail!("containerd started without its CRI plugin: {line}");
        }
        self.service = Some(service);
        Ok(())
    }

    /// Lets containerd pull over plain HTTP from `127.0.0.1:port` (read on every pull).
    pub fn trust_registry(&self, port: u16) -> anyhow::Result<()> {
        write_hosts_toml(&self.dir, port)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// The containerd executable this instance runs (`containerd` from `PATH` for the system's).
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// What the executable says of itself: `containerd --version`, e.g. `containerd
    /// github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1`.
    pub fn version(&self) -> anyhow::Result<String> {
        let out = Command::new(&self.binary).arg("--version").output()?;
        anyhow::ensure!(
            out.status.success(),
            "{} --version: {}",
            self.binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `ctr --address <socket>` (the `ctr` beside the executable when there is one), for a test
    /// to add arguments such as `-n k8s.io images label REF KEY=VALUE`.
    pub fn ctr(&self) -> Command {
        let beside = self
            .binary
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.join("ctr"))
            .filter(|p| p.is_file());
        let mut cmd = Command::new(beside.unwrap_or_else(|| PathBuf::from("ctr")));
        cmd.arg("--address").arg(self.socket());
        cmd
    }

    /// The mountpoint of the size-limited image filesystem (containerd's root) when
    /// [`ContainerdOptions::image_fs_bytes`] asked for one.
    pub fn image_fs(&self) -> Option<&Path> {
        self.image_fs.as_deref()
    }

    /// containerd's root directory (content store, snapshots).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn pid(&self) -> Option<u32> {
        self.service.as_ref().and_then(Service::pid)
    }

    pub fn log_tail(&self) -> String {
        self.service
            .as_ref()
            .map(Service::log_tail)
            .unwrap_or_default()
    }

    /// SIGKILL, as a crash would; [`Containerd::start_again`] brings it back with its images
    /// (the image filesystem stays mounted until the `Containerd` is dropped).
    pub fn kill(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.kill();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.stop(Duration::from_secs(10));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // containerd stops first (as before: SIGTERM, SIGKILL after a grace period), then its
        // image filesystem is detached lazily: nothing waits for it to be unused, and the kernel
        // frees it once the last user is gone.
        self.service.take();
        if let Some(mountpoint) = self.image_fs.take() {
            detach(&mountpoint);
        }
    }
}

/// The tmpfs's source name, which `/proc/self/mountinfo` shows: it names the process that
/// mounted it, so a later run can tell a mount left by a killed test from a live one.
const IMAGE_FS_SOURCE: &str = "kruise-lab-image-fs-";

fn mount_image_fs(mountpoint: &Path, bytes: u64) -> anyhow::Result<()> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={bytes},mode=0711"))
        .arg(format!("{IMAGE_FS_SOURCE}{}", std::process::id()))
        .arg(mountpoint)
        .output()
        .map_err(|e| anyhow::anyhow!("running mount(8) for the image filesystem: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "mounting a {bytes}-byte tmpfs on {} for containerd's image filesystem (needs root): {}",
        mountpoint.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Lazily detaches (`umount2(MNT_DETACH)`) the image filesystems whose process is gone: a test
/// killed by its time limit never runs its destructors.
fn detach_stale_image_fs() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some("tmpfs"), Some(source)) = (right.next(), right.next()) else {
            continue;
        };
        let Some(pid) = source.strip_prefix(IMAGE_FS_SOURCE) else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Some(mountpoint) = left.split(' ').nth(4) {
            detach(Path::new(&unescape_mountinfo(mountpoint)));
        }
    }
}

/// `umount --lazy`: returns at once, whether or not the filesystem is in use.
fn detach(mountpoint: &Path) {
    let _ = Command::new("umount")
        .arg("--lazy")
        .arg(mountpoint)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write_hosts_toml(dir: &Path, port: u16) -> anyhow::Result<()> {
    let host = format!("127.0.0.1:{port}");
    std::fs::create_dir_all(dir.join("certs.d").join(&host))?;
    std::fs::write(
        dir.join("certs.d").join(&host).join("hosts.toml"),
        format!("server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"),
    )?;
    Ok(())
}
