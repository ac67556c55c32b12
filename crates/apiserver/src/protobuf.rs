//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed commands
//! send them for built-in kinds (`kubectl create namespace`, `create secret`, `create
//! configmap`). A body is the magic `k8s\0` and a `runtime.Unknown` whose `raw` holds the typed
//! message (k8s-pb's types); it becomes the JSON form the rest of the server reads. Each message
//! is converted field by field, every field named (a field k8s-pb gains fails the build rather
//! than being dropped). The kinds read are those kubectl creates typed among the ones served;
//! any other gets 415 saying to send JSON. Answers stay JSON: kubectl asks for protobuf first,
//! and takes JSON as well.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{json, Map, Value};

use crate::errors::{ApiError, ApiResult};

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// The kinds whose protobuf this server reads: `(apiVersion, kind)`.
const READ: &[(&str, &str)] = &[("v1", "Namespace"), ("v1", "Secret"), ("v1", "ConfigMap")];

/// The object in a protobuf body, as JSON with its `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("the protobuf body does not start with \"k8s\\0\""))
        .and_then(|rest| Unknown::decode(rest).map_err(bad_body))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => core::Namespace::decode(&raw[..]).map_err(bad_body)?.to_json(),
        ("v1", "Secret") => core::Secret::decode(&raw[..]).map_err(bad_body)?.to_json(),
        ("v1", "ConfigMap") => core::ConfigMap::decode(&raw[..]).map_err(bad_body)?.to_json(),
        _ => {
            let read: Vec<String> = READ.iter().map(|(v, k)| format!("{k} ({v})")).collect();
            return Err(ApiError::unsupported_media_type(format!(
                "the test API server reads protobuf bodies for {} only, not {kind} ({api_version}); send this object as application/json (kubectl create -f, kubectl apply)",
                read.join(", ")
            )));
        }
    }
    .unwrap_or_else(|| json!({}));
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn bad_body(e: prost::DecodeError) -> ApiError {
    ApiError::bad_request(format!("the protobuf body cannot be decoded: {e}"))
}

/// A protobuf value in its JSON form; `None` for what JSON leaves out (unset, empty).
trait ToJson {
    fn to_json(&self) -> Option<Value>;
}

/// Go writes a plain (not pointer) field even when it is empty or zero, and JSON leaves such a
/// field out: empty strings and zero integers are unset. (The kinds read here have no pointer
/// to a string or an integer whose zero would mean something the server keeps.)
impl ToJson for String {
    fn to_json(&self) -> Option<Value> {
        (!self.is_empty()).then(|| json!(self))
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Option<Value> {
        Some(json!(self))
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Option<Value> {
        (*self != 0).then(|| json!(self))
    }
}

/// `bytes`: base64, as in JSON.
impl ToJson for Vec<u8> {
    fn to_json(&self) -> Option<Value> {
        Some(json!(base64::engine::general_purpose::STANDARD.encode(self)))
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Option<Value> {
        self.as_ref().and_then(ToJson::to_json)
    }
}

/// `repeated`: left out when empty, as Go's `omitempty` does.
impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Option<Value> {
        let items: Vec<Value> = self.iter().filter_map(ToJson::to_json).collect();
        (!items.is_empty()).then_some(Value::Array(items))
    }
}

impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(&self) -> Option<Value> {
        let m: Map<String, Value> = self
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.to_json()?)))
            .collect();
        (!m.is_empty()).then_some(Value::Object(m))
    }
}

/// `metav1.Time`: RFC 3339 in seconds, as the API server writes it.
impl ToJson for meta::Time {
    fn to_json(&self) -> Option<Value> {
        let at = chrono::DateTime::from_timestamp(self.seconds?, 0)?;
        Some(json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
    }
}

/// `managedFields[].fieldsV1`: its raw bytes are the JSON object itself.
impl ToJson for meta::FieldsV1 {
    fn to_json(&self) -> Option<Value> {
        serde_json::from_slice(self.raw.as_deref()?).ok()
    }
}

/// A message: each field by its JSON name, all of them named (the pattern is exhaustive).
macro_rules! message {
    ($ty:path { $($field:ident => $json:literal),* $(,)? }) => {
        impl ToJson for $ty {
            fn to_json(&self) -> Option<Value> {
                let $ty { $($field),* } = self;
                let mut m = Map::new();
                $(
                    if let Some(v) = $field.to_json() {
                        m.insert($json.to_string(), v);
                    }
                )*
                Some(Value::Object(m))
            }
        }
    };
}

message!(meta::ObjectMeta {
    name => "name", generate_name => "generateName", namespace => "namespace",
    self_link => "selfLink", uid => "uid", resource_version => "resourceVersion",
    generation => "generation", creation_timestamp => "creationTimestamp",
    deletion_timestamp => "deletionTimestamp",
    deletion_grace_period_seconds => "deletionGracePeriodSeconds", labels => "labels",
    annotations => "annotations", owner_references => "ownerReferences",
    finalizers => "finalizers", managed_fields => "managedFields",
});
message!(meta::OwnerReference {
    api_version => "apiVersion", kind => "kind", name => "name", uid => "uid",
    controller => "controller", block_owner_deletion => "blockOwnerDeletion",
});
message!(meta::ManagedFieldsEntry {
    manager => "manager", operation => "operation", api_version => "apiVersion",
    time => "time", fields_type => "fieldsType", fields_v1 => "fieldsV1",
    subresource => "subresource",
});
message!(core::Namespace { metadata => "metadata", spec => "spec", status => "status" });
message!(core::NamespaceSpec { finalizers => "finalizers" });
message!(core::NamespaceStatus { phase => "phase", conditions => "conditions" });
message!(core::NamespaceCondition {
    r#type => "type", status => "status", last_transition_time => "lastTransitionTime",
    reason => "reason", message => "message",
});
message!(core::Secret {
    metadata => "metadata", immutable => "immutable", data => "data",
    string_data => "stringData", r#type => "type",
});
message!(core::ConfigMap {
    metadata => "metadata", immutable => "immutable", data => "data",
    binary_data => "binaryData",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as client-go's protobuf serializer writes it.
    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    #[test]
    fn a_secret_reads_as_its_json() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("pull".into()),
                // What Go sends for the fields it leaves unset.
                generate_name: Some(String::new()),
                generation: Some(0),
                labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(0),
                    nanos: None,
                }),
                ..Default::default()
            }),
            data: BTreeMap::from([("key".to_string(), b"value".to_vec())]),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let body = envelope("v1", "Secret", secret.encode_to_vec());
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "pull", "labels": {"team": "a"}, "creationTimestamp": "1970-01-01T00:00:00Z"},
                "data": {"key": "dmFsdWU="}})
        );
    }

    #[test]
    fn other_kinds_and_other_bodies_are_refused_saying_why() {
        let pod = envelope("v1", "Pod", Vec::new());
        let e = decode(&pod).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("not Pod (v1)"), "{}", e.message);
        assert!(e.message.contains("application/json"), "{}", e.message);
        let e = decode(b"{\"kind\": \"Namespace\"}").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "the protobuf body does not start with \"k8s\\0\"")
        );
    }
}
