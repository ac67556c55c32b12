use super::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn json_secret(auths: serde_json::Value) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([(
        DOCKER_CONFIG_JSON_KEY.to_string(),
        serde_json::to_vec(&serde_json::json!({"auths": auths})).unwrap(),
    )])
}

fn users(found: &[(AuthConfig, String)]) -> Vec<&str> {
    found.iter().map(|(a, _)| a.username.as_str()).collect()
}

#[test]
fn chooses_credentials_like_the_kubelet() {
    let mut ring = DockerKeyring::new();
    ring.add_secret(
        "ns/s1",
        DOCKER_CONFIG_JSON_TYPE,
        &json_secret(serde_json::json!({
            "https://index.docker.io/v1/": {"auth": b64("hub:hubpw")},
            "quay.io": {"username": "quay", "password": "q"},
            "quay.io/coreos": {"username": "coreos", "password": "c"},
            "*.example.com": {"username": "wild", "password": "w"},
            "registry.local:5000": {"username": "ported", "password": "p"},
            "https://r.io/v2/": {"username": "v2", "password": "v"},
        })),
    )
    .unwrap();
    let cases: [(&str, &[&str]); 10] = [
        ("docker.io/library/nginx", &["hub"]),
        ("docker.io/team/app", &["hub"]),
        ("quay.io/coreos/etcd", &["coreos", "quay"]),
        ("quay.io/other/x", &["quay"]),
        ("a.example.com/x", &["wild"]),
        ("a.b.example.com/x", &[]),
        ("example.com/x", &[]),
        ("registry.local:5000/x", &["ported"]),
        ("registry.local/x", &[]),
        ("r.io/anything", &["v2"]),
    ];
    for (image, want) in cases {
        assert_eq!(users(&ring.lookup(image)), want, "{image}");
    }
    // A digest does not get in the way, and every match says which secret it came from.
    let found = ring.lookup("quay.io/coreos/etcd@sha256:00");
    assert_eq!(found[0].1, "ns/s1");
}

#[test]
fn auth_is_decoded_and_tokens_kept() {
    let mut ring = DockerKeyring::new();
    ring.add_secret(
        "ns/s",
        DOCKER_CONFIG_JSON_TYPE,
        &json_secret(serde_json::json!({
            "127.0.0.1:5001": {"auth": b64("user:pa:ss")},
            "tok.io": {"identitytoken": "id-tok", "registrytoken": "reg-tok"},
        })),
    )
    .unwrap();
    let a = &ring.lookup("127.0.0.1:5001/lab/x")[0].0;
    assert_eq!(
        (a.username.as_str(), a.password.as_str()),
        ("user", "pa:ss")
    );
    assert_eq!(
        a.server_address, "",
        "containerd refuses host:port without a scheme"
    );
    let t = &ring.lookup("tok.io/x")[0].0;
    assert_eq!(
        (t.identity_token.as_str(), t.registry_token.as_str()),
        ("id-tok", "reg-tok")
    );
}

#[test]
fn dockercfg_secrets_and_docker_io_keys() {
    let mut ring = DockerKeyring::new();
    let data = BTreeMap::from([(
        DOCKER_CFG_KEY.to_string(),
        serde_json::to_vec(&serde_json::json!({"docker.io": {"username": "d", "password": "p"}}))
            .unwrap(),
    )]);
    ring.add_secret("ns/old", DOCKER_CFG_TYPE, &data).unwrap();
    assert_eq!(users(&ring.lookup("docker.io/library/busybox")), ["d"]);
    assert!(ring.lookup("ghcr.io/x").is_empty());
}

#[test]
fn bad_secrets_say_what_is_wrong() {
    let mut ring = DockerKeyring::new();
    let err = ring
        .add_secret("ns/a", "Opaque", &BTreeMap::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("use kubernetes.io/dockerconfigjson"),
        "{err}"
    );
    let err = ring
        .add_secret("ns/b", DOCKER_CONFIG_JSON_TYPE, &BTreeMap::new())
        .unwrap_err();
    assert_eq!(err.to_string(), "secret ns/b has no .dockerconfigjson key");
    let bad = BTreeMap::from([(DOCKER_CONFIG_JSON_KEY.to_string(), b"{not json".to_vec())]);
    let err = ring
        .add_secret("ns/c", DOCKER_CONFIG_JSON_TYPE, &bad)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("secret ns/c: .dockerconfigjson is not valid JSON"),
        "{err}"
    );
    assert!(ring.is_empty());
}

#[test]
fn keys_are_normalised() {
    assert_eq!(
        normalise_key("https://index.docker.io/v1/"),
        "index.docker.io"
    );
    assert_eq!(normalise_key("http://r.io/v2/"), "r.io");
    assert_eq!(normalise_key("r.io/team"), "r.io/team");
    assert_eq!(normalise_key("https://r.io:443/team/"), "r.io:443/team/");
    assert!(glob_match("*", "anything"));
    assert!(glob_match("r?", "r1"));
    assert!(!glob_match("r?", "r12"));
}
