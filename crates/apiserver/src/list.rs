//! Lists as kube-apiserver answers them: `limit`/`continue` pages that all read the snapshot of
//! the first page's resourceVersion, and `resourceVersion` with `resourceVersionMatch`. Unset is
//! the latest, `0` any (here the latest), `NotOlderThan` (the default for another version) the
//! latest once it is at least that new, `Exact` that version, rebuilt from the watch history. A
//! version the history no longer reaches is `410 Expired`; one the server has not reached yet is
//! `504` "Too large resource version", as a watch cache that did not catch up answers.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use kruise_crd_validate::{ErrorKind, FieldError};
use serde_json::{json, Value};

use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};
use crate::store::{present, EventType, ObjectKey, State, Store};
use crate::watch::Filter;

/// Which resourceVersion a list reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// No resourceVersion, or `0`.
    Latest,
    /// The latest, which must be at least this new.
    NotOlderThan(u64),
    /// Exactly this one.
    Exact(u64),
}

pub struct ListOptions {
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub version: Version,
}

impl ListOptions {
    /// Everything, as of now.
    pub fn all() -> Self {
        Self {
            limit: None,
            continue_token: None,
            version: Version::Latest,
        }
    }

    /// `limit`, `continue`, `resourceVersion` and `resourceVersionMatch`, checked as
    /// kube-apiserver checks list options (422 naming the parameter).
    pub fn from_query(query: &HashMap<String, String>) -> ApiResult<Self> {
        let get = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
        let (rv, matching, cont) = (
            get("resourceVersion"),
            get("resourceVersionMatch"),
            get("continue"),
        );
        let mut errors = Vec::new();
        let forbid = |detail: &str| FieldError {
            field: "resourceVersionMatch".into(),
            kind: ErrorKind::Forbidden,
            value: None,
            detail: detail.into(),
        };
        if !matching.is_empty() {
            if rv.is_empty() {
                errors.push(forbid(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if !cont.is_empty() {
                errors.push(forbid(
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if matching != "Exact" && matching != "NotOlderThan" {
                errors.push(FieldError {
                    field: "resourceVersionMatch".into(),
                    kind: ErrorKind::Unsupported,
                    value: Some(format!("\"{matching}\"")),
                    detail: "supported values: \"Exact\", \"NotOlderThan\", \"\"".into(),
                });
            }
            if matching == "Exact" && rv == "0" {
                errors.push(forbid(
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(
                "ListOptions.meta.k8s.io",
                "ListOptions",
                "meta.k8s.io",
                "",
                &errors,
            ));
        }
        let version = match rv {
            "" | "0" => Version::Latest,
            rv => {
                let n = rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?;
                if matching == "Exact" {
                    Version::Exact(n)
                } else {
                    Version::NotOlderThan(n)
                }
            }
        };
        Ok(Self {
            limit: query.get("limit").and_then(|l| l.parse().ok()),
            continue_token: Some(cont.to_string()).filter(|c| !c.is_empty()),
            version,
        })
    }
}

/// A continue token: the resourceVersion of the first page and the last key served.
fn decode_continue(token: &str) -> ApiResult<(u64, ObjectKey)> {
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
    let at = |k: &str| decoded[k].as_str().unwrap_or_default().to_string();
    Ok((decoded["rv"].as_u64().unwrap_or(0), (at("ns"), at("name"))))
}

fn encode_continue(rv: u64, (ns, name): &ObjectKey) -> String {
    let token = json!({"rv": rv, "ns": ns, "name": name});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

/// Namespace and name: the key objects are stored under.
fn key_of(obj: &Value) -> ObjectKey {
    let at = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    (
        at("/metadata/namespace").to_string(),
        at("/metadata/name").to_string(),
    )
}

impl State {
    /// The objects of `info` as they were at `rv` (at least the compaction point), in key order,
    /// after `after`: the latest, less what the history since `rv` changed, plus what each
    /// changed key held before its first change since. No object is copied.
    fn objects_at(
        &self,
        info: &ResourceInfo,
        rv: u64,
        after: Option<&ObjectKey>,
    ) -> Vec<(ObjectKey, &Value)> {
        let gr = info.storage_key();
        let later = |k: &ObjectKey| after.is_none_or(|a| k > a);
        // Newest first, so the oldest change's "before" is what stays.
        let mut before: BTreeMap<ObjectKey, Option<&Value>> = BTreeMap::new();
        for c in self.history.iter().rev().take_while(|c| c.rv > rv) {
            if c.gr == gr {
                let was = match c.type_ {
                    EventType::Added => None,
                    EventType::Modified | EventType::Deleted => c.old.as_ref(),
                };
                before.insert(key_of(&c.object), was);
            }
        }
        let mut out: Vec<(ObjectKey, &Value)> = self
            .objects
            .get(&gr)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| later(k) && !before.contains_key(*k))
            .map(|(k, v)| (k.clone(), v))
            .collect();
        out.extend(
            before
                .into_iter()
                .filter_map(|(k, was)| Some((k, was?)))
                .filter(|(k, _)| later(k)),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The resourceVersion a list reads, or why it cannot.
    fn list_version(&self, version: Version, what: &str) -> ApiResult<u64> {
        let too_large = |rv: u64| {
            let mut e = ApiError::timeout(format!(
                "Too large resource version: {rv}, current: {}",
                self.rv
            ));
            e.details = Some(
                json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
            );
            e
        };
        match version {
            Version::Latest => Ok(self.rv),
            Version::NotOlderThan(rv) | Version::Exact(rv) if rv > self.rv => Err(too_large(rv)),
            Version::NotOlderThan(_) => Ok(self.rv),
            Version::Exact(rv) if rv < self.compacted => Err(ApiError::gone(format!(
                "The resourceVersion for the provided {what} is too old."
            ))),
            Version::Exact(rv) => Ok(rv),
        }
    }
}

impl Store {
    pub fn list(
        &self,
        info: &ResourceInfo,
        version: &str,
        filter: &Filter,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let st = self.lock();
        let (list_rv, after) = match &opts.continue_token {
            None => (st.list_version(opts.version, "list")?, None),
            Some(token) => {
                let (rv, after) = decode_continue(token)?;
                if rv < st.compacted || rv > st.rv {
                    return Err(ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
                }
                (rv, Some(after))
            }
        };
        let objects = st.objects_at(info, list_rv, after.as_ref());
        let mut items = Vec::new();
        let mut next = None;
        let mut last_key: Option<&ObjectKey> = None;
        let limit = opts.limit.filter(|l| *l > 0);
        for (key, obj) in objects.iter().filter(|(_, obj)| filter.matches(obj)) {
            if let (Some(l), Some(last)) = (limit, last_key) {
                if items.len() == l {
                    next = Some(encode_continue(list_rv, last));
                    break;
                }
            }
            items.push(present(info, version, (*obj).clone()));
            last_key = Some(key);
        }
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if let Some(n) = next {
            metadata["continue"] = json!(n);
        }
        Ok(
            json!({"kind": info.list_kind, "apiVersion": info.api_version(version), "metadata": metadata, "items": items}),
        )
    }
}
