//! HTTP: discovery, the resource paths (`/api/v1/...`, `/apis/{group}/{version}/...`, namespaced
//! and cluster-scoped, with `/status`), verbs mapped onto the store, and `/_test/` controls.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};
use crate::faults::{FaultRequest, Faults};
use crate::gc::DeleteOptions;
use crate::patch::{self, PatchType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{present, Store};
use crate::watch::{self, Filter, ListOptions, WatchOptions};

#[derive(Clone)]
pub struct App {
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
}

/// What a resource path names.
struct Target {
    info: Arc<ResourceInfo>,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

pub async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The test controls stay prompt, or a test could not lift the latency it injected.
    if !uri.path().starts_with("/_test/") {
        let write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        app.faults.delay(uri.path(), write).await;
    }
    let query: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    match route(&app, &method, uri.path(), &query, &headers, body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn route(
    app: &App,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => return Ok(Json(version()).into_response()),
        ["healthz"] | ["readyz"] | ["livez"] => return Ok("ok".into_response()),
        ["_test", rest @ ..] => return test_control(app, method, rest, body),
        ["api"] => return Ok(Json(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )
        .into_response()),
        ["apis"] => return Ok(Json(group_list(app)).into_response()),
        ["apis", group] => {
            let list = group_list(app);
            let found = list["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|g| g["name"] == *group)
                .cloned();
            return found
                .map(|mut g| {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    Json(g).into_response()
                })
                .ok_or_else(ApiError::path_not_found);
        }
        ["openapi", "v3"] => return Ok(Json(openapi_root(app)).into_response()),
        ["openapi", "v3", "api", "v1"] => {
            return Ok(Json(openapi_group_version(app, "", "v1")).into_response())
        }
        ["openapi", "v3", "apis", group, version] => {
            return Ok(Json(openapi_group_version(app, group, version)).into_response())
        }
        ["api", "v1"] => return resource_list(app, "", "v1"),
        ["apis", group, version] => return resource_list(app, group, version),
        _ => {}
    }
    let target = parse_target(app, &segs)?;
    let verb = verb_of(method, &target, query);
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|a| a.to_str().ok())
        .and_then(|a| a.split('/').next())
        .unwrap_or_default();
    app.faults.count((
        verb.to_string(),
        target.info.qualified(),
        target.subresource.clone().unwrap_or_default(),
        agent.to_string(),
        target.namespace.clone().unwrap_or_default(),
    ));
    if matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) {
        if let Some(code) = app.faults.take_write_failure() {
            return Err(if code == 429 {
                ApiError::too_many_requests("injected: too many requests, please try again later")
            } else {
                ApiError::internal("injected: internal error")
            });
        }
    }
    serve(app, verb, target, query, headers, body).await
}

fn verb_of(method: &Method, t: &Target, query: &HashMap<String, String>) -> &'static str {
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method, t.name.is_some()) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unsupported",
    }
}

fn parse_target(app: &App, segs: &[&str]) -> ApiResult<Target> {
    let (group, version, rest) = match segs {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let catalog = app.store.lock().catalog.clone();
    let lookup = |resource: &str| {
        catalog
            .get(group, version, resource)
            .ok_or_else(ApiError::path_not_found)
    };
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && catalog
            .get(group, version, rest[2])
            .is_some_and(|r| r.namespaced);
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::path_not_found()),
    };
    let info = lookup(resource)?;
    if info.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::path_not_found());
    }
    if let Some(s) = &sub {
        if !(s == "status" && info.status_subresource) {
            return Err(ApiError::path_not_found());
        }
    }
    Ok(Target {
        info,
        version: version.to_string(),
        namespace,
        name,
        subresource: sub,
    })
}

fn body_json(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn filter(t: &Target, query: &HashMap<String, String>) -> ApiResult<Filter> {
    Ok(Filter {
        namespace: t.namespace.clone(),
        labels: LabelSelector::parse(
            query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        fields: FieldSelector::parse(
            query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
            &t.info.kind,
            &t.info.group,
        )?,
    })
}

async fn serve(
    app: &App,
    verb: &str,
    t: Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let store = &app.store;
    let ns = t.namespace.clone().unwrap_or_default();
    let status_only = t.subresource.is_some();
    let info = t.info.clone();
    let ok = |v: Value| Ok(Json(present(&info, &t.version, v)).into_response());
    let wants_table = headers
        .get("accept")
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    match verb {
        "get" if wants_table => {
            let obj = store.get(&info, &ns, t.name.as_deref().unwrap_or_default())?;
            Ok(Json(crate::table::table(
                &info,
                &t.version,
                std::slice::from_ref(&obj),
                "",
            ))
            .into_response())
        }
        "list" if wants_table => {
            let list = store.list(
                &info,
                &t.version,
                &filter(&t, query)?,
                &ListOptions {
                    limit: None,
                    continue_token: None,
                },
            )?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let rv = list
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(Json(crate::table::table(&info, &t.version, &items, rv)).into_response())
        }
        "get" => ok(store.get(&info, &ns, t.name.as_deref().unwrap_or_default())?),
        "list" => {
            let opts = ListOptions {
                limit: query.get("limit").and_then(|l| l.parse().ok()),
                continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
            };
            Ok(Json(store.list(&info, &t.version, &filter(&t, query)?, &opts)?).into_response())
        }
        "watch" => {
            let opts = WatchOptions {
                resource_version: query.get("resourceVersion").cloned(),
                send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
                bookmarks: query
                    .get("allowWatchBookmarks")
                    .is_some_and(|v| v == "true"),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .map(std::time::Duration::from_secs),
            };
            let stream = watch::watch(
                store.clone(),
                info.clone(),
                t.version.clone(),
                filter(&t, query)?,
                opts,
                app.faults.drop_watches.subscribe(),
            )?;
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .map_err(|e| ApiError::internal(e.to_string()))?)
        }
        "create" => {
            if t.name.is_some() {
                return Err(ApiError::method_not_allowed(
                    "POST is not allowed on a named object",
                ));
            }
            let created = store.create(&info, &t.version, &ns, body_json(&body)?)?;
            Ok((
                StatusCode::CREATED,
                Json(present(&info, &t.version, created)),
            )
                .into_response())
        }
        "update" => {
            let name = t
                .name
                .as_deref()
                .ok_or_else(|| ApiError::method_not_allowed("PUT needs a name"))?;
            ok(store.update(&info, &t.version, &ns, name, body_json(&body)?, status_only)?)
        }
        "patch" => {
            let name = t
                .name
                .as_deref()
                .ok_or_else(|| ApiError::method_not_allowed("PATCH needs a name"))?;
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = PatchType::from_content_type(ct)?;
            ok(apply_patch(store, &t, &ns, name, kind, &body)?)
        }
        "delete" => {
            let name = t.name.as_deref().unwrap_or_default();
            let opts = DeleteOptions::from_body(
                &body_json(&body)?,
                query.get("propagationPolicy").map(String::as_str),
            );
            ok(store.delete(&info, &ns, name, &opts)?)
        }
        "deletecollection" => {
            let f = filter(&t, query)?;
            let list = store.list(
                &info,
                &t.version,
                &f,
                &ListOptions {
                    limit: None,
                    continue_token: None,
                },
            )?;
            let opts = DeleteOptions::from_body(
                &body_json(&body)?,
                query.get("propagationPolicy").map(String::as_str),
            );
            for item in list["items"].as_array().into_iter().flatten() {
                let item_ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let item_name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let _ = store.delete(&info, item_ns, item_name, &opts);
            }
            Ok(Json(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            )
            .into_response())
        }
        _ => Err(ApiError::method_not_allowed("method not allowed")),
    }
}

fn apply_patch(
    store: &Store,
    t: &Target,
    ns: &str,
    name: &str,
    kind: PatchType,
    body: &Bytes,
) -> ApiResult<Value> {
    let info = &t.info;
    match kind {
        PatchType::Apply => {
            return Err(ApiError::unsupported_media_type("server-side apply is not implemented by the test API server; use a merge or JSON patch"))
        }
        PatchType::Strategic if info.is_crd() => {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ))
        }
        _ => {}
    }
    let patch_body = body_json(body)?;
    let mut st = store.lock();
    let current = st.current(info, ns, name)?;
    let mut patched = present(info, &t.version, current);
    match kind {
        PatchType::Json => patch::json_patch(&mut patched, &patch_body)?,
        _ => patch::merge_patch(&mut patched, &patch_body),
    }
    store.update_locked(
        &mut st,
        info,
        &t.version,
        ns,
        name,
        patched,
        t.subresource.is_some(),
        true,
    )
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
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.resource)
        } else {
            format!("{prefix}/{}/{{name}}", r.resource)
        };
        let op = json!({"x-kubernetes-group-version-kind": gvk, "parameters": param});
        paths.insert(path, json!({"put": op, "patch": op}));
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

fn test_control(app: &App, method: &Method, rest: &[&str], body: Bytes) -> ApiResult<Response> {
    match (method, rest) {
        (&Method::POST, ["faults"]) => {
            let req: FaultRequest =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            app.faults.apply(&req);
            if req.compact == Some(true) {
                app.store.compact();
            }
            Ok(Json(json!({"ok": true})).into_response())
        }
        (&Method::GET, ["requests"]) => Ok(Json(app.faults.counts_json()).into_response()),
        (&Method::DELETE, ["requests"]) => {
            app.faults.reset_counts();
            Ok(Json(json!({"ok": true})).into_response())
        }
        _ => Err(ApiError::path_not_found()),
    }
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
