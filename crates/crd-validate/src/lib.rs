//! Defaults and validates objects against a CRD version's structural schema and its CEL rules, the
//! way kube-apiserver does on create and update: prune unknown fields and nulls, apply defaults,
//! then check types, required fields, enums, bounds, patterns, list uniqueness and
//! `x-kubernetes-validations` (transition rules with `oldSelf` on update only).
//!
//! Errors read like the API server's (`spec.image: Invalid value: "Foo": …`), so tests can assert
//! that a bad object is refused with a message naming the field, and the project's test API server
//! refuses what a real one refuses.

mod cel_eval;
mod schema;

use std::fmt;

use serde_json::Value;

pub use schema::Schema;

/// One refused field, with the reason in the API server's words.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path such as `spec.selector.names[1]`.
    pub field: String,
    pub kind: ErrorKind,
    /// The value as the API server prints it, when it prints one.
    pub value: Option<String>,
    pub detail: String,
}

/// The `metav1.StatusCause` type of a field error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Required,
    Invalid,
    Unsupported,
    Duplicate,
    TooLong,
    TooMany,
    Forbidden,
}

impl ErrorKind {
    /// `reason` of the status cause (`FieldValueRequired`, …).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::Unsupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Forbidden => "FieldValueForbidden",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::Unsupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
            ErrorKind::Forbidden => "Forbidden",
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind.label())?;
        if let Some(v) = &self.value {
            write!(f, ": {v}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Joins field errors the way kube-apiserver's `Kind.group "name" is invalid: …` message does.
pub fn invalid_message(kind_group: &str, name: &str, errors: &[FieldError]) -> String {
    let joined = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
    if joined.len() == 1 {
        format!("{kind_group} \"{name}\" is invalid: {}", joined[0])
    } else {
        format!(
            "{kind_group} \"{name}\" is invalid: [{}]",
            joined.join(", ")
        )
    }
}

/// The schema of one served version of a CRD.
#[derive(Debug, Clone)]
pub struct VersionValidator {
    schema: Schema,
}

impl VersionValidator {
    /// From a CRD (as JSON) and one of its version names.
    pub fn from_crd(crd: &Value, version: &str) -> Result<Self, String> {
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or("CRD has no spec.versions")?;
        let v = versions
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
            .ok_or_else(|| format!("CRD does not serve version {version}"))?;
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .ok_or_else(|| format!("version {version} has no openAPIV3Schema"))?;
        Ok(Self {
            schema: Schema::new(schema.clone()),
        })
    }

    /// Prunes unknown fields and nulls and applies defaults, as on decoding a request or a stored
    /// object. `apiVersion`, `kind` and `metadata` at the root are left alone.
    pub fn default_object(&self, obj: &mut Value) {
        schema::prune_and_default(&self.schema, obj, true);
    }

    /// Every error in `obj` (already defaulted); `old` is the stored object on update.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut ctx = schema::Walk {
            errors: &mut errors,
        };
        for (key, value) in obj.as_object().into_iter().flatten() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(prop) = self.schema.property(key) {
                let old_value = old.and_then(|o| o.get(key));
                ctx.check(prop, value, old_value, key);
            }
        }
        for key in self.schema.required() {
            if obj.get(&key).is_none() {
                errors.push(FieldError {
                    field: key,
                    kind: ErrorKind::Required,
                    value: None,
                    detail: String::new(),
                });
            }
        }
        // Rules on the root itself.
        let mut ctx = schema::Walk {
            errors: &mut errors,
        };
        ctx.rules(&self.schema, obj, old, "");
        errors
    }

    /// Defaults then validates, as a create (`old` = None) or update would.
    pub fn admit(&self, mut obj: Value, old: Option<&Value>) -> Result<Value, Vec<FieldError>> {
        self.default_object(&mut obj);
        let errors = self.validate(&obj, old);
        if errors.is_empty() {
            Ok(obj)
        } else {
            Err(errors)
        }
    }
}
