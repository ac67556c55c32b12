//! The structural-schema walk: pruning and defaulting, then validation of each node.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::cel_eval;
use crate::{ErrorKind, FieldError};

/// An `openAPIV3Schema` (or a node of one).
#[derive(Debug, Clone)]
pub struct Schema(Value);

impl Schema {
    pub fn new(v: Value) -> Self {
        Self(v)
    }
    pub fn property(&self, key: &str) -> Option<&Value> {
        self.0.get("properties").and_then(|p| p.get(key))
    }
    pub fn required(&self) -> Vec<String> {
        required(&self.0)
    }
}

impl std::ops::Deref for Schema {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

fn required(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// Prunes unknown fields and non-nullable nulls, then applies defaults top-down, so a parent
/// defaulted to `{}` gets its children's defaults too.
pub fn prune_and_default(schema: &Value, value: &mut Value, root: bool) {
    prune_and_default_reporting(schema, value, root, "", &mut Vec::new());
}

/// [`prune_and_default`], adding the path of every unknown field it drops to `pruned` (map
/// entries and properties as `.key`, list items as `[i]`, as kube-apiserver's pruning names them).
pub fn prune_and_default_reporting(
    schema: &Value,
    value: &mut Value,
    root: bool,
    path: &str,
    pruned: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                map.retain(|k, v| {
                    if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        return true;
                    }
                    match props.get(k) {
                        Some(p) => !v.is_null() || nullable(p),
                        None if preserves_unknown(schema) => true,
                        None => {
                            pruned.push(join(path, k));
                            false
                        }
                    }
                });
                for (k, p) in props {
                    if let (false, Some(d)) = (map.contains_key(k), p.get("default")) {
                        map.insert(k.clone(), d.clone());
                    }
                }
                for (k, v) in map.iter_mut() {
                    if let Some(p) = props.get(k) {
                        prune_and_default_reporting(p, v, false, &join(path, k), pruned);
                    }
                }
            } else if let Some(item) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                map.retain(|_, v| !v.is_null() || nullable(item));
                for (k, v) in map.iter_mut() {
                    prune_and_default_reporting(item, v, false, &join(path, k), pruned);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_and_default_reporting(item, v, false, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Which half of validation a walk does: kube-apiserver checks the schema first and evaluates
/// CEL rules only on an object without blocking schema errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Schema,
    Rules,
}

pub struct Walk<'a> {
    errors: &'a mut Vec<FieldError>,
    pass: Pass,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<'a> Walk<'a> {
    pub fn new(errors: &'a mut Vec<FieldError>, pass: Pass) -> Self {
        Self { errors, pass }
    }

    fn push(&mut self, field: &str, kind: ErrorKind, value: Option<String>, detail: String) {
        self.errors.push(FieldError {
            field: field.to_string(),
            kind,
            value,
            detail,
        });
    }

    /// Validates `value` against `schema` at `path`, then the node's CEL rules.
    pub fn check(&mut self, schema: &Value, value: &Value, old: Option<&Value>, path: &str) {
        if value.is_null() && nullable(schema) {
            return;
        }
        if !self.check_type(schema, value, path) {
            return;
        }
        match value {
            Value::Object(map) => self.check_object(schema, map, old, path),
            Value::Array(items) => self.check_array(schema, items, old, path),
            Value::String(s) if self.pass == Pass::Schema => self.check_string(schema, s, path),
            Value::Number(_) if self.pass == Pass::Schema => self.check_number(schema, value, path),
            _ => {}
        }
        if self.pass == Pass::Rules {
            self.rules(schema, value, old, path);
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let list = allowed
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.push(
                    path,
                    ErrorKind::Unsupported,
                    Some(value.to_string()),
                    format!("supported values: {list}"),
                );
            }
        }
    }

    fn check_type(&mut self, schema: &Value, value: &Value, path: &str) -> bool {
        let actual = json_type(value);
        let ok = if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        {
            matches!(actual, "integer" | "string")
        } else {
            match schema.get("type").and_then(Value::as_str) {
                None => true,
                Some("number") => matches!(actual, "integer" | "number"),
                Some(t) => t == actual,
            }
        };
        if !ok && self.pass == Pass::Schema {
            let want = schema
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("integer,string");
            self.push(
                path,
                ErrorKind::TypeInvalid,
                Some(format!("\"{actual}\"")),
                format!("{path} in body must be of type {want}: \"{actual}\""),
            );
        }
        ok
    }

    fn check_object(
        &mut self,
        schema: &Value,
        map: &Map<String, Value>,
        old: Option<&Value>,
        path: &str,
    ) {
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            let old_v = old.and_then(|o| o.get(k));
            if let Some(p) = props.and_then(|p| p.get(k)) {
                self.check(p, v, old_v, &join(path, k));
            } else if let Some(item) = schema.get("additionalProperties").filter(|a| a.is_object())
            {
                self.check(item, v, old_v, &format!("{path}[{k}]"));
            }
        }
        if self.pass == Pass::Rules {
            return;
        }
        for key in required(schema) {
            if !map.contains_key(&key) {
                self.push(&join(path, &key), ErrorKind::Required, None, String::new());
            }
        }
        self.check_count(
            schema,
            map.len() as u64,
            path,
            ("maxProperties", "minProperties"),
        );
    }

    fn check_array(&mut self, schema: &Value, items: &[Value], old: Option<&Value>, path: &str) {
        if self.pass == Pass::Schema {
            self.check_count(schema, items.len() as u64, path, ("maxItems", "minItems"));
        }
        let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
        let map_keys: Vec<String> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| {
                k.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let key_of = |v: &Value| -> Value {
            match list_type {
                Some("map") => Value::Array(
                    map_keys
                        .iter()
                        .map(|k| v.get(k).cloned().unwrap_or(Value::Null))
                        .collect(),
                ),
                _ => v.clone(),
            }
        };
        if self.pass == Pass::Schema && matches!(list_type, Some("set" | "map")) {
            let mut seen = HashSet::new();
            for (i, v) in items.iter().enumerate() {
                let key = key_of(v).to_string();
                if !seen.insert(key) {
                    let shown = if list_type == Some("map") {
                        key_of(v).to_string()
                    } else {
                        v.to_string()
                    };
                    self.push(
                        &format!("{path}[{i}]"),
                        ErrorKind::Duplicate,
                        Some(shown),
                        String::new(),
                    );
                }
            }
        }
        let Some(item_schema) = schema.get("items") else {
            return;
        };
        let old_items = old.and_then(Value::as_array);
        for (i, v) in items.iter().enumerate() {
            // Only map lists correlate old and new items, as in kube-apiserver.
            let old_v = match (list_type, old_items) {
                (Some("map"), Some(olds)) => olds.iter().find(|o| key_of(o) == key_of(v)),
                _ => None,
            };
            self.check(item_schema, v, old_v, &format!("{path}[{i}]"));
        }
    }

    /// `maxItems`/`minItems` of arrays, `maxProperties`/`minProperties` of maps.
    fn check_count(
        &mut self,
        schema: &Value,
        n: u64,
        path: &str,
        (max_key, min_key): (&str, &str),
    ) {
        if let Some(max) = schema
            .get(max_key)
            .and_then(Value::as_u64)
            .filter(|m| n > *m)
        {
            self.push(
                path,
                ErrorKind::TooMany,
                Some(n.to_string()),
                format!("must have at most {max} items"),
            );
        }
        if let Some(min) = schema
            .get(min_key)
            .and_then(Value::as_u64)
            .filter(|m| n < *m)
        {
            let detail = format!("{path} in body should have at least {min} items");
            self.push(path, ErrorKind::Invalid, Some(n.to_string()), detail);
        }
    }

    fn check_string(&mut self, schema: &Value, s: &str, path: &str) {
        let n = s.chars().count() as u64;
        if let Some(max) = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .filter(|m| n > *m)
        {
            self.push(
                path,
                ErrorKind::TooLong,
                None,
                format!("may not be more than {max} bytes"),
            );
        }
        if let Some(min) = schema
            .get("minLength")
            .and_then(Value::as_u64)
            .filter(|m| n < *m)
        {
            self.push(
                path,
                ErrorKind::Invalid,
                Some(format!("{s:?}")),
                format!("{path} in body should be at least {min} chars long"),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(s) => self.push(
                    path,
                    ErrorKind::Invalid,
                    Some(format!("{s:?}")),
                    format!("{path} in body should match '{pattern}'"),
                ),
                Ok(_) => {}
                Err(e) => self.push(
                    path,
                    ErrorKind::Invalid,
                    None,
                    format!("schema pattern does not compile: {e}"),
                ),
            }
        }
    }

    fn check_number(&mut self, schema: &Value, value: &Value, path: &str) {
        let Some(x) = value.as_f64() else { return };
        let exclusive = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let bad = if exclusive("exclusiveMinimum") {
                x <= min
            } else {
                x < min
            };
            if bad {
                let op = if exclusive("exclusiveMinimum") {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.push(
                    path,
                    ErrorKind::Invalid,
                    Some(value.to_string()),
                    format!("{path} in body should be {op} {min}"),
                );
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let bad = if exclusive("exclusiveMaximum") {
                x >= max
            } else {
                x > max
            };
            if bad {
                let op = if exclusive("exclusiveMaximum") {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.push(
                    path,
                    ErrorKind::Invalid,
                    Some(value.to_string()),
                    format!("{path} in body should be {op} {max}"),
                );
            }
        }
    }

    /// Evaluates the node's `x-kubernetes-validations`. Transition rules (those that read
    /// `oldSelf`) run only when there is an old value to compare with.
    pub fn rules(&mut self, schema: &Value, value: &Value, old: Option<&Value>, path: &str) {
        let Some(rules) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        else {
            return;
        };
        for rule in rules {
            let Some(src) = rule.get("rule").and_then(Value::as_str) else {
                continue;
            };
            let transition = src.contains("oldSelf");
            if transition && old.is_none() {
                continue;
            }
            let field = match rule.get("fieldPath").and_then(Value::as_str) {
                Some(fp) => format!("{path}{fp}").trim_start_matches('.').to_string(),
                None => path.to_string(),
            };
            let shown = Some(format!(
                "\"{}\"",
                schema
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or(json_type(value))
            ));
            match cel_eval::evaluate(src, value, if transition { old } else { None }) {
                Ok(true) => {}
                Ok(false) => {
                    let message = rule
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("failed rule: {src}"));
                    let kind = match rule.get("reason").and_then(Value::as_str) {
                        Some("FieldValueRequired") => ErrorKind::Required,
                        Some("FieldValueDuplicate") => ErrorKind::Duplicate,
                        Some("FieldValueForbidden") => ErrorKind::Forbidden,
                        _ => ErrorKind::Invalid,
                    };
                    self.push(&field, kind, shown, message);
                }
                Err(e) => self.push(
                    &field,
                    ErrorKind::Invalid,
                    shown,
                    format!("rule evaluation error: {src}: {e}"),
                ),
            }
        }
    }
}
