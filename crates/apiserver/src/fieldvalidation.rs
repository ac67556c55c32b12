//! The write options kube-apiserver reads from the query (`fieldValidation`, `dryRun`, checked as
//! it checks `CreateOptions` and the like), and field validation itself: the unknown fields of a
//! body (for custom resources the fields the schema prunes, for built-in kinds the fields the
//! typed decoding loses) and its repeated keys, refused, warned about in `Warning` headers, or
//! ignored, in kube-apiserver's words.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kruise_crd_validate::{ErrorKind, FieldError};
use serde_json::Value;

use crate::builtin;
use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};

/// What to do with unknown and repeated fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Directive {
    Strict,
    /// kube-apiserver's default since 1.27 when the parameter is absent.
    #[default]
    Warn,
    Ignore,
}

/// `fieldValidation` and `dryRun` of a create, update or patch.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    pub validation: Directive,
    pub dry_run: bool,
}

/// The options of a write from its query, or the 422 kube-apiserver answers for values it does not
/// know; `kind` names the options (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
pub fn write_options(query: &HashMap<String, String>, kind: &str) -> ApiResult<WriteOptions> {
    let mut errors = Vec::new();
    let dry_run = dry_run_values(query.get("dryRun").map(String::as_str), &mut errors);
    let validation = match query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Directive::Warn,
        Some("Strict") => Directive::Strict,
        Some("Ignore") => Directive::Ignore,
        Some(other) => {
            errors.push(FieldError {
                field: "fieldValidation".into(),
                kind: ErrorKind::Unsupported,
                value: Some(format!("{other:?}")),
                detail: "supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"".into(),
            });
            Directive::Warn
        }
    };
    if !errors.is_empty() {
        return Err(options_invalid(kind, &errors));
    }
    Ok(WriteOptions {
        validation,
        dry_run,
    })
}

/// `dryRun` of a delete, from the query or the body's `DeleteOptions`.
pub fn delete_dry_run(query: &HashMap<String, String>, body: &Value) -> ApiResult<bool> {
    let mut errors = Vec::new();
    let mut dry_run = dry_run_values(query.get("dryRun").map(String::as_str), &mut errors);
    if let Some(values) = body.get("dryRun").and_then(Value::as_array) {
        let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        if values.iter().any(|v| *v != "All") {
            errors.push(dry_run_error(&values));
        }
        dry_run |= !values.is_empty();
    }
    if !errors.is_empty() {
        return Err(options_invalid("DeleteOptions", &errors));
    }
    Ok(dry_run)
}

fn dry_run_values(value: Option<&str>, errors: &mut Vec<FieldError>) -> bool {
    match value {
        None => false,
        Some("All") => true,
        Some(other) => {
            errors.push(dry_run_error(&[other]));
            false
        }
    }
}

fn dry_run_error(values: &[&str]) -> FieldError {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    FieldError {
        field: "dryRun".into(),
        kind: ErrorKind::Unsupported,
        value: Some(format!("[]string{{{}}}", shown.join(", "))),
        detail: "supported values: \"All\"".into(),
    }
}

fn options_invalid(kind: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(
        &format!("{kind}.meta.k8s.io"),
        kind,
        "meta.k8s.io",
        "",
        errors,
    )
}

/// `unknown field "…"` for each field of `obj` that storing it would drop: what the CRD's
/// structural schema prunes (and what `metadata` does not know), or what the built-in kind's
/// typed form has no field for.
pub fn unknown_fields(info: &ResourceInfo, version: &str, obj: &Value) -> Vec<String> {
    let mut paths = match info.validator(version) {
        Some(v) => {
            let mut pruned = obj.clone();
            let mut paths = v.default_object_reporting(&mut pruned);
            if let Some(meta) = obj.get("metadata") {
                if let Ok(typed) = serde_json::from_value::<ObjectMeta>(meta.clone()) {
                    let typed = serde_json::to_value(typed).unwrap_or_default();
                    lost(meta, &typed, "metadata", &mut paths);
                }
            }
            paths
        }
        None => match builtin::decode(info, obj.clone()) {
            Ok(decoded) => {
                let mut paths = Vec::new();
                lost(obj, &decoded, "", &mut paths);
                paths
            }
            // Refused later with the decoding error, which comes before field validation.
            Err(_) => Vec::new(),
        },
    };
    paths.sort();
    paths
        .into_iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect()
}

/// `duplicate field "…"` for each repeated key.
pub fn duplicate_fields(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|p| format!("duplicate field {p:?}"))
        .collect()
}

/// Paths present in `input` that `output` lost; empty maps and lists and nulls do not count (a
/// typed form may drop them without the field being unknown).
fn lost(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                match o.get(k) {
                    Some(ov) => lost(v, ov, &join(k), out),
                    None if is_empty(v) => {}
                    None => out.push(join(k)),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (v, ov)) in i.iter().zip(o).enumerate() {
                lost(v, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Applies the directive to the problems of a create or update body: a 400 under `Strict`,
/// warnings under `Warn`.
pub fn enforce(
    directive: Directive,
    info: &ResourceInfo,
    version: &str,
    problems: Vec<String>,
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    match directive {
        Directive::Ignore => Ok(()),
        Directive::Warn => {
            warnings.extend(problems);
            Ok(())
        }
        Directive::Strict if problems.is_empty() => Ok(()),
        Directive::Strict => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = info.kind
        ))),
    }
}

/// Applies the directive to the problems of a patch, which kube-apiserver refuses as an invalid
/// `patch` showing the patched object (`shown`, already in its words).
pub fn enforce_patch(
    directive: Directive,
    shown: impl FnOnce() -> String,
    problems: Vec<String>,
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    match directive {
        Directive::Ignore => Ok(()),
        Directive::Warn => {
            warnings.extend(problems);
            Ok(())
        }
        Directive::Strict if problems.is_empty() => Ok(()),
        Directive::Strict => Err(ApiError::invalid(
            "",
            "",
            "",
            "",
            &[FieldError {
                field: "patch".into(),
                kind: ErrorKind::Invalid,
                value: Some(go_quote(&shown())),
                detail: format!("strict decoding error: {}", problems.join(", ")),
            }],
        )),
    }
}

/// A `Warning` header value as kube-apiserver writes it: `299 - "<text>"`.
pub fn warning_header(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => {}
            c => quoted.push(c),
        }
    }
    format!("299 - \"{quoted}\"")
}

/// Go's `%q` of a string.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%+v` of a decoded JSON map (how a strategic merge patch shows in its refusal).
pub fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_checked_like_create_options() {
        let o = write_options(&query(&[]), "CreateOptions").unwrap();
        assert_eq!((o.validation, o.dry_run), (Directive::Warn, false));
        let o = write_options(
            &query(&[("fieldValidation", "Strict"), ("dryRun", "All")]),
            "CreateOptions",
        )
        .unwrap();
        assert_eq!((o.validation, o.dry_run), (Directive::Strict, true));
        let e =
            write_options(&query(&[("fieldValidation", "strict")]), "CreateOptions").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(e.message, "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"strict\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"");
        let e = delete_dry_run(&query(&[("dryRun", "true")]), &json!({})).unwrap_err();
        assert_eq!(e.message, "DeleteOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"true\"}: supported values: \"All\"");
        assert!(delete_dry_run(&query(&[]), &json!({"dryRun": ["All"]})).unwrap());
    }

    #[test]
    fn lost_fields_skip_empty_values() {
        let mut out = Vec::new();
        lost(
            &json!({"a": 1, "b": {}, "c": null, "d": [{"x": 1, "y": 2}], "e": {"f": 1}}),
            &json!({"a": 1, "d": [{"x": 1}], "e": {}}),
            "",
            &mut out,
        );
        assert_eq!(out, ["d[0].y", "e.f"]);
    }

    #[test]
    fn warnings_and_go_formats() {
        assert_eq!(
            warning_header("unknown field \"spec.foo\""),
            r#"299 - "unknown field \"spec.foo\"""#
        );
        assert_eq!(go_quote("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(
            go_value(&json!({"spec": {"a": [1, "x"], "b": null}})),
            "map[spec:map[a:[1 x] b:<nil>]]"
        );
    }
}
