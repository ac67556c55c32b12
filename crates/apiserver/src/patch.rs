//! Patch bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and strategic merge patch
//! for built-in kinds, applied here with merge-patch semantics (maps merge, lists are replaced;
//! the binaries never send list-merging strategic patches).

use serde_json::Value;

use crate::errors::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type of a media type, or the 415 kube-apiserver answers, listing the patch
    /// types of the resource (custom resources have no strategic merge patch).
    pub fn from_content_type(media_type: &str, crd: bool) -> ApiResult<Self> {
        match media_type {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" if !crd => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            _ if crd => Err(crate::body::unsupported(
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            )),
            _ => Err(crate::body::unsupported(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml",
            )),
        }
    }
}

pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

pub fn json_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    for (i, op) in ops.iter().enumerate() {
        let bad =
            |why: &str| ApiError::unprocessable_patch(format!("JSON patch operation {i}: {why}"));
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing op"))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing path"))?;
        match kind {
            "add" => add(
                target,
                path,
                op.get("value")
                    .cloned()
                    .ok_or_else(|| bad("missing value"))?,
            )
            .map_err(|e| bad(&e))?,
            "remove" => {
                remove(target, path).map_err(|e| bad(&e))?;
            }
            "replace" => {
                remove(target, path).map_err(|e| bad(&e))?;
                add(
                    target,
                    path,
                    op.get("value")
                        .cloned()
                        .ok_or_else(|| bad("missing value"))?,
                )
                .map_err(|e| bad(&e))?;
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("missing from"))?;
                let v = if kind == "move" {
                    remove(target, from).map_err(|e| bad(&e))?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or_else(|| bad(&format!("from {from} does not exist")))?
                };
                add(target, path, v).map_err(|e| bad(&e))?;
            }
            "test" => {
                let want = op.get("value").ok_or_else(|| bad("missing value"))?;
                if target.pointer(path) != Some(want) {
                    return Err(bad(&format!("test failed at {path}")));
                }
            }
            other => return Err(bad(&format!("unknown op {other:?}"))),
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), String> {
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("invalid path {path:?}"))?;
    let unescape = |s: &str| s.replace("~1", "/").replace("~0", "~");
    Ok((path[..i].to_string(), unescape(&path[i + 1..])))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, key) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(key, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let idx = if key == "-" {
                a.len()
            } else {
                key.parse().map_err(|_| format!("bad index {key:?}"))?
            };
            if idx > a.len() {
                return Err(format!("index {idx} out of range"));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!("path {parent:?} does not exist")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => m
            .remove(&key)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Some(Value::Array(a)) => {
            let idx: usize = key.parse().map_err(|_| format!("bad index {key:?}"))?;
            if idx >= a.len() {
                return Err(format!("index {idx} out of range"));
            }
            Ok(a.remove(idx))
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

impl ApiError {
    fn unprocessable_patch(message: String) -> Self {
        let mut e = ApiError::bad_request(message);
        e.code = 422;
        e.reason = "Invalid";
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"a": [1, 2], "b": {"c": 1}});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "replace", "path": "/b/c", "value": 2},
                {"op": "test", "path": "/b/c", "value": 2},
                {"op": "remove", "path": "/a/0"},
                {"op": "copy", "from": "/b", "path": "/d"},
            ]),
        )
        .unwrap();
        assert_eq!(t, json!({"a": [2, 3], "b": {"c": 2}, "d": {"c": 2}}));
        assert!(json_patch(&mut t, &json!([{"op": "test", "path": "/b/c", "value": 9}])).is_err());
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
