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
    /// A value of the wrong JSON type: printed as `Invalid value`, but a cause of its own, and one
    /// that keeps CEL rules from running.
    TypeInvalid,
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
            ErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            ErrorKind::Unsupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::Forbidden => "FieldValueForbidden",
        }
    }

    /// The kind a status cause's `reason` names, if it is a field error.
    pub fn from_reason(reason: &str) -> Option<Self> {
        [
            ErrorKind::Required,
            ErrorKind::Invalid,
            ErrorKind::TypeInvalid,
            ErrorKind::Unsupported,
            ErrorKind::Duplicate,
            ErrorKind::TooLong,
            ErrorKind::TooMany,
            ErrorKind::Forbidden,
        ]
        .into_iter()
        .find(|k| k.reason() == reason)
    }

    /// Kinds whose message never shows the value (kube-apiserver's `field.Error.ErrorBody`).
    fn shows_value(self) -> bool {
        !matches!(
            self,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong
        )
    }

    /// Schema errors after which kube-apiserver does not evaluate CEL rules: the object does not
    /// have the shape the rules were written for.
    fn blocks_rules(self) -> bool {
        matches!(
            self,
            ErrorKind::Unsupported
                | ErrorKind::Required
                | ErrorKind::TooLong
                | ErrorKind::TooMany
                | ErrorKind::TypeInvalid
        )
    }

    fn label(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid | ErrorKind::TypeInvalid => "Invalid value",
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
        if let Some(v) = self.value.as_ref().filter(|_| self.kind.shows_value()) {
            write!(f, ": {v}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl FieldError {
    /// The error a `metav1.StatusCause` describes (`field`, `reason`, and the `message` that
    /// follows `<field>: ` in the Status message), so a client can read a server's refusal as
    /// the errors this crate reports: the text is kept whole, split into value and detail at the
    /// first `: ` after a quoted or bare value.
    pub fn from_cause(field: &str, reason: &str, message: &str) -> Self {
        let kind = ErrorKind::from_reason(reason).unwrap_or(ErrorKind::Invalid);
        let rest = message.strip_prefix(kind.label()).unwrap_or(message);
        let rest = rest.strip_prefix(": ").unwrap_or(rest);
        let (value, detail) = if !kind.shows_value() || rest.is_empty() {
            (None, rest)
        } else {
            let end = quoted_len(rest).unwrap_or_else(|| rest.find(": ").unwrap_or(rest.len()));
            let detail = rest[end..].strip_prefix(": ").unwrap_or(&rest[end..]);
            (Some(rest[..end].to_string()), detail)
        };
        FieldError {
            field: field.to_string(),
            kind,
            value,
            detail: detail.to_string(),
        }
    }
}

/// The length of a leading double-quoted string with backslash escapes, if `s` starts with one.
fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut escaped = false;
    for (i, c) in chars {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i + 1),
            _ => {}
        }
    }
    None
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

    /// Like [`default_object`](Self::default_object), returning the paths of the unknown fields
    /// it pruned (`spec.foo`, `spec.list[0].bar`, sorted): what kube-apiserver reports as
    /// `unknown field` under `fieldValidation`. Nulls dropped from known fields are not listed.
    pub fn default_object_reporting(&self, obj: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        schema::prune_and_default_reporting(&self.schema, obj, true, "", &mut pruned);
        pruned.sort();
        pruned
    }

    /// Every error in `obj` (already defaulted); `old` is the stored object on update. Schema
    /// errors come first; CEL rules run only when none of them blocks them, as in kube-apiserver,
    /// which then says so in one more error on the field `<nil>`.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = self.walk(obj, old, schema::Pass::Schema);
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
        if errors.iter().any(|e| e.kind.blocks_rules()) {
            errors.push(FieldError {
                field: "<nil>".into(),
                kind: ErrorKind::Invalid,
                value: Some("null".into()),
                detail: "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
            });
            return errors;
        }
        let mut rule_errors = self.walk(obj, old, schema::Pass::Rules);
        // Rules on the root itself.
        schema::Walk::new(&mut rule_errors, schema::Pass::Rules).rules(&self.schema, obj, old, "");
        errors.extend(rule_errors);
        errors
    }

    fn walk(&self, obj: &Value, old: Option<&Value>, pass: schema::Pass) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut ctx = schema::Walk::new(&mut errors, pass);
        for (key, value) in obj.as_object().into_iter().flatten() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(prop) = self.schema.property(key) {
                let old_value = old.and_then(|o| o.get(key));
                ctx.check(prop, value, old_value, key);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator() -> VersionValidator {
        let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "x-kubernetes-validations": [{"rule": "self != 'bad'", "message": "image must not be bad"}]},
                "policy": {"type": "string", "enum": ["A", "B"]},
                "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
            }}},
        }}}]}});
        VersionValidator::from_crd(&crd, "v1").unwrap()
    }

    #[test]
    fn pruned_unknown_fields_are_reported_with_their_paths() {
        let mut obj = json!({"metadata": {"name": "x", "odd": 1}, "bar": 1, "spec": {
            "image": "a", "foo": null, "policy": null,
            "items": [{"name": "a"}, {"name": "b", "nmae": "c"}],
            "labels": {"k": {"v": "1", "w": "2"}},
        }});
        let pruned = validator().default_object_reporting(&mut obj);
        assert_eq!(
            pruned,
            ["bar", "spec.foo", "spec.items[1].nmae", "spec.labels.k.w"]
        );
        assert_eq!(obj["spec"]["items"][1], json!({"name": "b"}));
        assert!(
            obj["spec"].get("policy").is_none(),
            "a null is dropped, not reported"
        );
        assert_eq!(
            obj["metadata"]["odd"], 1,
            "metadata is not the schema's to prune"
        );
    }

    #[test]
    fn blocking_schema_errors_keep_rules_from_running() {
        let v = validator();
        let errors = v
            .admit(json!({"spec": {"image": "bad", "policy": "C"}}), None)
            .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown, [
            "spec.policy: Unsupported value: \"C\": supported values: \"A\", \"B\"",
            "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]);
        let errors = v
            .admit(json!({"spec": {"image": "bad"}}), None)
            .unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "spec.image: Invalid value: \"string\": image must not be bad"
        );
    }

    #[test]
    fn a_status_cause_reads_back_as_the_same_error() {
        let cases = [
            FieldError {
                field: "spec.p".into(),
                kind: ErrorKind::Unsupported,
                value: Some("\"Ne: ver\"".into()),
                detail: "supported values: \"A\"".into(),
            },
            FieldError {
                field: "spec.image".into(),
                kind: ErrorKind::Invalid,
                value: Some("\"string\"".into()),
                detail: "must be: lower-case".into(),
            },
            FieldError {
                field: "spec.images".into(),
                kind: ErrorKind::TooMany,
                value: Some("256".into()),
                detail: "must have at most 255 items".into(),
            },
            FieldError {
                field: "spec.image".into(),
                kind: ErrorKind::Required,
                value: None,
                detail: String::new(),
            },
            FieldError {
                field: "spec.image".into(),
                kind: ErrorKind::TooLong,
                value: None,
                detail: "may not be more than 512 bytes".into(),
            },
        ];
        for e in cases {
            let text = e.to_string();
            let message = text.split_once(": ").unwrap().1;
            assert_eq!(
                FieldError::from_cause(&e.field, e.kind.reason(), message),
                e
            );
        }
    }
}
