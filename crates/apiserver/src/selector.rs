//! Label selectors (every operator of the string form) and field selectors (the fields a real
//! server supports for the kinds here; others are refused as a real server refuses them).

use serde_json::Value;

use crate::errors::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` query parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let bad = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label selector term {term:?}"
                ))
            };
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = split_set_op(term, " notin ") {
                Requirement::NotIn(k, parse_set(rest).ok_or_else(bad)?)
            } else if let Some((k, rest)) = split_set_op(term, " in ") {
                Requirement::In(k, parse_set(rest).ok_or_else(bad)?)
            } else if term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(term.to_string())
            } else {
                return Err(bad());
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_set_op<'a>(term: &'a str, op: &str) -> Option<(String, &'a str)> {
    let i = term.find(op)?;
    Some((term[..i].trim().to_string(), term[i + op.len()..].trim()))
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// A parsed `fieldSelector`: `path=value` / `path!=value` terms over supported fields.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `s` for `kind`, refusing fields a real server does not index for that kind.
    pub fn parse(s: &str, kind: &str, group: &str) -> ApiResult<Self> {
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, eq, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector term {term:?}"
                )));
            };
            let path = path.trim();
            let Some(field) = stored_field(kind, group, path) else {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {path}"
                )));
            };
            terms.push((field, eq, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let have = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

/// The field of the stored object a selector label matches, if kube-apiserver supports the label
/// for the kind (events are stored in the `events.k8s.io` form, whichever API is asked).
fn stored_field(kind: &str, group: &str, path: &str) -> Option<String> {
    if kind == "Event" && (group.is_empty() || group == "events.k8s.io") {
        return crate::events_view::selector_field(path, group.is_empty());
    }
    if matches!(path, "metadata.name" | "metadata.namespace") {
        return Some(path.to_string());
    }
    let supported = match (group, kind) {
        ("", "Pod") => matches!(
            path,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        ("", "Node") => path == "spec.unschedulable",
        ("", "Secret") => path == "type",
        ("", "Namespace") => path == "status.phase",
        _ => false,
    };
    supported.then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_of_every_operator() {
        let labels = json!({"a": "1", "b": "x", "pool": "gpu"});
        let cases = [
            ("a=1", true),
            ("a==1", true),
            ("a!=1", false),
            ("a!=2", true),
            ("a in (1,2)", true),
            ("a notin (1,2)", false),
            ("c notin (1)", true),
            ("pool", true),
            ("!pool", false),
            ("!c", true),
            ("a=1,b=x", true),
            ("a=1,b=y", false),
            ("pool in (gpu, cpu),a", true),
            ("", true),
        ];
        for (s, want) in cases {
            assert_eq!(
                LabelSelector::parse(s).unwrap().matches(Some(&labels)),
                want,
                "{s}"
            );
        }
        assert!(LabelSelector::parse("a in 1").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors_are_limited_to_supported_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}});
        assert!(FieldSelector::parse("spec.nodeName=n1", "Pod", "")
            .unwrap()
            .matches(&pod));
        assert!(!FieldSelector::parse("spec.nodeName!=n1", "Pod", "")
            .unwrap()
            .matches(&pod));
        assert!(FieldSelector::parse(
            "metadata.name=p,metadata.namespace=ns",
            "NodeImage",
            "apps.kruise.io"
        )
        .unwrap()
        .matches(&pod));
        let err =
            FieldSelector::parse("spec.nodeName=n1", "NodeImage", "apps.kruise.io").unwrap_err();
        assert_eq!(err.message, "field label not supported: spec.nodeName");
    }
}
