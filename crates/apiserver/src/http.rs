//! HTTP: the resource paths (`/api/v1/...`, `/apis/{group}/{version}/...`, namespaced and
//! cluster-scoped, with `/status`) and their verbs mapped onto the store, with what kube-apiserver
//! does around them: the write options (`fieldValidation`, `dryRun`), `Warning` headers, request
//! metrics; also `/metrics` and the `/_test/` controls. Discovery is in `discovery`; a
//! ServiceAccount's `/token` and `tokenreviews` are answered by `tokens`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::body;
use crate::builtin;
use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};
use crate::faults::{FaultRequest, Faults};
use crate::fieldvalidation::{self as fv, WriteOptions};
use crate::gc::DeleteOptions;
use crate::list::ListOptions;
use crate::metrics::{self, Metrics};
use crate::patch::{self, PatchType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{check_type_meta, present, Store, UpdateMode};
use crate::tokens::Tokens;
use crate::watch::{self, Filter, WatchOptions};

#[derive(Clone)]
pub struct App {
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<Tokens>,
}

/// What a resource path names.
struct Target {
    info: Arc<ResourceInfo>,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// What a request leaves besides its response: warnings for its headers (also on a refusal, as
/// kube-apiserver sends them) and the labels it is counted under.
#[derive(Default)]
struct Exchange {
    warnings: Vec<String>,
    metric: Option<metrics::Request>,
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
    let mut ex = Exchange::default();
    let mut resp = match route(&app, &method, uri.path(), &query, &headers, body, &mut ex).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    let mut sent = Vec::new();
    for w in ex.warnings {
        if sent.contains(&w) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(&fv::warning_header(&w)) {
            resp.headers_mut().append("warning", v);
        }
        sent.push(w);
    }
    if let Some(m) = ex.metric {
        app.metrics.record(m, resp.status().as_u16());
    }
    resp
}

async fn route(
    app: &App,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    ex: &mut Exchange,
) -> ApiResult<Response> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(resp) = crate::discovery::route(app, &segs) {
        return resp;
    }
    match segs.as_slice() {
        ["_test", rest @ ..] => return test_control(app, method, rest, body),
        ["metrics"] => {
            return Ok((
                [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                app.metrics.render(),
            )
                .into_response())
        }
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
    ex.metric = Some(metrics::Request::new(
        verb,
        body::media_type(headers).starts_with("application/apply-patch"),
        query.get("dryRun").is_some_and(|d| d == "All"),
        &target.info.group,
        &target.version,
        &target.info.resource,
        target.subresource.as_deref().unwrap_or_default(),
        target.name.is_some(),
        target.namespace.is_some(),
    ));
    if matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) {
        if let Some(code) = app.faults.take_write_failure(verb, &target.info.resource) {
            return Err(if code == 429 {
                ApiError::too_many_requests("injected: too many requests, please try again later")
            } else {
                ApiError::internal("injected: internal error")
            });
        }
    }
    if verb == "watch" {
        app.faults.hold_watch(path).await;
    }
    serve(app, verb, target, query, headers, body, ex).await
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
        if !((s == "status" && info.status_subresource) || (s == "token" && info.token_subresource))
        {
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

/// A create or update body, decoded and checked for unknown and repeated fields.
fn object_body(
    t: &Target,
    headers: &HeaderMap,
    body: &[u8],
    opts: WriteOptions,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    kind_body(&t.info, &t.version, headers, body, opts, warnings)
}

/// A body of `info`'s kind, decoded and checked for unknown and repeated fields.
fn kind_body(
    info: &ResourceInfo,
    version: &str,
    headers: &HeaderMap,
    body: &[u8],
    opts: WriteOptions,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let decoded = body::decode_object(headers, body, !info.is_crd())?;
    if opts.validation != fv::Directive::Ignore {
        let mut problems = fv::duplicate_fields(&decoded.duplicates);
        problems.extend(fv::unknown_fields(info, version, &decoded.value));
        fv::enforce(opts.validation, info, version, problems, warnings)?;
    }
    Ok(decoded.value)
}

/// The body of a create-only request (a TokenRequest, a TokenReview) as its typed form: decoded,
/// field-validated, its kind checked, its fields' types checked, without the status it answers.
fn request_body(
    info: &ResourceInfo,
    headers: &HeaderMap,
    body: &[u8],
    query: &HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let version = info.storage_version.as_str();
    body::accepts_object(headers, true)?;
    let opts = fv::write_options(query, "CreateOptions")?;
    let mut obj = kind_body(info, version, headers, body, opts, warnings)?;
    let Some(fields) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    // The server writes the status (kubectl's protobuf sends an empty one, zero time and all).
    fields.remove("status");
    check_type_meta(info, version, &obj)?;
    builtin::decode(info, obj)
}

/// What kube-apiserver answers a verb a resource does not serve.
fn not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}

/// The options of a delete: propagation and preconditions from the body, `dryRun` from either.
fn delete_options(
    headers: &HeaderMap,
    body: &[u8],
    query: &HashMap<String, String>,
) -> ApiResult<DeleteOptions> {
    // DeleteOptions come as JSON or YAML (kubectl sends JSON); protobuf is read for objects.
    let options = body::decode_object(headers, body, false)?.value;
    let mut opts =
        DeleteOptions::from_body(&options, query.get("propagationPolicy").map(String::as_str));
    opts.dry_run = fv::delete_dry_run(query, &options)?;
    Ok(opts)
}

async fn serve(
    app: &App,
    verb: &str,
    t: Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    ex: &mut Exchange,
) -> ApiResult<Response> {
    let store = &app.store;
    let ns = t.namespace.clone().unwrap_or_default();
    let info = t.info.clone();
    let ok = |v: Value| Ok(Json(present(&info, &t.version, v)).into_response());
    let accept = headers.get("accept").and_then(|a| a.to_str().ok());
    let wants_table = accept.is_some_and(|a| a.contains("as=Table"));
    let wants_metadata = accept.is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let all = ListOptions::all();
    if t.subresource.as_deref() == Some("token") {
        let name = t.name.as_deref().unwrap_or_default();
        if verb != "create" {
            return Err(not_allowed());
        }
        let request_info = ResourceInfo::token_request();
        let req = request_body(&request_info, headers, &body, query, &mut ex.warnings)?;
        let answer = app.tokens.request(store, &ns, name, req)?;
        return Ok((StatusCode::CREATED, Json(answer)).into_response());
    }
    if info.create_only {
        if verb != "create" || t.name.is_some() {
            return Err(not_allowed());
        }
        let review = request_body(&info, headers, &body, query, &mut ex.warnings)?;
        let answer = app.tokens.review(store, review)?;
        return Ok((StatusCode::CREATED, Json(answer)).into_response());
    }
    match verb {
        "get" if wants_table => {
            let obj = store.get(&info, &ns, t.name.as_deref().unwrap_or_default())?;
            let obj = present(&info, &t.version, obj);
            let table = crate::table::table(&info, &t.version, std::slice::from_ref(&obj), "");
            Ok(Json(table).into_response())
        }
        "list" if wants_table => {
            let list = store.list(&info, &t.version, &filter(&t, query)?, &all)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let rv = list
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(Json(crate::table::table(&info, &t.version, &items, rv)).into_response())
        }
        "get" if wants_metadata => {
            let obj = store.get(&info, &ns, t.name.as_deref().unwrap_or_default())?;
            let obj = present(&info, &t.version, obj);
            Ok(Json(crate::store::metadata_only(obj)).into_response())
        }
        "get" => ok(store.get(&info, &ns, t.name.as_deref().unwrap_or_default())?),
        "list" => {
            let opts = ListOptions::from_query(query)?;
            let list = store.list(&info, &t.version, &filter(&t, query)?, &opts)?;
            let list = if wants_metadata {
                crate::store::metadata_list(list)
            } else {
                list
            };
            Ok(Json(list).into_response())
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
                metadata_only: wants_metadata,
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
            body::accepts_object(headers, !info.is_crd())?;
            let opts = fv::write_options(query, "CreateOptions")?;
            let obj = object_body(&t, headers, &body, opts, &mut ex.warnings)?;
            let created = store.create_with(&info, &t.version, &ns, obj, opts.dry_run)?;
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
            body::accepts_object(headers, !info.is_crd())?;
            let opts = fv::write_options(query, "UpdateOptions")?;
            let obj = object_body(&t, headers, &body, opts, &mut ex.warnings)?;
            let mode = UpdateMode {
                status_only: t.subresource.is_some(),
                dry_run: opts.dry_run,
            };
            ok(store.update(&info, &t.version, &ns, name, obj, mode)?)
        }
        "patch" => {
            let name = t
                .name
                .as_deref()
                .ok_or_else(|| ApiError::method_not_allowed("PATCH needs a name"))?;
            let kind = PatchType::from_content_type(&body::media_type(headers), info.is_crd())?;
            let opts = fv::write_options(query, "PatchOptions")?;
            ok(apply_patch(
                store,
                &t,
                &ns,
                name,
                kind,
                &body,
                opts,
                &mut ex.warnings,
            )?)
        }
        "delete" => {
            let name = t.name.as_deref().unwrap_or_default();
            let opts = delete_options(headers, &body, query)?;
            ok(store.delete(&info, &ns, name, &opts)?)
        }
        "deletecollection" => {
            let opts = delete_options(headers, &body, query)?;
            let list = store.list(&info, &t.version, &filter(&t, query)?, &all)?;
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

/// Patches the current object and updates it; field validation looks at the patch body's
/// repeated keys and at the patched object, as kube-apiserver's does.
#[allow(clippy::too_many_arguments)]
fn apply_patch(
    store: &Store,
    t: &Target,
    ns: &str,
    name: &str,
    kind: PatchType,
    body: &[u8],
    opts: WriteOptions,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let info = &t.info;
    if kind == PatchType::Apply {
        return Err(ApiError::unsupported_media_type(
            "server-side apply is not implemented by the test API server; use a merge or JSON patch",
        ));
    }
    let decoded = body::decode_json(body)?;
    let mut problems = fv::duplicate_fields(&decoded.duplicates);
    if kind == PatchType::Json {
        problems = problems.iter().map(|p| format!("json patch {p}")).collect();
    }
    let mut st = store.lock();
    let current = st.current(info, ns, name)?;
    let mut patched = present(info, &t.version, current);
    match kind {
        PatchType::Json => patch::json_patch(&mut patched, &decoded.value)?,
        _ => patch::merge_patch(&mut patched, &decoded.value),
    }
    if opts.validation != fv::Directive::Ignore {
        problems.extend(fv::unknown_fields(info, &t.version, &patched));
    }
    let shown = || match kind {
        PatchType::Strategic => fv::go_value(&decoded.value),
        _ => patched.to_string(),
    };
    fv::enforce_patch(opts.validation, shown, problems, warnings)?;
    let mode = UpdateMode {
        status_only: t.subresource.is_some(),
        dry_run: opts.dry_run,
    };
    store.update_locked(&mut st, info, &t.version, ns, name, patched, mode)
}

/// Body of `POST /_test/clock`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClockRequest {
    /// Seconds to move the token clock forward by.
    advance_seconds: u64,
}

fn test_control(app: &App, method: &Method, rest: &[&str], body: Bytes) -> ApiResult<Response> {
    match (method, rest) {
        (&Method::POST, ["faults"]) => {
            let req: FaultRequest =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if req.compact == Some(true) {
                app.store.compact();
            }
            app.faults.apply(&req);
            Ok(Json(json!({"ok": true})).into_response())
        }
        (&Method::GET, ["requests"]) => Ok(Json(app.faults.counts_json()).into_response()),
        (&Method::POST, ["clock"]) => {
            let req: ClockRequest =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            app.tokens.advance(req.advance_seconds);
            Ok(Json(json!({"ok": true, "now": app.tokens.now().to_rfc3339()})).into_response())
        }
        (&Method::GET, ["clock"]) => {
            Ok(Json(json!({"ok": true, "now": app.tokens.now().to_rfc3339()})).into_response())
        }
        (&Method::DELETE, ["requests"]) => {
            app.faults.reset_counts();
            Ok(Json(json!({"ok": true})).into_response())
        }
        _ => Err(ApiError::path_not_found()),
    }
}
