//! The Helm chart as the tests render it: `helm template` of `charts/kruise` with sets of
//! values (the defaults, every switch flipped, the switches that cannot be flipped along with
//! those, flipped the other way), and lookups in what it renders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Container;
use serde::Deserialize;
use serde_json::Value;

pub const RELEASE_NAMESPACE: &str = "kruise-system";

/// The checkout this crate is in.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `charts/kruise`.
pub fn chart() -> PathBuf {
    repo().join("charts/kruise")
}

/// helm: `HELM`, else `helm` on the PATH; `.ci/install-deps` installs it.
pub fn helm() -> Command {
    let bin = std::env::var_os("HELM").unwrap_or_else(|| "helm".into());
    let mut c = Command::new(&bin);
    c.env(
        "HELM_CACHE_HOME",
        std::env::temp_dir().join("kruise-helm-cache"),
    )
    .env(
        "HELM_CONFIG_HOME",
        std::env::temp_dir().join("kruise-helm-config"),
    );
    c
}

pub fn output(mut cmd: Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("running {cmd:?}: {e}; the chart tests need helm 4 (`bash .ci/install-deps` installs it)")
    })
}

/// `helm template` with `args` (`--set …`), as JSON objects; fails with helm's message.
pub fn render(args: &[&str]) -> Vec<Value> {
    let mut cmd = helm();
    cmd.args(["template", "kruise"])
        .arg(chart())
        .args(["--namespace", RELEASE_NAMESPACE])
        .args(args);
    let out = output(cmd);
    assert!(
        out.status.success(),
        "helm template {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("helm prints YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every switch of the chart flipped from its default at once.
pub const ALL_SWITCHES: &[&str] = &[
    "--set=serviceMonitor.enabled=true",
    "--set=manager.podAntiAffinity=hard",
    "--set=manager.imagePredownload.enabled=false",
    "--set=manager.imagePredownload.allWorkloads=true",
    "--set=manager.podDisruptionBudget.enabled=false",
    "--set=daemon.restrictToOwnNode=false",
    "--set=daemonConfigNamespace.create=false",
    "--set=daemon.namespace=kruise-daemon",
    "--set=daemon.createNamespace=true",
    "--set=image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "--set=manager.priorityClassName=x",
    "--set=daemon.priorityClassName=y",
    "--set=daemon.runtimeEndpoint=unix:///hostvarrun/containerd/containerd.sock",
    "--set=log.format=text",
    r#"--set-json=manager.extraEnv=[{"name":"A","value":"1"}]"#,
    r#"--set-json=daemon.extraArgs=["--log-level","debug"]"#,
    r#"--set-json=manager.podLabels={"a":"b"}"#,
    r#"--set-json=daemon.podAnnotations={"c":"d"}"#,
    r#"--set-json=manager.imagePullSecrets=[{"name":"m"}]"#,
    r#"--set-json=imagePullSecrets=[{"name":"g"}]"#,
    "--set=nameOverride=prewarm",
    r#"--set-json=manager.extraArgs=["--leader-election-lease-duration=20s","--placement-window","5s"]"#,
    r#"--set-json=daemon.extraEnv=[{"name":"B","value":"2"}]"#,
    r#"--set-json=serviceMonitor.labels={"release":"prometheus"}"#,
    "--set=monitoring.dashboard.enabled=true",
    "--set=monitoring.dashboard.namespace=monitoring",
    r#"--set-json=monitoring.dashboard.annotations={"grafana_folder":"Kubernetes"}"#,
    "--set=monitoring.rules.enabled=true",
    r#"--set-json=monitoring.rules.labels={"release":"prometheus"}"#,
    "--set=peer.enabled=false",
];

/// The switches [`ALL_SWITCHES`] cannot flip along with its own, flipped the other way: the
/// daemon-config namespace always created, the manager's affinity as given (podAntiAffinity then
/// does not apply), the cluster-scoped names' prefix overridden, and pre-download on for every
/// workload.
pub const OTHER_SWITCHES: &[&str] = &[
    "--set=daemonConfigNamespace.create=true",
    r#"--set-json=manager.affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In","values":["system"]}]}]}}}"#,
    "--set=fullnameOverride=prewarm-cluster",
    "--set=manager.imagePredownload.allWorkloads=true",
];

/// The value sets every rendering test runs over.
pub fn variants() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("default values", vec![]),
        ("every switch flipped", ALL_SWITCHES.to_vec()),
        ("the other switches flipped", OTHER_SWITCHES.to_vec()),
        (
            "one manager, soft spreading off",
            vec![
                "--set=manager.replicas=1",
                "--set=manager.podAntiAffinity=none",
            ],
        ),
    ]
}

pub fn describe(o: &Value) -> String {
    format!(
        "{} {}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or("-"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

pub fn container(objects: &[Value], kind: &str, name: &str) -> Container {
    let spec = &find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0];
    serde_json::from_value(spec.clone()).expect("a container")
}
