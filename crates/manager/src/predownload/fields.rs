//! Reading a workload's or revision's JSON field by field: [`Obj`] names the object and the
//! field in every error ([`AdapterError`]), and int-or-percent values resolve as Kubernetes
//! resolves them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// A field of a workload or revision that could not be used, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("{object}: {field} is missing; {fix}")]
    Missing {
        object: String,
        field: String,
        fix: String,
    },
    #[error("{object}: {field} is {value}; expected {expected}")]
    Invalid {
        object: String,
        field: String,
        value: String,
        expected: String,
    },
    #[error(
        "{api_version} {kind} cannot pre-download images; supported are CloneSet, StatefulSet \
         and DaemonSet of apps.kruise.io, and Deployment, StatefulSet and DaemonSet of apps/v1"
    )]
    Unsupported { api_version: String, kind: String },
}

impl AdapterError {
    /// A short label for metrics: the variant, never the message.
    pub fn metric_label(&self) -> &'static str {
        match self {
            AdapterError::Missing { .. } => "missing_field",
            AdapterError::Invalid { .. } => "invalid_field",
            AdapterError::Unsupported { .. } => "unsupported_kind",
        }
    }

    /// The field at fault, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            AdapterError::Missing { field, .. } | AdapterError::Invalid { field, .. } => {
                Some(field)
            }
            AdapterError::Unsupported { .. } => None,
        }
    }
}

pub(super) type Result<T, E = AdapterError> = std::result::Result<T, E>;

/// A JSON value as text for messages (strings unquoted).
pub(super) fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// `v` resolved against `total` as Kubernetes resolves an int-or-percent; a string of digits
/// counts as an integer. `None` for anything else, or a negative result.
fn resolve(v: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    let n = match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.trim().strip_suffix('%') {
            None => s.trim().parse().ok()?,
            Some(p) => {
                let scaled = p.trim().parse::<i64>().ok()? * i64::from(total);
                let n = if round_up { scaled + 99 } else { scaled }.div_euclid(100);
                i32::try_from(n).ok()?
            }
        },
    };
    (n >= 0).then_some(n)
}

/// An object being read, named for error messages (`CloneSet default/web`).
pub(super) struct Obj<'a> {
    v: &'a Value,
    what: String,
}

impl<'a> Obj<'a> {
    pub(super) fn new(kind: &str, v: &'a Value) -> Self {
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let what = match v.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        Obj { v, what }
    }

    pub(super) fn missing(&self, field: &str, fix: &str) -> AdapterError {
        let (object, field, fix) = (self.what.clone(), field.into(), fix.into());
        AdapterError::Missing { object, field, fix }
    }

    pub(super) fn invalid(&self, field: &str, value: &str, expected: &str) -> AdapterError {
        let (object, field, expected) = (self.what.clone(), field.into(), expected.into());
        AdapterError::Invalid {
            object,
            field,
            value: value.into(),
            expected,
        }
    }

    /// The value at a dotted path; `null` counts as absent.
    pub(super) fn get(&self, path: &str) -> Option<&'a Value> {
        let v = path.split('.').try_fold(self.v, |v, k| v.get(k))?;
        (!v.is_null()).then_some(v)
    }

    /// The value at `path` as a `T`; an error names the field and what was expected.
    pub(super) fn read<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let Some(v) = self.get(path) else {
            return Ok(None);
        };
        serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| self.invalid(path, &v.to_string(), &format!("what the API defines: {e}")))
    }

    pub(super) fn str(&self, path: &str) -> Result<Option<&'a str>> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.invalid(path, &v.to_string(), "a string")),
        }
    }

    pub(super) fn required_str(&self, path: &str, fix: &str) -> Result<&'a str> {
        let s = self.str(path)?.filter(|s| !s.is_empty());
        s.ok_or_else(|| self.missing(path, fix))
    }

    pub(super) fn i32_or(&self, path: &str, default: i32) -> Result<i32> {
        Ok(self.read(path)?.unwrap_or(default))
    }

    pub(super) fn int_or_string(&self, path: &str) -> Result<Option<IntOrString>> {
        self.read(path)
    }

    /// The int-or-percent at `field` (or `default`) resolved against `total`.
    pub(super) fn percent(
        &self,
        field: &str,
        default: IntOrString,
        total: i32,
        up: bool,
    ) -> Result<i32> {
        let v = self.int_or_string(field)?.unwrap_or(default);
        self.scaled(field, v, total, up)
    }

    /// The int-or-percent `v` of `field` resolved against `total`.
    pub(super) fn scaled(&self, field: &str, v: IntOrString, total: i32, up: bool) -> Result<i32> {
        resolve(&v, total, up).ok_or_else(|| {
            let expected = "a non-negative integer or a percentage such as \"20%\"";
            self.invalid(field, &shown(&v), expected)
        })
    }

    /// An integer (or a string of digits) of at least `min`.
    pub(super) fn plain_int(
        &self,
        field: &str,
        v: &IntOrString,
        min: i32,
        expected: &str,
    ) -> Result<i32> {
        let n = match v {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(s) => s.trim().parse().ok(),
        };
        n.filter(|n| *n >= min)
            .ok_or_else(|| self.invalid(field, &shown(v), expected))
    }

    /// Whether the first recognised policy among `paths` updates in place (default ReCreate).
    /// `RollingUpdate` says nothing about the pods, so the next spelling is read.
    pub(super) fn pod_update_policy(&self, paths: &[&str]) -> Result<bool> {
        for path in paths {
            match self.str(path)? {
                None | Some("RollingUpdate") => continue,
                Some("InPlaceIfPossible" | "InPlaceOnly") => return Ok(true),
                Some("ReCreate" | "Recreate") => return Ok(false),
                Some(other) => {
                    let expected = "ReCreate, InPlaceIfPossible or InPlaceOnly";
                    return Err(self.invalid(path, other, expected));
                }
            }
        }
        Ok(false)
    }

    pub(super) fn annotations(&self) -> Result<BTreeMap<String, String>> {
        Ok(self.read("metadata.annotations")?.unwrap_or_default())
    }
}

pub(super) fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.to_string())
}

fn shown(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("{s:?}"),
    }
}
