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
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        let put = |bytes: &[u8]| -> anyhow::Result<(String, u64)> {
            let hex = format!("{:x}", Sha256::digest(bytes));
            std::fs::write(blobs.join(&hex), bytes)?;
            Ok((format!("sha256:{hex}"), bytes.len() as u64))
        };
        let mut diff_ids = Vec::new();
        let mut layer_descs = Vec::new();
        let mut size = 0;
        for layer in layers {
            let tar = layer_tar(layer)?;
            diff_ids.push(format!("sha256:{:x}", Sha256::digest(&tar)));
            let (digest, len) = put(&gzip(&tar)?)?;
            size += len;
            layer_descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": len}));
        }
        let config = json!({
            "architecture": arch(),
            "os": "linux",
            "config": {"Labels": {"kruise-lab": format!("{repo}:{tag}")}},
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
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(BuiltImage {
            layout,
            manifest_digest,
            config_digest,
            size: size + config_len + manifest_len,
        })
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn layer_tar(layer: &Layer) -> anyhow::Result<Vec<u8>> {
    let files: Vec<(String, Vec<u8>)> = match layer {
        Layer::Files(files) => files.clone(),
        Layer::Random { name, bytes, seed } => vec![(name.clone(), pseudo_random(*bytes, *seed))],
    };
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, name, data.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

/// Gzip with a zero mtime, so equal layers get equal digests; random data is stored, not
/// compressed (level 0), which is ten times faster and just as good for a test.
fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(0));
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
