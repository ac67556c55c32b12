//! OCI images built offline: a plain OCI layout (index, manifest, config, tar+gzip layers) that
//! skopeo pushes unchanged, so the manifest digest computed here is the registry's digest.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use sha2::{Digest, Sha256};

/// One layer of a test image.
#[derive(Debug, Clone)]
pub enum Layer {
    /// Small files with the given contents.
    Files(Vec<(String, Vec<u8>)>),
    /// One file of `bytes` pseudo-random bytes from `seed`: the same seed gives the same layer
    /// digest, a new seed gives content no registry or runtime has seen.
    Random {
        name: String,
        bytes: usize,
        seed: u64,
    },
}

impl Layer {
    pub fn file(name: &str, contents: &str) -> Self {
        Layer::Files(vec![(name.to_string(), contents.as_bytes().to_vec())])
    }
    pub fn random(name: &str, bytes: usize, seed: u64) -> Self {
        Layer::Random {
            name: name.to_string(),
            bytes,
            seed,
        }
    }
}

/// A built OCI layout holding one tag.
pub(crate) struct BuiltImage {
    pub layout: PathBuf,
    pub manifest_digest: String,
    pub config_digest: String,
    pub size: u64,
}

/// An image in a lab registry.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `127.0.0.1:PORT/repo:tag`
    pub reference: String,
    /// `127.0.0.1:PORT/repo@sha256:…`
    pub digest_reference: String,
    pub manifest_digest: String,
    /// The image ID containerd reports.
    pub config_digest: String,
    /// Manifest, config and compressed layers, as CRI `Image.size` counts it.
    pub size: u64,
}

pub struct ImageBuilder {
    dir: PathBuf,
    count: AtomicUsize,
}

impl ImageBuilder {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            count: AtomicUsize::new(0),
        })
    }

    pub(crate) fn build(
        &self,
        repo: &str,
        tag: &str,
        layers: &[Layer],
    ) -> anyhow::Result<BuiltImage> {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let layout = self.dir.join(format!("{n}-{}", repo.replace('/', "_")));
        let mut tars = Vec::new();
        for layer in layers {
            let files: Vec<TarFile> = match layer {
                Layer::Files(files) => files
                    .iter()
                    .map(|(name, data)| TarFile::new(name, data.clone(), 0o644))
                    .collect(),
                Layer::Random { name, bytes, seed } => {
                    vec![TarFile::new(name, pseudo_random(*bytes, *seed), 0o644)]
                }
            };
            tars.push(layer_tar(&files)?);
        }
        let config = json!({"Labels": {"kruise-lab": format!("{repo}:{tag}")}});
        // Random data is stored, not compressed (level 0): ten times faster, as good for a test.
        let written = write_layout(
            &layout,
            &tars,
            flate2::Compression::new(0),
            config,
            json!({"org.opencontainers.image.ref.name": tag}),
        )?;
        Ok(BuiltImage {
            layout,
            manifest_digest: written.manifest_digest,
            config_digest: written.config_digest,
            size: written.size,
        })
    }
}

/// A file of a layer: a regular file, or a symbolic link to `link`.
#[derive(Debug, Clone)]
pub struct TarFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
    pub link: Option<String>,
}

impl TarFile {
    pub fn new(path: &str, data: Vec<u8>, mode: u32) -> Self {
        Self {
            path: path.trim_start_matches('/').to_string(),
            data,
            mode,
            link: None,
        }
    }

    pub fn symlink(path: &str, target: &str) -> Self {
        Self {
            link: Some(target.to_string()),
            ..Self::new(path, Vec::new(), 0o777)
        }
    }
}

/// What [`write_layout`] wrote.
#[derive(Debug, Clone)]
pub struct Layout {
    pub manifest_digest: String,
    pub config_digest: String,
    /// Manifest, config and compressed layers: what a pull downloads.
    pub size: u64,
}

/// Writes an OCI layout in `dir` for one image of the given uncompressed layer tars, its
/// `config` section (User, Entrypoint, Labels…) and the annotations of its index entry.
pub fn write_layout(
    dir: &Path,
    tars: &[Vec<u8>],
    compression: flate2::Compression,
    config: serde_json::Value,
    annotations: serde_json::Value,
) -> anyhow::Result<Layout> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> anyhow::Result<(String, u64)> {
        let hex = format!("{:x}", Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes)?;
        Ok((format!("sha256:{hex}"), bytes.len() as u64))
    };
    let mut diff_ids = Vec::new();
    let mut layer_descs = Vec::new();
    let mut size = 0;
    for tar in tars {
        diff_ids.push(format!("sha256:{:x}", Sha256::digest(tar)));
        let (digest, len) = put(&gzip(tar, compression)?)?;
        size += len;
        layer_descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": len}));
    }
    let config = json!({
        "architecture": arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_len) = put(&serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_len},
        "layers": layer_descs,
    });
    let (manifest_digest, manifest_len) = put(&serde_json::to_vec(&manifest)?)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_len,
            "annotations": annotations,
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(Layout {
        manifest_digest,
        config_digest,
        size: size + config_len + manifest_len,
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A tar of `files`, owned by root, dated 1970: the same files give the same digest.
pub fn layer_tar(files: &[TarFile]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(f.data.len() as u64);
        header.set_mode(f.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match &f.link {
            Some(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut header, &f.path, target)?;
            }
            None => {
                header.set_cksum();
                builder.append_data(&mut header, &f.path, f.data.as_slice())?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// Gzip with a zero mtime, so equal layers get equal digests.
fn gzip(data: &[u8], level: flate2::Compression) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// xorshift64*: fast, deterministic, and content no registry has seen for a fresh seed.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
