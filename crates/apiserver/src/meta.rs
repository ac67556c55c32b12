//! `metadata` rules every kind shares: names, labels, annotations, owner references, finalizers.

use kruise_crd_validate::{ErrorKind, FieldError};
use serde_json::Value;

fn err(
    field: &str,
    kind: ErrorKind,
    value: Option<String>,
    detail: impl Into<String>,
) -> FieldError {
    FieldError {
        field: field.to_string(),
        kind,
        value,
        detail: detail.into(),
    }
}

/// RFC 1123 subdomain: lower-case alphanumerics, '-' and '.', at most 253 characters.
pub fn dns_subdomain(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    let ok = s.split('.').all(|part| dns_label(part).is_none());
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
    })
}

/// RFC 1123 label: lower-case alphanumerics and '-', at most 63 characters.
pub fn dns_label(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    (!ok).then(|| "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string())
}

fn name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A qualified name: `[prefix/]name`, as label keys and finalizers are.
pub fn qualified_name(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if prefix.is_some_and(|p| dns_subdomain(p).is_some()) {
        return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'".into());
    }
    (!name_part(name)).then(|| "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into())
}

fn label_value(s: &str) -> bool {
    s.is_empty() || name_part(s)
}

/// How a kind's names are checked.
#[derive(Debug, Clone, Copy)]
pub enum NameRule {
    Subdomain,
    Label,
}

/// Errors in `metadata` for a create or update.
pub fn validate(meta: &Value, name_rule: NameRule) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        errors.push(err(
            "metadata.name",
            ErrorKind::Required,
            None,
            "name or generateName is required",
        ));
    } else {
        let problem = match name_rule {
            NameRule::Subdomain => dns_subdomain(name),
            NameRule::Label => dns_label(name),
        };
        if let Some(p) = problem {
            errors.push(err(
                "metadata.name",
                ErrorKind::Invalid,
                Some(format!("{name:?}")),
                p,
            ));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(p) = qualified_name(k) {
                errors.push(err(
                    "metadata.labels",
                    ErrorKind::Invalid,
                    Some(format!("{k:?}")),
                    p,
                ));
            }
            match v.as_str() {
                Some(s) if label_value(s) => {}
                _ => errors.push(err(
                    "metadata.labels",
                    ErrorKind::Invalid,
                    Some(v.to_string()),
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters",
                )),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            if let Some(p) = qualified_name(&k.to_lowercase()) {
                errors.push(err(
                    "metadata.annotations",
                    ErrorKind::Invalid,
                    Some(format!("{k:?}")),
                    p,
                ));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            errors.push(err(
                "metadata.annotations",
                ErrorKind::TooLong,
                None,
                "may not be more than 262144 bytes",
            ));
        }
    }
    for (i, owner) in meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if owner
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errors.push(err(
                    &format!("metadata.ownerReferences[{i}].{field}"),
                    ErrorKind::Invalid,
                    None,
                    format!("{field} must not be empty"),
                ));
            }
        }
    }
    let controllers = meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map_or(0, |o| {
            o.iter()
                .filter(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .count()
        });
    if controllers > 1 {
        errors.push(err(
            "metadata.ownerReferences",
            ErrorKind::Invalid,
            None,
            "Only one reference can have Controller set to true",
        ));
    }
    for (i, f) in meta
        .get("finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(p) = f.as_str().and_then(qualified_name) {
            errors.push(err(
                &format!("metadata.finalizers[{i}]"),
                ErrorKind::Invalid,
                Some(f.to_string()),
                p,
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_labels_and_owners() {
        assert!(validate(&json!({"name": "node-1.example"}), NameRule::Subdomain).is_empty());
        assert_eq!(
            validate(&json!({"name": "Node_1"}), NameRule::Subdomain)[0].field,
            "metadata.name"
        );
        assert_eq!(
            validate(&json!({"name": "a.b"}), NameRule::Label)[0].field,
            "metadata.name"
        );
        assert_eq!(
            validate(&json!({}), NameRule::Subdomain)[0].kind,
            ErrorKind::Required
        );
        let bad_label = validate(
            &json!({"name": "a", "labels": {"ok/key": "v", "bad key": "v"}}),
            NameRule::Subdomain,
        );
        assert_eq!(bad_label.len(), 1);
        let bad_value = validate(
            &json!({"name": "a", "labels": {"k": "-v"}}),
            NameRule::Subdomain,
        );
        assert_eq!(bad_value[0].field, "metadata.labels");
        let owners = validate(
            &json!({"name": "a", "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n"}]}),
            NameRule::Subdomain,
        );
        assert_eq!(owners[0].field, "metadata.ownerReferences[0].uid");
        assert!(validate(
            &json!({"name": "a", "finalizers": ["apps.kruise.io/deletion-protection"]}),
            NameRule::Subdomain
        )
        .is_empty());
    }
}
