//! The Helm chart against the code, without helm or a cluster: its values parse, it passes the
//! binaries only flags they accept, and its CRDs are the generated ones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::Binary;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `--flag` in `text`: "--" followed by a lowercase letter, then letters and dashes.
fn flags(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let after = &rest[at + 2..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'-')
            .count();
        if after.starts_with(|c: char| c.is_ascii_lowercase()) {
            found.insert(format!("--{}", after[..len].trim_end_matches('-')));
        }
        rest = &rest[at + 1..];
    }
    found
}

#[test]
fn values_parse() {
    let path = repo().join("charts/kruise/values.yaml");
    let values: serde_yaml::Value = serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    for key in ["image", "log", "manager", "daemon"] {
        assert!(
            values.get(key).is_some_and(|v| v.is_mapping()),
            "{} has no `{key}` section",
            path.display()
        );
    }
}

#[test]
fn chart_passes_only_flags_the_binaries_accept() {
    for (template, binary) in [
        ("manager.yaml", Binary::Manager),
        ("daemon.yaml", Binary::Daemon),
    ] {
        let path = repo().join("charts/kruise/templates").join(template);
        let used = flags(&read(&path));
        assert!(!used.is_empty(), "found no --flags in {}", path.display());

        let out = Command::new(binary.path())
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("running {binary:?} --help: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{binary:?} --help failed: {stderr}");
        let accepted = flags(&String::from_utf8_lossy(&out.stdout));
        let unknown: Vec<_> = used.difference(&accepted).collect();
        assert!(
            unknown.is_empty(),
            "{} passes {unknown:?}, which {binary:?} --help does not list (it accepts {accepted:?})",
            path.display()
        );
    }
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .map(|entry| {
                entry
                    .expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".yaml"))
            .collect()
    };
    let generated = repo().join("config/crd");
    let chart = repo().join("charts/kruise/crds");
    assert_eq!(
        names(&chart),
        names(&generated),
        "charts/kruise/crds holds other files than config/crd: copy config/crd/*.yaml there"
    );
    for name in names(&generated) {
        assert!(
            std::fs::read(chart.join(&name)).ok() == std::fs::read(generated.join(&name)).ok(),
            "charts/kruise/crds/{name} differs from config/crd/{name}: copy it over"
        );
    }
}

#[test]
fn flag_scan() {
    assert_eq!(
        flags("---\n- --log-level\n- \"0.0.0.0:1\"\nx --metrics-addr=a -- --- --help"),
        BTreeSet::from(["--help", "--log-level", "--metrics-addr"].map(String::from))
    );
}
