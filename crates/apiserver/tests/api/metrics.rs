//! `apiserver_request_total` on `/metrics`, counted alike on this server and a real one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::common::Env;

/// `apiserver_request_total` samples for ConfigMaps, by verb, scope and code.
async fn configmap_requests(env: &Env) -> BTreeMap<(String, String, String), u64> {
    let text = env
        .client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if labels.get("resource") != Some(&"configmaps")
            || labels.get("group") != Some(&"")
            || labels.get("component") != Some(&"apiserver")
            || labels.get("subresource") != Some(&"")
        {
            continue;
        }
        let key = (
            labels["verb"].to_string(),
            labels["scope"].to_string(),
            labels["code"].to_string(),
        );
        *out.entry(key).or_default() += value.parse::<f64>().unwrap() as u64;
    }
    out
}

#[tokio::test]
async fn requests_are_counted_as_kube_apiserver_counts_them() {
    let env = Env::connect().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let before = configmap_requests(&env).await;
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.get("c").await.unwrap();
    assert!(cms.get_opt("missing").await.unwrap().is_none());
    cms.list(&ListParams::default()).await.unwrap();
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    cms.delete("c", &DeleteParams::default()).await.unwrap();
    let after = configmap_requests(&env).await;
    // Other clients of a shared server may add to the counts, never take from them.
    let grew = |verb: &str, scope: &str, code: &str| {
        let key = (verb.to_string(), scope.to_string(), code.to_string());
        after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0)
    };
    for (verb, scope, code) in [
        ("POST", "resource", "201"),
        ("GET", "resource", "200"),
        ("GET", "resource", "404"),
        ("LIST", "namespace", "200"),
        ("PATCH", "resource", "200"),
        ("DELETE", "resource", "200"),
    ] {
        assert!(
            grew(verb, scope, code) >= 1,
            "{verb} {scope} {code}: {after:?}"
        );
    }
    env.finish().await;
}
