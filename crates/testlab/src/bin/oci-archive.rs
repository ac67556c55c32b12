//! `oci-archive`: writes files into a one-layer OCI image archive, for `scripts/image`.
//!
//! oci-archive --reference REF --output PATH [--user UID:GID] [--entrypoint PATH]
//!             [--label KEY=VALUE]... [--file SOURCE=/PATH]... [--data SOURCE=/PATH]...
//!             [--symlink /PATH=TARGET]...
//!
//! `--file` entries are stored executable (0755), `--data` ones readable (0644), owned by root. Prints the manifest digest and the
//! compressed size (manifest, config and layer) as `digest=… size=…`.

use std::path::PathBuf;

use kruise_testlab::image::TarFile;
use kruise_testlab::oci_archive::{write_archive, AppImage};

fn main() -> anyhow::Result<()> {
    let mut image = AppImage::default();
    let mut output: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--reference" => image.reference = value()?,
            "--output" => output = Some(value()?.into()),
            "--user" => image.user = value()?,
            "--entrypoint" => image.entrypoint = vec![value()?],
            "--label" => {
                let v = value()?;
                let (k, v) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--label {v:?}: expected KEY=VALUE"))?;
                image.labels.insert(k.into(), v.into());
            }
            "--file" | "--data" => {
                let v = value()?;
                let (src, dst) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("{flag} {v:?}: expected SOURCE=/PATH"))?;
                let data = std::fs::read(src)
                    .map_err(|e| anyhow::anyhow!("{flag}: reading {src}: {e}"))?;
                let mode = if flag == "--file" { 0o755 } else { 0o644 };
                image.files.push(TarFile::new(dst, data, mode));
            }
            "--symlink" => {
                let v = value()?;
                let (path, target) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--symlink {v:?}: expected /PATH=TARGET"))?;
                image.files.push(TarFile::symlink(path, target));
            }
            other => anyhow::bail!(
                "unknown argument {other:?} (see the usage at the top of src/bin/oci-archive.rs)"
            ),
        }
    }
    anyhow::ensure!(!image.reference.is_empty(), "--reference is required");
    let output = output.ok_or_else(|| anyhow::anyhow!("--output is required"))?;
    let archive = write_archive(&image, &output)?;
    println!(
        "digest={} size={}",
        archive.manifest_digest, archive.compressed_size
    );
    Ok(())
}
