//! Writes the CRDs to `config/crd/` and to the Helm chart's `crds/` directory (or, given an
//! argument, to that directory only). `crdgen --openkruise-workloads DIR` writes minimal CRDs
//! of OpenKruise's CloneSet, Advanced StatefulSet and Advanced DaemonSet to DIR instead (for
//! trying rollout pre-download where OpenKruise is not installed).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "--openkruise-workloads") {
        let dir = PathBuf::from(args.nth(1).expect("--openkruise-workloads DIR"));
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in kruise_api::crd::openkruise_workloads() {
            let path = dir.join(file);
            std::fs::write(&path, kruise_api::crd::to_yaml(&crd))?;
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
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
