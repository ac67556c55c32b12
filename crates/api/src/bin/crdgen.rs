//! Writes the CRDs to `config/crd/` and to the Helm chart's `crds/` directory (or, given an
//! argument, to that directory only).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = match std::env::args_os().nth(1) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => kruise_api::crd::OUTPUT_DIRS
            .iter()
            .map(|d| root.join(d))
            .collect(),
    };
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in kruise_api::crd::all() {
            let path = dir.join(file);
            std::fs::write(&path, kruise_api::crd::to_yaml(&crd))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
