//! An application image as an OCI archive (a tar of an OCI layout with one image), which
//! `ctr images import` and `skopeo copy oci-archive:` both accept: what `scripts/image` writes for
//! kruise-manager and kruise-daemon, with no container engine.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use crate::image::{layer_tar, write_layout, TarFile};

/// One image of one layer.
#[derive(Debug, Clone, Default)]
pub struct AppImage {
    /// The image's name, as given (`kruise:0.1.0`, `registry:5000/team/kruise:v1`).
    pub reference: String,
    pub files: Vec<TarFile>,
    /// The default user, `uid:gid`.
    pub user: String,
    pub entrypoint: Vec<String>,
    /// OCI labels (`org.opencontainers.image.*`).
    pub labels: BTreeMap<String, String>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Archive {
    pub manifest_digest: String,
    /// Manifest, config and the compressed layer: what a node downloads.
    pub compressed_size: u64,
}

/// A reference as containerd names images: `kruise:1` → `docker.io/library/kruise:1`.
pub fn normalize_reference(reference: &str) -> String {
    let (first, rest) = reference.split_once('/').unwrap_or(("", reference));
    let is_host = first.contains(['.', ':']) || first == "localhost";
    let named = match (first.is_empty(), is_host) {
        (true, _) => format!("docker.io/library/{rest}"),
        (false, true) => reference.to_string(),
        (false, false) => format!("docker.io/{reference}"),
    };
    let last = named.rsplit('/').next().unwrap_or_default();
    if last.contains([':', '@']) {
        named
    } else {
        format!("{named}:latest")
    }
}

/// Writes `image` as an OCI archive at `out` (through a temporary file, so a failed write
/// leaves no half archive). The index entry names the image twice: the OCI ref name as given
/// (skopeo) and containerd's full name (`ctr images import`).
pub fn write_archive(image: &AppImage, out: &Path) -> anyhow::Result<Archive> {
    let dir = tempfile::Builder::new().prefix("oci-layout-").tempdir()?;
    let tar = layer_tar(&image.files)?;
    let config = json!({
        "User": image.user,
        "Entrypoint": image.entrypoint,
        "Labels": image.labels,
    });
    let annotations = json!({
        "org.opencontainers.image.ref.name": image.reference,
        "io.containerd.image.name": normalize_reference(&image.reference),
    });
    let layout = write_layout(
        dir.path(),
        &[tar],
        flate2::Compression::best(),
        config,
        annotations,
    )?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent {
        std::fs::create_dir_all(p)?;
    }
    let partial = tempfile::NamedTempFile::new_in(parent.unwrap_or(Path::new(".")))?;
    {
        let mut archive = tar::Builder::new(partial.as_file());
        archive.mode(tar::HeaderMode::Deterministic);
        archive.append_dir_all(".", dir.path())?;
        archive.finish()?;
    }
    partial.persist(out)?;
    Ok(Archive {
        manifest_digest: layout.manifest_digest,
        compressed_size: layout.size,
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_reference as n;

    #[test]
    fn references_get_containerd_names() {
        assert_eq!(n("kruise:0.1.0"), "docker.io/library/kruise:0.1.0");
        assert_eq!(n("team/kruise:1"), "docker.io/team/kruise:1");
        assert_eq!(n("127.0.0.1:5000/kruise:1"), "127.0.0.1:5000/kruise:1");
        assert_eq!(n("localhost/kruise"), "localhost/kruise:latest");
        assert_eq!(
            n("reg.example.com/a/b@sha256:00"),
            "reg.example.com/a/b@sha256:00"
        );
    }
}
