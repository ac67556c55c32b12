//! Service-account tokens as kube-apiserver issues and reviews them: `TokenRequest` on a
//! ServiceAccount's `/token` subresource, and `TokenReview` (`authentication.k8s.io/v1
//! tokenreviews`), which is how one workload checks another's projected token.
//!
//! A token is shaped like kube-apiserver's (a JWT with the same claims, readable by anyone who
//! decodes it) but is not signed: the server keeps what it issued in memory and a review looks
//! the token up. The rules are kube-apiserver's: `expirationSeconds` defaults to 3600 and is at
//! least 600; audiences default to the API server's; a token bound to a Pod, Node or Secret
//! needs that object (and a pod running as the ServiceAccount); a review refuses a token for
//! none of the audiences asked for (the API server's when none are), one expired for more than
//! the 60 s leeway, or one whose ServiceAccount or bound object is gone or was recreated (another
//! uid). The clock tokens are issued and checked by can be moved forward (`/_test/clock`), so
//! expiry can be tested without waiting ten minutes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use base64::Engine;
use chrono::{DateTime, Utc};
use kruise_crd_validate::{ErrorKind, FieldError};
use serde_json::{json, Value};

use crate::errors::{ApiError, ApiResult};
use crate::fieldvalidation::go_quote;
use crate::store::{State, Store};

/// The API server's own audience (`--api-audiences`, by default the issuer), given to tokens
/// requested without audiences and asked for by reviews that name none.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
/// `expirationSeconds` when a TokenRequest has none.
const DEFAULT_EXPIRATION: i64 = 3600;
/// The shortest lifetime kube-apiserver issues (10 minutes).
const MIN_EXPIRATION: i64 = 600;
/// The longest (2^32 seconds).
const MAX_EXPIRATION: i64 = 1 << 32;
/// Clock skew a review allows past a token's expiry, and before which a deleted object counts
/// as gone (go-jose's `DefaultLeeway`).
const LEEWAY: i64 = 60;

/// What a token was issued for: its claims.
#[derive(Debug, Clone)]
struct Issued {
    namespace: String,
    service_account: String,
    service_account_uid: String,
    audiences: Vec<String>,
    /// Unix seconds.
    expires: i64,
    jti: String,
    pod: Option<Ref>,
    secret: Option<Ref>,
    /// The bound Node, or a bound pod's node (its uid when the Node existed).
    node: Option<Ref>,
}

#[derive(Debug, Clone)]
struct Ref {
    name: String,
    uid: String,
}

/// The tokens this server issued, and its token clock.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Seconds the token clock runs ahead of the real one.
    offset: AtomicI64,
    issued: Mutex<HashMap<String, Issued>>,
}

fn str_at<'a>(obj: &'a Value, p: &str) -> &'a str {
    obj.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The stored object of a built-in core/v1 resource, or its 404.
fn core_object(st: &State, resource: &str, ns: &str, name: &str) -> ApiResult<Value> {
    let info = st
        .catalog
        .get("", "v1", resource)
        .expect("a built-in resource");
    st.current(&info, ns, name)
}

/// Whether an object was deleted (it is only held by finalizers) before `before`.
fn deleted_before(obj: &Value, before: i64) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() < before)
}

fn invalid(name: &str, field: &str, value: String, detail: &str) -> ApiError {
    ApiError::invalid(
        "TokenRequest.authentication.k8s.io",
        "TokenRequest",
        "authentication.k8s.io",
        name,
        &[FieldError {
            field: field.into(),
            kind: ErrorKind::Invalid,
            value: Some(value),
            detail: detail.into(),
        }],
    )
}

impl Tokens {
    /// The token clock: the real time plus what `/_test/clock` advanced it by.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset.load(Ordering::SeqCst))
    }

    /// Moves the token clock forward (never back: a token cannot have been issued in the future).
    pub fn advance(&self, seconds: u64) {
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2);
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }

    fn issued(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: `req` is the decoded
    /// TokenRequest; the answer is it with defaults, metadata and `status.token`.
    pub fn request(&self, store: &Store, ns: &str, name: &str, mut req: Value) -> ApiResult<Value> {
        let body_name = str_at(&req, "/metadata/name").to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(invalid(
                name,
                "metadata.name",
                go_quote(&body_name),
                "must match the service account name if specified",
            ));
        }
        let body_ns = str_at(&req, "/metadata/namespace").to_string();
        if !body_ns.is_empty() && body_ns != ns {
            return Err(invalid(
                name,
                "metadata.namespace",
                go_quote(&body_ns),
                "must match the service account namespace if specified",
            ));
        }
        let st = store.lock();
        let sa = core_object(&st, "serviceaccounts", ns, name)?;
        let mut audiences = strings(req.pointer("/spec/audiences"));
        if audiences.is_empty() {
            audiences = vec![API_AUDIENCE.to_string()];
        }
        let now = self.now();
        let expiration = req
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_EXPIRATION);
        if expiration < MIN_EXPIRATION {
            return Err(invalid(
                "",
                "spec.expirationSeconds",
                expiration.to_string(),
                "may not specify a duration less than 10 minutes",
            ));
        }
        if expiration > MAX_EXPIRATION {
            return Err(invalid(
                "",
                "spec.expirationSeconds",
                expiration.to_string(),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        let (mut pod, mut secret, mut node) = (None, None, None);
        if let Some(bound) = req
            .pointer("/spec/boundObjectRef")
            .filter(|b| b.is_object())
        {
            let api_version = str_at(bound, "/apiVersion");
            let kind = str_at(bound, "/kind");
            let bound_name = str_at(bound, "/name");
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let uid = match (group, kind) {
                ("", "Pod") => {
                    let p = core_object(&st, "pods", ns, bound_name)?;
                    let runs_as = match str_at(&p, "/spec/serviceAccountName") {
                        "" => "default",
                        sa_name => sa_name,
                    };
                    if runs_as != name {
                        return Err(ApiError::bad_request(format!(
                            "cannot bind token for serviceaccount {} to pod running with different serviceaccount name.",
                            go_quote(name)
                        )));
                    }
                    let uid = str_at(&p, "/metadata/uid").to_string();
                    let node_name = str_at(&p, "/spec/nodeName");
                    if !node_name.is_empty() {
                        // The node's uid when it exists; its name alone otherwise.
                        let node_uid = core_object(&st, "nodes", "", node_name)
                            .map(|n| str_at(&n, "/metadata/uid").to_string())
                            .unwrap_or_default();
                        node = Some(Ref {
                            name: node_name.to_string(),
                            uid: node_uid,
                        });
                    }
                    pod = Some(Ref {
                        name: bound_name.to_string(),
                        uid: uid.clone(),
                    });
                    uid
                }
                ("", "Node") => {
                    let n = core_object(&st, "nodes", "", bound_name)?;
                    let uid = str_at(&n, "/metadata/uid").to_string();
                    node = Some(Ref {
                        name: bound_name.to_string(),
                        uid: uid.clone(),
                    });
                    uid
                }
                ("", "Secret") => {
                    let s = core_object(&st, "secrets", ns, bound_name)?;
                    let uid = str_at(&s, "/metadata/uid").to_string();
                    secret = Some(Ref {
                        name: bound_name.to_string(),
                        uid: uid.clone(),
                    });
                    uid
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token to object of type {group}/{version}, Kind={kind}"
                    )))
                }
            };
            let asked = str_at(bound, "/uid");
            if !asked.is_empty() && asked != uid {
                return Err(ApiError::conflict(kind, bound_name, &format!(
                    "the UID in the bound object reference ({asked}) does not match the UID in record. The object might have been deleted and then recreated"
                )));
            }
        }
        drop(st);
        let issued = Issued {
            namespace: ns.to_string(),
            service_account: name.to_string(),
            service_account_uid: str_at(&sa, "/metadata/uid").to_string(),
            audiences: audiences.clone(),
            expires: now.timestamp() + expiration,
            jti: uuid::Uuid::new_v4().to_string(),
            pod,
            secret,
            node,
        };
        let token = jwt(&issued, now.timestamp());
        {
            let mut all = self.issued();
            // Forget what no review can accept any more.
            let stale = now.timestamp() - LEEWAY;
            all.retain(|_, t| t.expires >= stale);
            all.insert(token.clone(), issued);
        }
        req["apiVersion"] = json!("authentication.k8s.io/v1");
        req["kind"] = json!("TokenRequest");
        let meta = req
            .as_object_mut()
            .expect("a decoded object")
            .entry("metadata")
            .or_insert(json!({}));
        meta["name"] = json!(name);
        meta["namespace"] = json!(ns);
        meta["creationTimestamp"] = json!(rfc3339(now));
        req["spec"]["audiences"] = json!(audiences);
        req["spec"]["expirationSeconds"] = json!(expiration);
        req["status"] = json!({
            "token": token,
            "expirationTimestamp": rfc3339(now + chrono::Duration::seconds(expiration)),
        });
        Ok(req)
    }

    /// `POST /apis/authentication.k8s.io/v1/tokenreviews`: `review` is the decoded TokenReview;
    /// the answer is it with `status`.
    pub fn review(&self, store: &Store, mut review: Value) -> ApiResult<Value> {
        let token = str_at(&review, "/spec/token").to_string();
        if token.is_empty() {
            return Err(ApiError::bad_request(
                "token is required for TokenReview in authentication",
            ));
        }
        let mut wanted = strings(review.pointer("/spec/audiences"));
        if wanted.is_empty() {
            wanted = vec![API_AUDIENCE.to_string()];
        }
        let issued = self.issued().get(&token).cloned();
        let error = match issued {
            Some(t) => match self.authenticate(store, &t, &wanted) {
                Ok(status) => {
                    review["status"] = status;
                    None
                }
                Err(reason) => Some(format!("[invalid bearer token, {reason}]")),
            },
            // Not issued here: a JWT fails its signature check, anything else is no JWT at all.
            None if token.split('.').count() == 3 => Some(
                "[invalid bearer token, square/go-jose: error in cryptographic primitive]".into(),
            ),
            None => Some("invalid bearer token".into()),
        };
        if let Some(error) = error {
            review["status"] = json!({"user": {}, "error": error});
        }
        review["apiVersion"] = json!("authentication.k8s.io/v1");
        review["kind"] = json!("TokenReview");
        Ok(review)
    }

    /// The status of a review of a token this server issued, or why it is refused.
    fn authenticate(&self, store: &Store, t: &Issued, wanted: &[String]) -> Result<Value, String> {
        let audiences: Vec<String> = t
            .audiences
            .iter()
            .filter(|a| wanted.contains(a))
            .cloned()
            .collect();
        if audiences.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                go_list(&t.audiences),
                go_list(wanted)
            ));
        }
        let now = self.now().timestamp();
        if now - LEEWAY > t.expires {
            return Err("service account token has expired".into());
        }
        let gone_before = now - LEEWAY;
        let invalidated = || "service account token has been invalidated".to_string();
        let st = store.lock();
        let ns = t.namespace.as_str();
        let sa =
            core_object(&st, "serviceaccounts", ns, &t.service_account).map_err(|e| e.message)?;
        let sa_uid = str_at(&sa, "/metadata/uid");
        if sa_uid != t.service_account_uid {
            return Err(format!(
                "service account UID ({sa_uid}) does not match claim ({})",
                t.service_account_uid
            ));
        }
        if deleted_before(&sa, gone_before) {
            return Err(format!(
                "service account {ns}/{} has been deleted",
                t.service_account
            ));
        }
        // The bound objects: there, not recreated, not deleted.
        let check = |resource: &str, kind: &str, r: &Ref, ns: &str| -> Result<(), String> {
            let obj = core_object(&st, resource, ns, &r.name).map_err(|_| invalidated())?;
            let uid = str_at(&obj, "/metadata/uid");
            if uid != r.uid {
                return Err(format!(
                    "{kind} UID ({uid}) does not match service account {kind} ref claim ({})",
                    r.uid
                ));
            }
            if deleted_before(&obj, gone_before) {
                return Err(invalidated());
            }
            Ok(())
        };
        if let Some(secret) = &t.secret {
            check("secrets", "secret", secret, ns)?;
        }
        if let Some(pod) = &t.pod {
            check("pods", "pod", pod, ns)?;
        }
        if let (Some(node), None) = (&t.node, &t.pod) {
            check("nodes", "node", node, "")?;
        }
        drop(st);
        let mut extra: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        extra.insert(
            "authentication.kubernetes.io/credential-id",
            vec![format!("JTI={}", t.jti)],
        );
        if let Some(pod) = &t.pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name",
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid",
                vec![pod.uid.clone()],
            );
        }
        if let Some(node) = &t.node {
            extra.insert(
                "authentication.kubernetes.io/node-name",
                vec![node.name.clone()],
            );
            if !node.uid.is_empty() {
                extra.insert(
                    "authentication.kubernetes.io/node-uid",
                    vec![node.uid.clone()],
                );
            }
        }
        Ok(json!({
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{ns}:{}", t.service_account),
                "uid": t.service_account_uid,
                "groups": [
                    "system:serviceaccounts",
                    format!("system:serviceaccounts:{ns}"),
                    "system:authenticated",
                ],
                "extra": extra,
            },
            "audiences": audiences,
        }))
    }
}

/// A token shaped like kube-apiserver's: a JWT with its claims, whose signature is random.
fn jwt(t: &Issued, now: i64) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = json!({"alg": "RS256", "kid": "kruise-test-apiserver"});
    let r = |r: &Option<Ref>| r.as_ref().map(|r| json!({"name": r.name, "uid": r.uid}));
    let mut kubernetes = json!({
        "namespace": t.namespace,
        "serviceaccount": {"name": t.service_account, "uid": t.service_account_uid},
    });
    for (key, value) in [
        ("pod", r(&t.pod)),
        ("secret", r(&t.secret)),
        ("node", r(&t.node)),
    ] {
        if let Some(v) = value {
            kubernetes[key] = v;
        }
    }
    let claims = json!({
        "aud": t.audiences,
        "exp": t.expires,
        "iat": now,
        "iss": API_AUDIENCE,
        "jti": t.jti,
        "kubernetes.io": kubernetes,
        "nbf": now,
        "sub": format!("system:serviceaccount:{}:{}", t.namespace, t.service_account),
    });
    let signature = [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat();
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(&signature)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_print_as_go_prints_a_string_slice() {
        assert_eq!(go_list(&["a".into(), "b c".into()]), r#"["a" "b c"]"#);
    }
}
