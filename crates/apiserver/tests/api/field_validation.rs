//! `fieldValidation` on create, update and patch, for custom resources and built-in kinds, and
//! the media types a body may come in: what kubectl (which sends `Strict`) and kube-rs (which
//! sends nothing, so `Warn`) see.

use serde_json::json;

use crate::common::Env;

fn jobs_path(env: &Env) -> String {
    format!(
        "/apis/apps.kruise.io/v1beta1/namespaces/{}/imagepulljobs",
        env.namespace
    )
}

const JSON: &str = "application/json";

#[tokio::test]
async fn strict_refuses_unknown_and_repeated_fields_of_custom_resources() {
    let env = Env::connect().await;
    let path = format!("{}?fieldValidation=Strict", jobs_path(&env));
    let body = json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
        "metadata": {"name": "j"}, "spec": {"image": "nginx", "imagee": "x"}});
    let r = env
        .send("POST", &path, JSON, body.to_string().as_bytes())
        .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (400, Some("BadRequest")),
        "{r:?}"
    );
    assert_eq!(
        r.message(),
        "ImagePullJob in version \"v1beta1\" cannot be handled as a ImagePullJob: strict decoding error: unknown field \"spec.imagee\""
    );

    // Several at once, at the root and in list items, all named (in no promised order).
    let body = json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "colour": 1,
        "metadata": {"name": "j"}, "spec": {"image": "nginx",
        "selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "valuez": []}]}}});
    let r = env
        .send("POST", &path, JSON, body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    for field in ["colour", "spec.selector.matchExpressions[0].valuez"] {
        assert!(
            r.message().contains(&format!("unknown field \"{field}\"")),
            "{field}: {}",
            r.message()
        );
    }

    let repeated = br#"{"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
        "metadata": {"name": "j"}, "spec": {"image": "nginx", "image": "busybox"}}"#;
    let r = env.send("POST", &path, JSON, repeated).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.message(),
        "ImagePullJob in version \"v1beta1\" cannot be handled as a ImagePullJob: strict decoding error: duplicate field \"spec.image\""
    );

    // Nothing was stored.
    let r = env
        .send("GET", &format!("{}/j", jobs_path(&env)), "", b"")
        .await;
    assert_eq!(r.status, 404);
    env.finish().await;
}

#[tokio::test]
async fn warn_is_the_default_and_ignore_is_silent() {
    let env = Env::connect().await;
    let body = |name: &str| {
        json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
            "metadata": {"name": name}, "spec": {"image": "nginx", "imagee": "x"}})
        .to_string()
    };
    let r = env
        .send("POST", &jobs_path(&env), JSON, body("warned").as_bytes())
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.warnings, [r#"299 - "unknown field \"spec.imagee\"""#]);
    assert!(
        r.body["spec"].get("imagee").is_none(),
        "the field is dropped"
    );

    let path = format!("{}?fieldValidation=Warn", jobs_path(&env));
    let r = env
        .send("POST", &path, JSON, body("warned-too").as_bytes())
        .await;
    assert_eq!((r.status, r.warnings.len()), (201, 1), "{r:?}");

    let path = format!("{}?fieldValidation=Ignore", jobs_path(&env));
    let r = env
        .send("POST", &path, JSON, body("ignored").as_bytes())
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(r.body["spec"].get("imagee").is_none());

    // Any other value is refused, naming the parameter, as kube-apiserver checks CreateOptions.
    let path = format!("{}?fieldValidation=strict", jobs_path(&env));
    let r = env.send("POST", &path, JSON, body("bad").as_bytes()).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (422, Some("Invalid")),
        "{r:?}"
    );
    assert!(
        r.message().starts_with(
            "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"strict\": supported values: "
        ),
        "{}",
        r.message()
    );
    env.finish().await;
}

#[tokio::test]
async fn built_in_kinds_report_what_their_typed_form_drops() {
    let env = Env::connect().await;
    let path = format!("/api/v1/namespaces/{}/configmaps", env.namespace);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "labelz": {"a": "b"}}, "data": {"k": "v"}, "datas": {"k": "v"}});
    let r = env
        .send(
            "POST",
            &format!("{path}?fieldValidation=Strict"),
            JSON,
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.message().starts_with(
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: "
        ),
        "{}",
        r.message()
    );
    for field in ["datas", "metadata.labelz"] {
        assert!(
            r.message().contains(&format!("unknown field \"{field}\"")),
            "{}",
            r.message()
        );
    }
    // Empty maps and lists the typed form leaves out are not unknown.
    let ok = json!({"metadata": {"name": "c", "labels": {}, "finalizers": []}, "data": {"k": "v"}});
    let r = env
        .send(
            "POST",
            &format!("{path}?fieldValidation=Strict"),
            JSON,
            ok.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // An update is checked the same way.
    let mut updated = r.body.clone();
    updated["datas"] = json!({"x": "y"});
    let r = env
        .send(
            "PUT",
            &format!("{path}/c?fieldValidation=Strict"),
            JSON,
            updated.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.message(),
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"datas\""
    );
    let r = env
        .send(
            "PUT",
            &format!("{path}/c"),
            JSON,
            updated.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.warnings, [r#"299 - "unknown field \"datas\"""#]);
    env.finish().await;
}

#[tokio::test]
async fn patches_are_checked_on_the_patched_object() {
    let env = Env::connect().await;
    let created = env
        .send(
            "POST",
            &jobs_path(&env),
            JSON,
            json!({"metadata": {"name": "j"}, "spec": {"image": "nginx"}})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let job = format!("{}/j", jobs_path(&env));
    let merge = "application/merge-patch+json";

    let strict = env
        .send(
            "PATCH",
            &format!("{job}?fieldValidation=Strict"),
            merge,
            br#"{"spec": {"parallelizm": 3}}"#,
        )
        .await;
    assert_eq!(
        (strict.status, strict.body["reason"].as_str()),
        (422, Some("Invalid")),
        "{strict:?}"
    );
    assert!(
        strict
            .message()
            .contains("strict decoding error: unknown field \"spec.parallelizm\""),
        "{}",
        strict.message()
    );
    assert_eq!(strict.body["details"]["causes"][0]["field"], "patch");

    let warned = env
        .send(
            "PATCH",
            &job,
            merge,
            br#"{"spec": {"parallelism": 2, "parallelism": 3, "parallelizm": 3}}"#,
        )
        .await;
    assert_eq!(warned.status, 200, "{warned:?}");
    assert_eq!(warned.body["spec"]["parallelism"], 3, "the last one wins");
    for w in [
        r#"299 - "duplicate field \"spec.parallelism\"""#,
        r#"299 - "unknown field \"spec.parallelizm\"""#,
    ] {
        assert!(
            warned.warnings.iter().any(|x| x == w),
            "{:?}",
            warned.warnings
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn bodies_are_json_or_yaml() {
    let env = Env::connect().await;
    let yaml = b"apiVersion: apps.kruise.io/v1beta1\nkind: ImagePullJob\nmetadata:\n  name: from-yaml\nspec:\n  image: nginx\n";
    let r = env
        .send("POST", &jobs_path(&env), "application/yaml", yaml)
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["spec"]["pullPolicy"]["timeoutSeconds"], 600);

    // What kubectl's typed commands send for built-in kinds; custom resources never take it.
    let r = env
        .send(
            "POST",
            &jobs_path(&env),
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\n\x0cnot really",
        )
        .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (415, Some("UnsupportedMediaType")),
        "{r:?}"
    );
    assert!(
        r.message().starts_with(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
        ),
        "{}",
        r.message()
    );

    let r = env
        .send("POST", &jobs_path(&env), JSON, b"{\"metadata\": ")
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = env
        .send(
            "PATCH",
            &format!("{}/from-yaml", jobs_path(&env)),
            "text/plain",
            b"{}",
        )
        .await;
    assert_eq!(r.status, 415, "{r:?}");
    env.finish().await;
}
