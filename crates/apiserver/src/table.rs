//! `kubectl get` output: the server-side Table form, with a CRD's printer columns.

use serde_json::{json, Value};

use crate::catalog::ResourceInfo;

/// Age as kubectl prints it: `45s`, `12m`, `3h`, `2d`.
pub fn age(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn cell(obj: &Value, column: &Value) -> Value {
    let path = column["jsonPath"].as_str().unwrap_or_default();
    let v = obj
        .pointer(&path.replace('.', "/"))
        .cloned()
        .unwrap_or(Value::Null);
    match (column["type"].as_str(), &v) {
        (Some("date"), Value::String(s)) => json!(age(s)),
        _ => v,
    }
}

pub fn table(
    info: &ResourceInfo,
    version: &str,
    objects: &[Value],
    resource_version: &str,
) -> Value {
    if info.is_view() {
        return crate::events_view::table(objects, resource_version);
    }
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    let extra: Vec<Value> = info
        .printer_columns
        .get(version)
        .cloned()
        .unwrap_or_else(|| {
            vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
        });
    for c in &extra {
        columns.push(json!({"name": c["name"], "type": c["type"], "format": "", "description": c["description"], "priority": c["priority"].as_i64().unwrap_or(0)}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(extra.iter().map(|c| cell(o, c)));
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version}, "columnDefinitions": columns, "rows": rows})
}
