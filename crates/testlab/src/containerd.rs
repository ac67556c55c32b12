//! A private containerd with the CRI plugin, its own root, state, socket and `certs.d`, pulling
//! over plain HTTP from the lab's loopback registries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Service;

pub struct Containerd {
    dir: PathBuf,
    service: Option<Service>,
}

impl Containerd {
    pub fn start(dir: &Path, registry_ports: &[u16]) -> anyhow::Result<Self> {
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
            service: None,
        };
        c.start_again()?;
        Ok(c)
    }

    /// Starts containerd (again) on the same root, e.g. after [`Containerd::kill`].
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let socket = self.socket();
        // A socket left by a killed instance would fool the readiness check.
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(self.dir.join("config.toml"));
        let mut service = Service::spawn("containerd", cmd, &self.dir.join("log"))?;
        let log = self.dir.join("log");
        service.wait_ready(Duration::from_secs(30), || {
            socket.exists()
                && Command::new("ctr")
                    .arg("--address")
                    .arg(&socket)
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

    /// SIGKILL, as a crash would; [`Containerd::start_again`] brings it back with its images.
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

fn write_hosts_toml(dir: &Path, port: u16) -> anyhow::Result<()> {
    let host = format!("127.0.0.1:{port}");
    std::fs::create_dir_all(dir.join("certs.d").join(&host))?;
    std::fs::write(
        dir.join("certs.d").join(&host).join("hosts.toml"),
        format!("server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"),
    )?;
    Ok(())
}
