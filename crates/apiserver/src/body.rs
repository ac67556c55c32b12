//! Request bodies as kube-apiserver reads them: JSON or YAML for objects, and for built-in kinds
//! also the protobuf that kubectl's typed commands send (`protobuf`; custom resources have no
//! protobuf form); anything else is `415 Unsupported Media Type` naming what is accepted. Also
//! the patch types for patches, and the object keys a body repeats, which a `serde_json::Value`
//! would silently collapse to the last one.

use std::collections::HashSet;
use std::fmt;

use axum::http::HeaderMap;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};

use crate::errors::{ApiError, ApiResult};

/// The media types object bodies may come in.
const OBJECT_TYPES: &str = "application/json, application/yaml";
/// The media types bodies of built-in kinds may come in.
const BUILTIN_TYPES: &str =
    "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// A decoded body and the paths of the keys it repeats (`spec.image`, `spec.x[0].y`).
#[derive(Debug, Default)]
pub struct Decoded {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// The media type of the request's `Content-Type`, without parameters; JSON when absent, as
/// kube-apiserver assumes.
pub fn media_type(headers: &HeaderMap) -> String {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let t = ct.split(';').next().unwrap_or_default().trim();
    if t.is_empty() {
        "application/json".into()
    } else {
        t.to_ascii_lowercase()
    }
}

/// Refuses a body in a media type this server does not read, as kube-apiserver does.
pub fn unsupported(accepted: &str) -> ApiError {
    ApiError::unsupported_media_type(format!(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    ))
}

/// Refuses, before anything else, an object body this server cannot read; `builtin`: the body
/// is of a built-in kind, which may come as protobuf.
pub fn accepts_object(headers: &HeaderMap, builtin: bool) -> ApiResult<()> {
    match media_type(headers).as_str() {
        "application/json" | "application/yaml" => Ok(()),
        crate::protobuf::MEDIA_TYPE if builtin => Ok(()),
        _ if builtin => Err(unsupported(BUILTIN_TYPES)),
        _ => Err(unsupported(OBJECT_TYPES)),
    }
}

/// An object body (create, update, delete options), by its content type; `builtin` as for
/// [`accepts_object`].
pub fn decode_object(headers: &HeaderMap, body: &[u8], builtin: bool) -> ApiResult<Decoded> {
    accepts_object(headers, builtin)?;
    match media_type(headers).as_str() {
        "application/yaml" => decode_yaml(body),
        crate::protobuf::MEDIA_TYPE => Ok(Decoded {
            value: crate::protobuf::decode(body)?,
            duplicates: Vec::new(),
        }),
        _ => decode_json(body),
    }
}

/// A JSON body; empty is `{}`.
pub fn decode_json(body: &[u8]) -> ApiResult<Decoded> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decoded {
            value: json!({}),
            duplicates: Vec::new(),
        });
    }
    let value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let mut duplicates = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Keys {
        path: String::new(),
        out: &mut duplicates,
    }
    .deserialize(&mut de);
    Ok(Decoded { value, duplicates })
}

fn decode_yaml(body: &[u8]) -> ApiResult<Decoded> {
    let value: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?;
    let mut duplicates = Vec::new();
    let _ = Keys {
        path: String::new(),
        out: &mut duplicates,
    }
    .deserialize(serde_yaml::Deserializer::from_slice(body));
    let value = if value.is_null() { json!({}) } else { value };
    Ok(Decoded { value, duplicates })
}

/// Walks a document, recording the path of every key its object repeats.
struct Keys<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Keys<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Keys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<KeyText>()? {
            let path = if self.path.is_empty() {
                key.0.clone()
            } else {
                format!("{}.{}", self.path, key.0)
            };
            if !seen.insert(key.0) {
                self.out.push(path.clone());
            }
            map.next_value_seed(Keys {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Keys {
                path: format!("{}[{i}]", self.path),
                out: &mut *self.out,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A map key as text, whatever scalar a YAML document uses for it.
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E>(self, s: &str) -> Result<KeyText, E> {
                Ok(KeyText(s.to_string()))
            }
            fn visit_bool<E>(self, b: bool) -> Result<KeyText, E> {
                Ok(KeyText(b.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", ct.parse().unwrap());
        h
    }

    #[test]
    fn repeated_keys_are_found_with_their_paths() {
        let body =
            br#"{"spec": {"image": "a", "image": "b", "x": [{"y": 1, "y": 2}]}, "spec": {}}"#;
        let d = decode_json(body).unwrap();
        assert_eq!(d.duplicates, ["spec.image", "spec.x[0].y", "spec"]);
        assert_eq!(d.value["spec"], json!({}), "the last one wins, as in Go");
        let yaml = b"spec:\n  image: a\n  image: b\n";
        let d = decode_object(&headers("application/yaml"), yaml, false).unwrap();
        assert_eq!(d.duplicates, ["spec.image"]);
        assert_eq!(d.value["spec"]["image"], "b");
    }

    #[test]
    fn other_media_types_are_refused() {
        let protobuf = headers("application/vnd.kubernetes.protobuf");
        let e = decode_object(&protobuf, b"k8s\0", false).unwrap_err();
        assert_eq!(e.code, 415, "custom resources have no protobuf form");
        assert_eq!(e.message, "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml");
        let e = decode_object(&headers("application/cbor"), b"", true).unwrap_err();
        assert_eq!(e.message, "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf");
        let d = decode_object(
            &headers("application/json; charset=utf-8"),
            b"{\"a\": 1}",
            true,
        )
        .unwrap();
        assert_eq!(d.value, json!({"a": 1}));
        assert_eq!(decode_json(b"{").unwrap_err().code, 400);
    }
}
