//! Built-in kinds: decoded into their typed form (which checks every field's type and drops
//! unknown fields, as the real server's decoder does), plus the validation rules of the kinds the
//! binaries write (Secret, Event, Pod, Namespace). The event rules are in `events_view`; the
//! bodies of TokenRequest and TokenReview are decoded here too, and answered in `tokens`.

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authentication, coordination::v1 as coordination,
    core::v1 as core, events::v1 as events,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use kruise_crd_validate::{ErrorKind, FieldError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};
use crate::events_view;

fn roundtrip<T: DeserializeOwned + Serialize>(
    obj: Value,
    kind: &str,
    version: &str,
) -> ApiResult<Value> {
    let typed: T = serde_json::from_value(obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    serde_json::to_value(typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// Decodes and re-encodes a built-in object: type errors become 400s, unknown fields go.
pub fn decode(info: &ResourceInfo, obj: Value) -> ApiResult<Value> {
    let v = info.storage_version.as_str();
    let k = info.kind.as_str();
    match (info.group.as_str(), k) {
        ("", "Namespace") => roundtrip::<core::Namespace>(obj, k, v),
        ("", "Node") => roundtrip::<core::Node>(obj, k, v),
        ("", "Pod") => roundtrip::<core::Pod>(obj, k, v),
        ("", "Secret") => {
            let mut secret = roundtrip::<core::Secret>(obj, k, v)?;
            // The real server's default (`kubectl create secret generic` sends no type).
            if secret["type"].as_str().is_none_or(str::is_empty) {
                secret["type"] = serde_json::json!("Opaque");
            }
            Ok(secret)
        }
        ("", "ConfigMap") => roundtrip::<core::ConfigMap>(obj, k, v),
        ("", "ServiceAccount") => roundtrip::<core::ServiceAccount>(obj, k, v),
        ("authentication.k8s.io", "TokenRequest") => {
            roundtrip::<authentication::TokenRequest>(obj, k, v)
        }
        ("authentication.k8s.io", "TokenReview") => {
            roundtrip::<authentication::TokenReview>(obj, k, v)
        }
        ("", "Event") => roundtrip::<core::Event>(obj, k, v),
        ("events.k8s.io", "Event") => roundtrip::<events::Event>(obj, k, v),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::Lease>(obj, k, v),
        ("apps", "Deployment") => roundtrip::<apps::Deployment>(obj, k, v),
        ("apps", "StatefulSet") => roundtrip::<apps::StatefulSet>(obj, k, v),
        ("apps", "DaemonSet") => roundtrip::<apps::DaemonSet>(obj, k, v),
        ("apps", "ReplicaSet") => roundtrip::<apps::ReplicaSet>(obj, k, v),
        ("apps", "ControllerRevision") => roundtrip::<apps::ControllerRevision>(obj, k, v),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            roundtrip::<apiextensions::CustomResourceDefinition>(obj, k, v)
        }
        _ => Ok(obj),
    }
}

fn err(field: &str, kind: ErrorKind, value: Option<String>, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        kind,
        value,
        detail: detail.into(),
    }
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Kind-specific rules on a decoded object; `old` is the stored object on update.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Secret") => secret(obj, old),
        // The rules read the core form, whichever API the request came through.
        ("events.k8s.io", "Event") => events_view::validate(
            &events_view::to_core(obj.clone()),
            old.map(|o| events_view::to_core(o.clone())).as_ref(),
            true,
        ),
        ("", "Event") => events_view::validate(
            obj,
            old.map(|o| events_view::to_core(o.clone())).as_ref(),
            false,
        ),
        ("", "Pod") => pod(obj, old),
        _ => Vec::new(),
    }
}

fn secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = 0usize;
    for (k, v) in obj
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let valid = !k.is_empty()
            && k.len() <= 253
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid {
            errors.push(err(
                &format!("data[{k}]"),
                ErrorKind::Invalid,
                Some(format!("{k:?}")),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        total += v.as_str().map_or(0, |s| s.len() * 3 / 4);
    }
    if total > 1024 * 1024 {
        errors.push(err(
            "data",
            ErrorKind::TooLong,
            None,
            "may not be more than 1048576 bytes",
        ));
    }
    let type_ = str_at(obj, "/type");
    let json_key = match type_ {
        "kubernetes.io/dockerconfigjson" => Some(".dockerconfigjson"),
        "kubernetes.io/dockercfg" => Some(".dockercfg"),
        _ => None,
    };
    if let Some(key) = json_key {
        match obj
            .pointer(&format!("/data/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
        {
            None => errors.push(err(&format!("data[{key}]"), ErrorKind::Required, None, "")),
            Some(b64) => {
                use base64::Engine;
                let parsed = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok());
                if parsed.is_none() {
                    errors.push(err(
                        &format!("data[{key}]"),
                        ErrorKind::Invalid,
                        Some("\"<secret contents redacted>\"".into()),
                        "invalid character in JSON",
                    ));
                }
            }
        }
    }
    if let Some(old) = old {
        if str_at(old, "/type") != type_ {
            errors.push(err(
                "type",
                ErrorKind::Invalid,
                Some(format!("{type_:?}")),
                "field is immutable",
            ));
        }
        if old.get("immutable").and_then(Value::as_bool) == Some(true)
            && old.get("data") != obj.get("data")
        {
            errors.push(err(
                "data",
                ErrorKind::Forbidden,
                None,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errors
}

fn pod(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        errors.push(err("spec.containers", ErrorKind::Required, None, ""));
    }
    for (i, c) in containers.into_iter().flatten().enumerate() {
        if str_at(c, "/name").is_empty() {
            errors.push(err(
                &format!("spec.containers[{i}].name"),
                ErrorKind::Required,
                None,
                "",
            ));
        }
        if str_at(c, "/image").is_empty() {
            errors.push(err(
                &format!("spec.containers[{i}].image"),
                ErrorKind::Required,
                None,
                "",
            ));
        }
    }
    if let Some(old) = old {
        if mutable_pod_spec_stripped(old) != mutable_pod_spec_stripped(obj) {
            errors.push(err("spec", ErrorKind::Forbidden, None, "pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`"));
        }
    }
    errors
}

/// The pod spec without the fields an update may change.
fn mutable_pod_spec_stripped(pod: &Value) -> Value {
    let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        for field in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
        ] {
            map.remove(field);
        }
        for containers in ["containers", "initContainers"] {
            for c in map
                .get_mut(containers)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(c) = c.as_object_mut() {
                    c.remove("image");
                }
            }
        }
    }
    spec
}
