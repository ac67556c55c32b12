//! Events under two APIs, as kube-apiserver serves them: one store, kept in the `events.k8s.io/v1`
//! form (what kube-rs's `Recorder` writes), and core `v1` `events` (what `kubectl get events` and
//! `kubectl describe` read) as a view converting each way. Also the rules kube-apiserver checks
//! events against, which depend on the API a request came through, the view's field selectors,
//! and the columns `kubectl get events` prints.

use kruise_crd_validate::{ErrorKind, FieldError};
use serde_json::{json, Value};

/// `events.k8s.io` field ↔ core field; everything else is named alike in both.
const RENAMED: [(&str, &str); 8] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(mut obj: Value, to_core: bool) -> Value {
    if let Some(map) = obj.as_object_mut() {
        for (events, core) in RENAMED {
            let (from, to) = if to_core {
                (events, core)
            } else {
                (core, events)
            };
            if from == to {
                continue;
            }
            if let Some(v) = map.remove(from) {
                map.insert(to.to_string(), v);
            }
        }
    }
    obj
}

/// A stored (`events.k8s.io`) event as core `v1` shows it.
pub fn to_core(obj: Value) -> Value {
    let mut obj = rename(obj, true);
    obj["apiVersion"] = json!("v1");
    obj["kind"] = json!("Event");
    obj
}

/// A core `v1` event in the stored (`events.k8s.io/v1`) form.
pub fn to_events(obj: Value) -> Value {
    let mut obj = rename(obj, false);
    obj["apiVersion"] = json!("events.k8s.io/v1");
    obj["kind"] = json!("Event");
    obj
}

/// The stored field a field selector label names, or None when kube-apiserver does not support
/// it; `core` for the core API's labels (`involvedObject.name`, ...), else `events.k8s.io`'s.
pub fn selector_field(label: &str, core: bool) -> Option<String> {
    const REFERENCE: [&str; 7] = [
        "kind",
        "namespace",
        "name",
        "uid",
        "apiVersion",
        "resourceVersion",
        "fieldPath",
    ];
    let (prefix, controller) = if core {
        ("involvedObject.", "reportingComponent")
    } else {
        ("regarding.", "reportingController")
    };
    if let Some(part) = label.strip_prefix(prefix) {
        return REFERENCE
            .contains(&part)
            .then(|| format!("regarding.{part}"));
    }
    match label {
        "metadata.name" | "metadata.namespace" | "reason" | "type" => Some(label.to_string()),
        l if l == controller => Some("reportingController".into()),
        "source" if core => Some("deprecatedSource.component".into()),
        _ => None,
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

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn set(obj: &Value, field: &str) -> bool {
    match obj.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        Some(Value::Object(m)) => m.values().any(|v| !v.is_null() && v != ""),
        Some(_) => true,
    }
}

/// kube-apiserver's event rules on an event in core form (the field names of its errors are the
/// internal ones, whichever API the request used). `strict` for requests through `events.k8s.io`,
/// whose creates and updates are checked further; `old` is the stored event on update.
pub fn validate(obj: &Value, old: Option<&Value>, strict: bool) -> Vec<FieldError> {
    let mut errors = legacy(obj);
    if !strict {
        return errors;
    }
    let series_changed = old.is_none_or(|o| o.get("series") != obj.get("series"));
    if let Some(series) = obj.get("series").filter(|s| !s.is_null() && series_changed) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errors.push(err(
                "series.count",
                ErrorKind::Invalid,
                Some("\"\"".into()),
                "should be at least 2",
            ));
        }
        if text(series, "/lastObservedTime").is_empty() {
            errors.push(err(
                "series.lastObservedTime",
                ErrorKind::Required,
                None,
                "",
            ));
        }
    }
    match old {
        None => {
            if !set(obj, "eventTime") {
                errors.push(err("eventTime", ErrorKind::Required, None, ""));
            }
            let type_ = text(obj, "/type");
            if type_ != "Normal" && type_ != "Warning" {
                errors.push(err(
                    "type",
                    ErrorKind::Invalid,
                    Some("\"\"".into()),
                    &format!("has invalid value: {type_}"),
                ));
            }
            for field in ["firstTimestamp", "lastTimestamp", "count", "source"] {
                if set(obj, field) {
                    errors.push(err(
                        field,
                        ErrorKind::Invalid,
                        Some("\"\"".into()),
                        "needs to be unset",
                    ));
                }
            }
        }
        Some(old) => {
            for (field, json) in [
                ("involvedObject", "involvedObject"),
                ("reason", "reason"),
                ("message", "message"),
                ("source", "source"),
                ("firstTimestamp", "firstTimestamp"),
                ("lastTimestamp", "lastTimestamp"),
                ("count", "count"),
                ("type", "type"),
                ("eventTime", "eventTime"),
                ("action", "action"),
                ("related", "related"),
                ("reportingController", "reportingComponent"),
                ("reportingInstance", "reportingInstance"),
            ] {
                let new_value = obj.get(json).filter(|v| !v.is_null());
                if new_value != old.get(json).filter(|v| !v.is_null()) {
                    let shown = new_value.map_or("null".to_string(), |v| match v {
                        Value::String(s) => format!("{s:?}"),
                        other => other.to_string(),
                    });
                    errors.push(err(
                        field,
                        ErrorKind::Invalid,
                        Some(shown),
                        "field is immutable",
                    ));
                }
            }
        }
    }
    errors
}

/// The rules every event passes, through either API (kube-apiserver's `legacyValidateEvent`).
fn legacy(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let namespace = text(obj, "/metadata/namespace");
    let involved = text(obj, "/involvedObject/namespace");
    let mismatch = || {
        err(
            "involvedObject.namespace",
            ErrorKind::Invalid,
            Some(format!("{involved:?}")),
            "does not match event.namespace",
        )
    };
    if !set(obj, "eventTime") {
        let ok = if involved.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == involved
        };
        if !ok {
            errors.push(mismatch());
        }
        return errors;
    }
    if involved.is_empty() && namespace != "default" && namespace != "kube-system" {
        errors.push(mismatch());
    }
    let controller = text(obj, "/reportingComponent");
    if controller.is_empty() {
        errors.push(err("reportingController", ErrorKind::Required, None, ""));
    }
    if let Some(problem) = crate::meta::qualified_name(controller) {
        errors.push(err(
            "reportingController",
            ErrorKind::Invalid,
            Some(format!("{controller:?}")),
            &problem,
        ));
    }
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let v = text(obj, &format!("/{field}"));
        if v.is_empty() {
            errors.push(err(field, ErrorKind::Required, None, ""));
        }
        if v.len() > limit {
            errors.push(err(
                field,
                ErrorKind::Invalid,
                Some("\"\"".into()),
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    if text(obj, "/message").len() > 1024 {
        errors.push(err(
            "message",
            ErrorKind::Invalid,
            Some("\"\"".into()),
            "can have at most 1024 characters",
        ));
    }
    errors
}

/// The columns `kubectl get events` prints (kube-apiserver's event table, without the ones it
/// shows only with `-o wide`), for events in core form.
pub fn table(objects: &[Value], resource_version: &str) -> Value {
    let columns = [
        ("Last Seen", "string"),
        ("Type", "string"),
        ("Reason", "string"),
        ("Object", "string"),
        ("Message", "string"),
    ];
    let columns: Vec<Value> = columns
        .iter()
        .map(|(name, t)| json!({"name": name, "type": t, "format": "", "description": "", "priority": 0}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let last = [
                "/series/lastObservedTime",
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .map(|p| text(o, p))
            .find(|t| !t.is_empty())
            .unwrap_or_default();
            let object = format!(
                "{}/{}",
                text(o, "/involvedObject/kind").to_lowercase(),
                text(o, "/involvedObject/name")
            );
            let cells = json!([
                crate::table::age(last),
                text(o, "/type"),
                text(o, "/reason"),
                object,
                text(o, "/message"),
            ]);
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version}, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_convert_both_ways() {
        let stored = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reportingController": "c",
            "reportingInstance": "i", "deprecatedCount": 2, "eventTime": "t", "action": "A",
        });
        let core = to_core(stored.clone());
        assert_eq!(
            core,
            json!({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reportingComponent": "c",
                "reportingInstance": "i", "count": 2, "eventTime": "t", "action": "A",
            })
        );
        assert_eq!(to_events(core), stored);
    }

    #[test]
    fn selectors_name_the_stored_fields() {
        assert_eq!(
            selector_field("involvedObject.name", true).as_deref(),
            Some("regarding.name")
        );
        assert_eq!(
            selector_field("regarding.uid", false).as_deref(),
            Some("regarding.uid")
        );
        assert_eq!(
            selector_field("source", true).as_deref(),
            Some("deprecatedSource.component")
        );
        assert_eq!(selector_field("involvedObject.name", false), None);
        assert_eq!(selector_field("regarding.colour", false), None);
    }

    #[test]
    fn the_rules_depend_on_the_api() {
        let new_style = json!({"metadata": {"namespace": "kube-system"}, "eventTime": "t", "reportingComponent": "c", "reportingInstance": "i", "action": "a", "reason": "r", "type": "Normal"});
        assert!(validate(&new_style, None, true).is_empty());
        let mut elsewhere = new_style.clone();
        elsewhere["metadata"]["namespace"] = json!("team");
        assert_eq!(
            validate(&elsewhere, None, false)[0].to_string(),
            "involvedObject.namespace: Invalid value: \"\": does not match event.namespace"
        );
        let old_style = json!({"metadata": {"namespace": "default"}, "message": "m"});
        assert!(validate(&old_style, None, false).is_empty());
        let strict: Vec<String> = validate(&old_style, None, true)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            strict,
            [
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: "
            ]
        );
    }
}
