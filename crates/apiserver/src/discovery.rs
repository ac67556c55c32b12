//! Discovery as kubectl and kube-rs read it: `/version`, `/api`, `/apis`, each group version's
//! resource list, and the OpenAPI v3 documents that tell kubectl the server validates fields
//! itself.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};
use crate::http::App;
use crate::store::Store;

/// The response to a discovery path, or None for other paths.
pub fn route(app: &App, segs: &[&str]) -> Option<ApiResult<Response>> {
    let found = match segs {
        ["version"] => Ok(Json(version()).into_response()),
        ["healthz"] | ["readyz"] | ["livez"] => Ok("ok".into_response()),
        ["api"] => Ok(Json(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )
        .into_response()),
        ["apis"] => Ok(Json(group_list(app)).into_response()),
        ["apis", group] => {
            let list = group_list(app);
            let found = list["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|g| g["name"] == *group)
                .cloned();
            found
                .map(|mut g| {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    Json(g).into_response()
                })
                .ok_or_else(ApiError::path_not_found)
        }
        ["openapi", "v3"] => Ok(Json(openapi_root(app)).into_response()),
        ["openapi", "v3", "api", "v1"] => {
            Ok(Json(openapi_group_version(app, "", "v1")).into_response())
        }
        ["openapi", "v3", "apis", group, version] => {
            Ok(Json(openapi_group_version(app, group, version)).into_response())
        }
        ["api", "v1"] => resource_list(app, "", "v1"),
        ["apis", group, version] => resource_list(app, group, version),
        _ => return None,
    };
    Some(found)
}

fn resource_list(app: &App, group: &str, version: &str) -> ApiResult<Response> {
    let catalog = app.store.lock().catalog.clone();
    catalog
        .resource_list(group, version)
        .map(|l| Json(l).into_response())
        .ok_or_else(ApiError::path_not_found)
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let major_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major = rest[..major_end].parse().unwrap_or(0);
    let tail = &rest[major_end..];
    let (stage, n) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, n)
}

fn group_list(app: &App) -> Value {
    let catalog = app.store.lock().catalog.clone();
    let groups: Vec<Value> = catalog
        .groups()
        .into_iter()
        .map(|(name, mut versions)| {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            let gv: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": gv, "preferredVersion": gv[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/openapi/v3`: one document per group version. kubectl reads it to learn that the server
/// validates fields itself (the `fieldValidation` parameter) and so sends objects unchanged.
fn openapi_root(app: &App) -> Value {
    let catalog = app.store.lock().catalog.clone();
    let mut paths = serde_json::Map::new();
    for r in catalog.all() {
        for v in &r.served_versions {
            let key = if r.group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{}/{v}", r.group)
            };
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}")}),
            );
        }
    }
    json!({ "paths": paths })
}

fn openapi_group_version(app: &App, group: &str, version: &str) -> Value {
    let catalog = app.store.lock().catalog.clone();
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for r in catalog
        .all()
        .filter(|r| r.group == group && r.served_versions.iter().any(|v| v == version))
    {
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        let param = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}]);
        let op = json!({"x-kubernetes-group-version-kind": gvk, "parameters": param});
        if r.create_only {
            // Reviews are only created: a POST on the collection.
            paths.insert(format!("{prefix}/{}", r.resource), json!({"post": op}));
        } else {
            let path = if r.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.resource)
            } else {
                format!("{prefix}/{}/{{name}}", r.resource)
            };
            paths.insert(path, json!({"put": op, "patch": op}));
        }
        let mut schema = match r.validator(version) {
            Some(_) => crd_schema(&app.store, r, version),
            None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        };
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        let id = format!(
            "{}.{version}.{}",
            if group.is_empty() {
                "io.k8s.api.core"
            } else {
                group
            },
            r.kind
        );
        schemas.insert(id, schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn crd_schema(store: &Store, r: &ResourceInfo, version: &str) -> Value {
    let st = store.lock();
    let crd = st
        .objects
        .get(&(
            "apiextensions.k8s.io".to_string(),
            "customresourcedefinitions".to_string(),
        ))
        .and_then(|m| m.get(&(String::new(), r.qualified())))
        .cloned()
        .unwrap_or_default();
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v["name"] == version))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}))
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-kruise-test", "gitCommit": "", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v1beta1", "v1", "v2beta1"];
        v.sort_by_key(|x| std::cmp::Reverse(super::version_priority(x)));
        assert_eq!(v, ["v1", "v2beta1", "v1beta1", "v1alpha1"]);
    }
}
