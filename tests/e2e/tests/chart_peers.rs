//! The chart's peer settings (copying between nodes, issue #18) as helm renders them: on by
//! default (host network, the peer port, the projected token with its audience, the flags of
//! both binaries, the TokenReview rule), each value reaching its flag, and nothing of them when
//! `peer.enabled` is false.

use std::collections::BTreeMap;

use e2e::chart::{container, find, render, RELEASE_NAMESPACE};
use k8s_openapi::api::rbac::v1::PolicyRule;

fn flag_values(args: &[String]) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, a) in args.iter().enumerate().filter(|(_, a)| a.starts_with("--")) {
        let value = args.get(i + 1).filter(|v| !v.starts_with("--"));
        out.entry(a.as_str())
            .or_default()
            .extend(value.map(String::as_str));
    }
    out
}

#[test]
fn peer_settings_reach_the_daemon_and_the_manager() {
    let objects = render(&[]);
    let daemon = find(&objects, "DaemonSet", "kruise-daemon");
    let pod = &daemon["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"], true,
        "peers reach each other at the node's address"
    );
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    let d = container(&objects, "DaemonSet", "kruise-daemon");
    let ports: Vec<_> = d
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref().unwrap_or_default(), p.container_port))
        .collect();
    assert!(ports.contains(&("peer", 10355)), "{ports:?}");
    assert!(
        ports.contains(&("metrics", 10221)),
        "kept as it is: {ports:?}"
    );
    let args = d.args.clone().unwrap();
    let flags = flag_values(&args);
    for (flag, value) in [
        ("--peer-port", "10355"),
        ("--peer-audience", "kruise-daemon-peer"),
        ("--peer-token-file", "/var/run/secrets/kruise.io/peer/token"),
        (
            "--peer-service-accounts",
            &format!("{RELEASE_NAMESPACE}:kruise-daemon"),
        ),
        ("--peer-max-uploads", "2"),
        ("--peer-upload-bytes-per-second", "0"),
    ] {
        assert_eq!(flags.get(flag), Some(&vec![value]), "{flag}: {args:?}");
    }
    let mount = d
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "peer-token")
        .expect("the peer token is mounted");
    assert_eq!(mount.mount_path, "/var/run/secrets/kruise.io/peer");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "peer-token")
        .expect("a peer-token volume");
    assert_eq!(
        volume["projected"]["sources"],
        serde_json::json!([{"serviceAccountToken": {
            "audience": "kruise-daemon-peer", "expirationSeconds": 3600, "path": "token"}}])
    );
    let role = find(&objects, "ClusterRole", "kruise-daemon");
    let reviews: Vec<PolicyRule> = serde_json::from_value(role["rules"].clone()).unwrap();
    assert!(
        reviews.iter().any(
            |r| r.api_groups == Some(vec!["authentication.k8s.io".into()])
                && r.resources == Some(vec!["tokenreviews".into()])
                && r.verbs == ["create"]
        ),
        "{}",
        role["rules"]
    );
    let m = container(&objects, "Deployment", "kruise-manager")
        .args
        .unwrap();
    let flags = flag_values(&m);
    for (flag, value) in [
        ("--peer-port", "10355"),
        ("--registry-budget", "3"),
        ("--peer-fanout", "2"),
    ] {
        assert_eq!(flags.get(flag), Some(&vec![value]), "{flag}: {m:?}");
    }

    // Other values, the daemon in its own namespace, a flag replaced through extraArgs.
    let objects = render(&[
        "--set=peer.port=12000",
        "--set=peer.audience=peers.example.com",
        "--set=peer.uploadBytesPerSecond=104857600",
        "--set=peer.registryBudget=10",
        "--set=peer.fanout=4",
        "--set=daemon.namespace=kruise-daemon",
        r#"--set-json=daemon.extraArgs=["--peer-max-uploads","5"]"#,
    ]);
    let d = container(&objects, "DaemonSet", "kruise-daemon");
    let args = d.args.unwrap();
    let flags = flag_values(&args);
    for (flag, value) in [
        ("--peer-port", "12000"),
        ("--peer-audience", "peers.example.com"),
        ("--peer-upload-bytes-per-second", "104857600"),
        ("--peer-service-accounts", "kruise-daemon:kruise-daemon"),
        ("--peer-max-uploads", "5"),
    ] {
        assert_eq!(flags.get(flag), Some(&vec![value]), "{flag}: {args:?}");
    }
    assert!(d
        .ports
        .iter()
        .flatten()
        .any(|p| p.name.as_deref() == Some("peer") && p.container_port == 12000));
    let daemon = find(&objects, "DaemonSet", "kruise-daemon");
    assert_eq!(
        daemon["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "peer-token")
            .unwrap()["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "peers.example.com"
    );
    let m = container(&objects, "Deployment", "kruise-manager")
        .args
        .unwrap();
    let flags = flag_values(&m);
    for (flag, value) in [
        ("--peer-port", "12000"),
        ("--registry-budget", "10"),
        ("--peer-fanout", "4"),
    ] {
        assert_eq!(flags.get(flag), Some(&vec![value]), "{flag}: {m:?}");
    }
}

#[test]
fn with_peers_off_nothing_of_them_is_rendered() {
    let objects = render(&["--set=peer.enabled=false"]);
    let daemon = find(&objects, "DaemonSet", "kruise-daemon");
    let pod = &daemon["spec"]["template"]["spec"];
    assert!(pod.get("hostNetwork").is_none(), "{pod}");
    assert!(pod.get("dnsPolicy").is_none(), "{pod}");
    assert!(
        !pod.to_string().contains("peer"),
        "no peer port, flag or token: {pod}"
    );
    let m = container(&objects, "Deployment", "kruise-manager")
        .args
        .unwrap();
    for flag in ["--peer-port", "--registry-budget", "--peer-fanout"] {
        assert!(!m.iter().any(|a| a.starts_with(flag)), "{flag}: {m:?}");
    }
    let role = find(&objects, "ClusterRole", "kruise-daemon");
    assert!(
        !role["rules"].to_string().contains("tokenreviews"),
        "{}",
        role["rules"]
    );
}
