//! The Helm chart as helm renders it (`e2e::chart`): `helm lint --strict`, `helm template` with
//! the default values and with every switch flipped, each rendered object checked against its
//! Kubernetes API type (a field k8s-openapi does not know is lost in a round trip, and the test
//! names it), the RBAC equal to what the binaries call (`e2e::rbac`), the flags the binaries
//! accept (the peer settings: `chart_peers.rs`), a mistyped value refused by
//! `values.schema.json`, and the CRDs the generated ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use e2e::chart::{
    chart, container, describe, find, helm, output, render, repo, variants, ALL_SWITCHES,
    OTHER_SWITCHES, RELEASE_NAMESPACE,
};
use e2e::rbac::{self, Scope};
use e2e::Binary;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A ServiceMonitor (monitoring.coreos.com/v1) as far as the chart writes one; k8s-openapi has
/// no type for it, so its fields are spelled out and unknown ones refused.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    namespace_selector: NamespaceSelector,
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    endpoints: Vec<Endpoint>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Endpoint {
    port: String,
    path: String,
    interval: String,
    scrape_timeout: String,
}

/// A PrometheusRule (monitoring.coreos.com/v1) as far as the chart writes one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrometheusRule {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: PrometheusRuleSpec,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<AlertRule>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertRule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Paths present in `original` that did not come back equal from the typed round trip.
fn lost(original: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                match b.get(k) {
                    Some(bv) => lost(v, bv, &format!("{path}.{k}"), out),
                    // An empty map or list is the same as none to the API server.
                    None if v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty()) => {}
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(o), Value::Array(b)) if o.len() == b.len() => {
            for (i, (ov, bv)) in o.iter().zip(b).enumerate() {
                lost(ov, bv, &format!("{path}[{i}]"), out);
            }
        }
        (o, b) if o == b => {}
        (o, b) => out.push(format!("{path} ({o} became {b})")),
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    lost(object, &back, "", &mut missing);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fields the API type does not have (misspelt or misplaced): {}",
            missing.join(", ")
        ))
    }
}

/// Checks one rendered object against the API type of its kind.
fn validate(object: &Value) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("v1", "Namespace") => round_trip::<Namespace>(object),
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(object),
        ("v1", "Service") => round_trip::<Service>(object),
        ("v1", "ConfigMap") => round_trip::<k8s_openapi::api::core::v1::ConfigMap>(object),
        ("apps/v1", "Deployment") => round_trip::<Deployment>(object),
        ("apps/v1", "DaemonSet") => round_trip::<DaemonSet>(object),
        ("policy/v1", "PodDisruptionBudget") => round_trip::<PodDisruptionBudget>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<ClusterRoleBinding>(object)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(object),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            round_trip::<ValidatingAdmissionPolicy>(object)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            round_trip::<ValidatingAdmissionPolicyBinding>(object)
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => round_trip::<ServiceMonitor>(object),
        ("monitoring.coreos.com/v1", "PrometheusRule") => round_trip::<PrometheusRule>(object),
        _ => Err(format!("no API type known for {api_version} {kind}")),
    }
}

#[test]
fn helm_lint_strict_passes_with_every_value_set() {
    for (variant, args) in variants() {
        let mut cmd = helm();
        cmd.args(["lint", "--strict"])
            .arg(chart())
            .args(["--namespace", RELEASE_NAMESPACE])
            .args(&args);
        let out = output(cmd);
        assert!(
            out.status.success(),
            "helm lint --strict with {variant} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_rendered_object_is_a_valid_api_object() {
    let standard = [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
    ];
    for (variant, args) in variants() {
        let objects = render(&args);
        assert!(
            objects.len() >= 15,
            "{variant}: only {} objects",
            objects.len()
        );
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for o in &objects {
            if let Err(e) = validate(o) {
                problems.push(format!("{}: {e}", describe(o)));
            }
            if !seen.insert(describe(o)) {
                problems.push(format!("{} is rendered twice", describe(o)));
            }
            let labels = &o["metadata"]["labels"];
            for l in standard.iter().filter(|l| labels.get(**l).is_none()) {
                problems.push(format!("{} lacks the label {l}", describe(o)));
            }
        }
        assert!(problems.is_empty(), "{variant}:\n{}", problems.join("\n"));
    }
}

#[test]
fn switches_reach_the_objects() {
    let objects = render(ALL_SWITCHES);
    let manager = find(&objects, "Deployment", "kruise-manager");
    let daemon = find(&objects, "DaemonSet", "kruise-daemon");
    let pod = |w: &Value| w["spec"]["template"].clone();
    assert_eq!(daemon["metadata"]["namespace"], "kruise-daemon");
    assert_eq!(pod(manager)["spec"]["priorityClassName"], "x");
    assert_eq!(pod(daemon)["spec"]["priorityClassName"], "y");
    assert_eq!(pod(manager)["metadata"]["labels"]["a"], "b");
    assert_eq!(pod(daemon)["metadata"]["annotations"]["c"], "d");
    let manager_pod = pod(manager);
    let secrets: Vec<&str> = manager_pod["spec"]["imagePullSecrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        secrets,
        ["g", "m"],
        "the global pull secret, then the manager's"
    );
    assert!(pod(manager)["spec"]["affinity"]["podAntiAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]
        .is_array());
    let m = container(&objects, "Deployment", "kruise-manager");
    assert!(m
        .image
        .unwrap()
        .ends_with("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert!(m.env.unwrap().iter().any(|e| e.name == "A"));
    let d = container(&objects, "DaemonSet", "kruise-daemon");
    let args = d.args.unwrap();
    assert_eq!(
        args.iter().filter(|a| *a == "--log-level").count(),
        1,
        "extraArgs replace the chart's flag: {args:?}"
    );
    assert!(args.windows(2).any(|w| w == ["--log-level", "debug"]));
    for kind in ["PodDisruptionBudget", "ValidatingAdmissionPolicy"] {
        assert!(
            !objects.iter().any(|o| o["kind"] == kind),
            "{kind} should be switched off"
        );
    }
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == "kruise-daemon-config"),
        "daemonConfigNamespace.create=false renders no namespace"
    );
    assert_eq!(
        objects
            .iter()
            .filter(|o| o["kind"] == "ServiceMonitor")
            .count(),
        2
    );
    let ns = find(&objects, "Namespace", "kruise-daemon");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    let defaults = render(&[]);
    let ns = find(&defaults, "Namespace", "kruise-daemon-config");
    assert_eq!(
        ns["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "helm uninstall must not delete the users' pull-secret copies"
    );
    assert!(defaults.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
}

#[test]
fn extra_args_env_labels_and_the_name_override_reach_the_objects() {
    let objects = render(ALL_SWITCHES);
    let m = container(&objects, "Deployment", "kruise-manager");
    let args = m.args.unwrap();
    assert!(
        args.contains(&"--leader-election-lease-duration=20s".to_string())
            && !args.contains(&"--leader-election-lease-duration".to_string()),
        "manager.extraArgs' --flag=value replaces the chart's flag: {args:?}"
    );
    assert!(args.windows(2).any(|w| w == ["--placement-window", "5s"]));
    let d = container(&objects, "DaemonSet", "kruise-daemon");
    let env: Vec<_> = d
        .env
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert!(
        env.contains(&("B".into(), Some("2".into()))),
        "daemon.extraEnv: {env:?}"
    );
    assert!(
        env.iter().any(|(name, _)| name == "NODE_NAME"),
        "the chart's own NODE_NAME stays: {env:?}"
    );
    for o in &objects {
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/name"],
            "prewarm",
            "nameOverride names every object's app: {}",
            describe(o)
        );
    }
    let manager = find(&objects, "Deployment", "kruise-manager");
    assert_eq!(
        manager["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "prewarm"
    );
    for o in objects.iter().filter(|o| o["kind"] == "ServiceMonitor") {
        assert_eq!(
            o["metadata"]["labels"]["release"],
            "prometheus",
            "serviceMonitor.labels: {}",
            describe(o)
        );
    }
}

#[test]
fn with_predownload_off_the_manager_is_told_so_and_may_read_no_workload() {
    let objects = render(ALL_SWITCHES);
    let args = container(&objects, "Deployment", "kruise-manager")
        .args
        .unwrap();
    assert!(args
        .windows(2)
        .any(|w| w == ["--image-predownload", "false"]));
    let role = find(&objects, "ClusterRole", "kruise-prewarm-manager");
    for resource in [
        "deployments",
        "replicasets",
        "controllerrevisions",
        "clonesets",
    ] {
        assert!(
            !role["rules"].to_string().contains(resource),
            "pre-download is off, yet the manager may read {resource}: {}",
            role["rules"]
        );
    }
}

#[test]
fn the_other_switches_reach_the_objects() {
    let objects = render(OTHER_SWITCHES);
    let ns = find(&objects, "Namespace", "kruise-daemon-config");
    assert_eq!(
        ns["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let manager = find(&objects, "Deployment", "kruise-manager");
    let affinity = &manager["spec"]["template"]["spec"]["affinity"];
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "pool",
        "manager.affinity is used as given: {affinity}"
    );
    assert!(
        affinity.get("podAntiAffinity").is_none(),
        "with manager.affinity set, podAntiAffinity does not apply: {affinity}"
    );
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        for o in objects.iter().filter(|o| o["kind"] == kind) {
            let name = o["metadata"]["name"].as_str().unwrap();
            assert!(
                name.starts_with("prewarm-cluster-"),
                "fullnameOverride prefixes {kind} {name}"
            );
        }
    }
    let m = container(&objects, "Deployment", "kruise-manager");
    let args = m.args.unwrap();
    assert!(args
        .windows(2)
        .any(|w| w == ["--image-predownload-all-workloads", "true"]));
    let role = find(&objects, "ClusterRole", "prewarm-cluster-manager");
    assert!(
        role["rules"].to_string().contains("deployments"),
        "pre-download on every workload reads Deployments: {}",
        role["rules"]
    );
}

/// What the rendered RBAC grants each service account, as `e2e::rbac` permissions.
fn granted(objects: &[Value]) -> BTreeMap<String, BTreeSet<(Scope, String, String, String)>> {
    let rules_of = |kind: &str, name: &str, namespace: Option<&str>| -> Vec<PolicyRule> {
        let o = objects
            .iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"] == name
                    && namespace.is_none_or(|n| o["metadata"]["namespace"] == n)
            })
            .unwrap_or_else(|| panic!("{kind} {name} is bound but not rendered"));
        serde_json::from_value(o["rules"].clone()).expect("rules")
    };
    let mut out: BTreeMap<String, BTreeSet<_>> = BTreeMap::new();
    for b in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
    {
        let namespace = b["metadata"]["namespace"].as_str();
        let scope = match (b["kind"].as_str(), namespace) {
            (Some("ClusterRoleBinding"), _) => Scope::Cluster,
            (_, Some("kruise-daemon-config")) => Scope::DaemonConfig,
            (_, Some(RELEASE_NAMESPACE)) => Scope::Release,
            other => panic!("a RoleBinding in an unexpected namespace: {other:?}"),
        };
        let role = b["roleRef"]["name"].as_str().unwrap();
        let role_kind = b["roleRef"]["kind"].as_str().unwrap();
        let rules = rules_of(
            role_kind,
            role,
            (role_kind == "Role").then(|| namespace.unwrap()),
        );
        for s in b["subjects"].as_array().unwrap() {
            let who = format!(
                "{}/{}",
                s["namespace"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            );
            for r in &rules {
                for g in r.api_groups.iter().flatten() {
                    for res in r.resources.iter().flatten() {
                        for v in &r.verbs {
                            out.entry(who.clone()).or_default().insert((
                                scope,
                                g.clone(),
                                res.clone(),
                                v.clone(),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// What a daemon calls with `peer.enabled` besides `rbac::DAEMON`: a TokenReview of each peer
/// asking it for blobs. (Not yet in `e2e::rbac`, whose scenario in `tests/rbac.rs` runs the
/// daemons without peers; it belongs there once that scenario copies between nodes.)
const DAEMON_PEER: &[rbac::Rule] = &[rbac::Rule {
    scope: Scope::Cluster,
    group: "authentication.k8s.io",
    resources: &["tokenreviews"],
    verbs: &["create"],
}];

#[test]
fn rbac_grants_exactly_what_the_binaries_call() {
    for (variant, args, daemon_ns, predownload, peer) in [
        ("default values", vec![], RELEASE_NAMESPACE, true, true),
        (
            "daemon in its own namespace, pre-download and peers off",
            ALL_SWITCHES.to_vec(),
            "kruise-daemon",
            false,
            false,
        ),
        (
            "the other switches flipped",
            OTHER_SWITCHES.to_vec(),
            RELEASE_NAMESPACE,
            true,
            true,
        ),
    ] {
        let objects = render(&args);
        let granted = granted(&objects);
        let mut daemon = rbac::permissions(rbac::DAEMON);
        if peer {
            daemon.extend(rbac::permissions(DAEMON_PEER));
        }
        for (who, want) in [
            (
                format!("{RELEASE_NAMESPACE}/kruise-manager"),
                rbac::permissions(&rbac::manager(predownload)),
            ),
            (format!("{daemon_ns}/kruise-daemon"), daemon),
        ] {
            let got = granted.get(&who).cloned().unwrap_or_default();
            let extra: Vec<_> = got.difference(&want).collect();
            let missing: Vec<_> = want.difference(&got).collect();
            assert!(
                extra.is_empty() && missing.is_empty(),
                "{variant}: RBAC of {who} differs from e2e::rbac: granted but not called {extra:?}; called but not granted {missing:?}"
            );
        }
    }
}

/// `flag value` pairs of a container's args (a flag followed by another flag has no value).
/// Every `--flag` among a container's args is one its binary's `--help` lists.
#[test]
fn the_chart_passes_only_flags_the_binaries_accept() {
    for (_, args) in variants() {
        let objects = render(&args);
        for (kind, name, binary) in [
            ("Deployment", "kruise-manager", Binary::Manager),
            ("DaemonSet", "kruise-daemon", Binary::Daemon),
        ] {
            let c = container(&objects, kind, name);
            let help = Command::new(binary.path())
                .arg("--help")
                .output()
                .expect("--help runs");
            let help = String::from_utf8_lossy(&help.stdout).to_string();
            for flag in c.args.iter().flatten().filter(|a| a.starts_with("--")) {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "{name} is passed {flag}, which {binary:?} --help does not list"
                );
            }
        }
    }
}

#[test]
fn mistyped_values_are_refused_naming_the_value() {
    for (set, names) in [
        ("manager.replicas=two", "/manager/replicas"),
        ("daemon.maxConcurrentPulls=0", "/daemon/maxConcurrentPulls"),
        ("manager.replica=2", "replica"),
        (
            "daemon.imageCheckInterval=soon",
            "/daemon/imageCheckInterval",
        ),
        ("log.format=xml", "/log/format"),
        ("peer.port=0", "/peer/port"),
        ("peer.maxUploads=0", "/peer/maxUploads"),
        ("peer.uploadBytesPerSecond=-1", "/peer/uploadBytesPerSecond"),
        ("peer.audience=", "/peer/audience"),
    ] {
        let mut cmd = helm();
        cmd.args(["template", "kruise"])
            .arg(chart())
            .arg(format!("--set={set}"));
        let out = output(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(names),
            "--set {set} should be refused naming {names}; helm said ({}): {err}",
            out.status
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
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".yaml"))
            .collect()
    };
    let generated = repo().join("config/crd");
    let chart = chart().join("crds");
    assert_eq!(
        names(&chart),
        names(&generated),
        "charts/kruise/crds holds other files than config/crd: run `cargo run -p kruise-api --bin crdgen`"
    );
    for name in names(&generated) {
        assert!(
            std::fs::read(chart.join(&name)).ok() == std::fs::read(generated.join(&name)).ok(),
            "charts/kruise/crds/{name} differs from config/crd/{name}: run `cargo run -p kruise-api --bin crdgen`"
        );
    }
}
