//! A private container runtime and registries on loopback for tests and the local demo:
//! `docker-registry` (optionally behind htpasswd auth), `containerd` with its own root, state,
//! socket and `certs.d`, and OCI images built offline and pushed with `skopeo`. Nothing touches
//! the host's `/run/containerd` or `/var/lib/containerd`; everything lives in one temporary
//! directory that is removed, with the processes stopped, when the [`Lab`] is dropped.
//!
//! Needs root (containerd mounts snapshots to unpack layers) and the Debian packages
//! `containerd docker-registry skopeo apache2-utils`; `.ci/run` installs them. When something
//! is missing the lab fails loudly, saying what to install, rather than letting a test pass.
//! Tests of CRI `pinned` run Debian trixie's containerd 1.7 instead ([`ContainerdBinary::Pinning`],
//! unpacked into `/opt/kruise-lab/containerd-1.7` by `.ci/install-deps`), and a test may give
//! containerd a size-limited image filesystem ([`ContainerdOptions::image_fs_bytes`]).

mod containerd;
pub mod image;
pub mod oci_archive;
mod process;
mod proxy;
mod proxy_fault;
mod registry;

use std::path::{Path, PathBuf};

pub use containerd::{
    Containerd, ContainerdBinary, ContainerdOptions, PINNING_CONTAINERD, PINNING_CONTAINERD_ENV,
};
pub use image::{ImageBuilder, Layer, PushedImage};
pub use proxy::{Fault, Lasting, SlowProxy, Target};
pub use registry::{http_status, Credentials, Registry};

/// Binaries the lab runs, with the Debian package that provides each.
const REQUIRED: [(&str, &str); 5] = [
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("htpasswd", "apache2-utils"),
];

/// Fails with install instructions when a required binary or root is missing.
pub fn check_prerequisites() -> anyhow::Result<()> {
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(bin, pkg)| format!("{bin} (Debian package {pkg})"))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the containerd test lab needs {}; install with `bash .ci/install-deps` or \
             `apt-get install -y containerd docker-registry skopeo apache2-utils`",
            missing.join(", ")
        );
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    if uid.split_whitespace().nth(1) != Some("0") {
        anyhow::bail!("the containerd test lab must run as root (containerd mounts snapshots to unpack layers)");
    }
    Ok(())
}

pub(crate) fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound, then released for the service to take).
/// OpenKruise's published workload CRD `file` of `release` (`v1.9.0`, `master-07169cf`), as the
/// project's reference keeps them: `$OPENKRUISE_CRDS/<release>/<file>`, by default
/// `shared/reference/openkruise-crds/` beside this checkout. Missing files fail the test that
/// needs them, saying where they were looked for.
pub fn openkruise_crd(release: &str, file: &str) -> String {
    let dir = std::env::var_os("OPENKRUISE_CRDS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/openkruise-crds")
        });
    let path = dir.join(release).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "OpenKruise's published CRD {} is missing ({e}): the tests install OpenKruise's own \
             CRDs, kept in shared/reference/openkruise-crds beside the checkout; point \
             OPENKRUISE_CRDS at a copy of that directory",
            path.display()
        )
    })
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An open registry, an htpasswd-protected one, and a containerd that pulls from both.
pub struct Lab {
    pub registry: Registry,
    pub auth_registry: Registry,
    pub containerd: Containerd,
    images: ImageBuilder,
    // Dropped last: the processes above stop before their directory goes.
    _dir: tempfile::TempDir,
}

impl Lab {
    /// Starts everything; fails with a readable reason (missing package, process that died,
    /// readiness deadline) and the tail of the failing process's log.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(ContainerdOptions::default())
    }

    /// [`Lab::start`] with a containerd run as `options` say: another executable (e.g. the 1.7
    /// one that reports CRI `pinned`), a size-limited image filesystem.
    pub fn start_with(options: ContainerdOptions) -> anyhow::Result<Self> {
        check_prerequisites()?;
        let dir = tempfile::Builder::new().prefix("kruise-lab-").tempdir()?;
        let registry = Registry::start(&dir.path().join("registry"), None)?;
        let creds = Credentials {
            username: "lab-user".into(),
            password: "lab-pass-7f3a".into(),
        };
        let auth_registry = Registry::start(&dir.path().join("registry-auth"), Some(creds))?;
        let containerd = Containerd::start_with(
            &dir.path().join("containerd"),
            &[registry.port(), auth_registry.port()],
            options,
        )?;
        let images = ImageBuilder::new(&dir.path().join("images"))?;
        Ok(Self {
            registry,
            auth_registry,
            containerd,
            images,
            _dir: dir,
        })
    }

    /// Builds an image and pushes it to `registry` as `repo:tag`.
    pub fn push(
        &self,
        registry: &Registry,
        repo: &str,
        tag: &str,
        layers: &[Layer],
    ) -> anyhow::Result<PushedImage> {
        let built = self.images.build(repo, tag, layers)?;
        registry.push(&built, repo, tag)
    }

    /// A throttling proxy in front of `registry`, which containerd may pull from.
    pub fn slow_proxy(
        &self,
        registry: &Registry,
        bytes_per_second: u64,
    ) -> anyhow::Result<SlowProxy> {
        let proxy = SlowProxy::start(registry.port(), bytes_per_second)?;
        self.containerd.trust_registry(proxy.port())?;
        Ok(proxy)
    }

    /// The unix endpoint of containerd's CRI socket.
    pub fn cri_endpoint(&self) -> String {
        format!("unix://{}", self.containerd.socket().display())
    }
}
