//! The JSON form of protobuf values: [`ToJson`] for scalars, collections and the types whose
//! JSON is not their message (Time, MicroTime, Duration, IntOrString, Quantity, RawExtension,
//! FieldsV1, apiextensions' JSON and its "or" types), and [`message!`] for every other message.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

/// A protobuf value in its JSON form; `None` for what JSON leaves out.
pub trait ToJson {
    fn to_json(&self) -> Option<Value>;
}

/// Go writes a plain (not pointer) string even when empty, and JSON leaves it out (`omitempty`):
/// an empty string is unset, as Go reads both.
impl ToJson for String {
    fn to_json(&self) -> Option<Value> {
        (!self.is_empty()).then(|| json!(self))
    }
}

/// Numbers and booleans are kept when zero: a pointer field (`replicas`, `runAsUser`) is sent
/// only when set, so its zero means zero; a plain field's zero reads in Go as if it were absent.
macro_rules! scalar {
    ($($ty:ty),*) => {$(
        impl ToJson for $ty {
            fn to_json(&self) -> Option<Value> {
                Some(json!(self))
            }
        }
    )*};
}
scalar!(bool, i32, i64, f64);

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

impl<T: ToJson> ToJson for Box<T> {
    fn to_json(&self) -> Option<Value> {
        (**self).to_json()
    }
}

/// `repeated`: left out when empty, as Go's `omitempty` does.
impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Option<Value> {
        let items: Vec<Value> = self.iter().filter_map(ToJson::to_json).collect();
        (!items.is_empty()).then_some(Value::Array(items))
    }
}

/// `map`: left out when empty; an entry keeps its key even with an empty value (`data: {a: ""}`).
impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(&self) -> Option<Value> {
        let m: serde_json::Map<String, Value> = self
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json().unwrap_or_else(|| json!(""))))
            .collect();
        (!m.is_empty()).then_some(Value::Object(m))
    }
}

/// A timestamp in RFC 3339 UTC with `digits` of fraction; Go's zero time (sent as no seconds,
/// or 0 and 0) is unset.
fn timestamp(seconds: Option<i64>, nanos: Option<i32>, digits: usize) -> Option<Value> {
    let (seconds, nanos) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
    if seconds == 0 && nanos == 0 {
        return None;
    }
    let at = chrono::DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)?;
    let format = match digits {
        0 => "%Y-%m-%dT%H:%M:%SZ",
        _ => "%Y-%m-%dT%H:%M:%S%.6fZ",
    };
    Some(json!(at.format(format).to_string()))
}

/// `metav1.Time`: RFC 3339 in seconds, as the API server writes it.
impl ToJson for meta::Time {
    fn to_json(&self) -> Option<Value> {
        timestamp(self.seconds, self.nanos, 0)
    }
}

/// `metav1.MicroTime`: RFC 3339 with microseconds.
impl ToJson for meta::MicroTime {
    fn to_json(&self) -> Option<Value> {
        timestamp(self.seconds, self.nanos, 6)
    }
}

/// `metav1.Duration`: Go's duration string (`1h2m3s`, `1.5s`).
impl ToJson for meta::Duration {
    fn to_json(&self) -> Option<Value> {
        let nanos = self.duration.unwrap_or(0);
        let (h, m) = (nanos / 3_600_000_000_000, nanos / 60_000_000_000 % 60);
        let s = (nanos % 60_000_000_000) as f64 / 1e9;
        Some(json!(match (h, m) {
            (0, 0) => format!("{s}s"),
            (0, _) => format!("{m}m{s}s"),
            _ => format!("{h}h{m}m{s}s"),
        }))
    }
}

/// `intstr.IntOrString`: a number (type 0) or a string (type 1).
impl ToJson for IntOrString {
    fn to_json(&self) -> Option<Value> {
        Some(match self.r#type.unwrap_or(0) {
            0 => json!(self.int_val.unwrap_or(0)),
            _ => json!(self.str_val.clone().unwrap_or_default()),
        })
    }
}

/// `resource.Quantity`: its string.
impl ToJson for Quantity {
    fn to_json(&self) -> Option<Value> {
        self.string.as_ref().map(|s| json!(s))
    }
}

/// Embedded JSON (`runtime.RawExtension`, `FieldsV1`, apiextensions' `JSON`): the raw bytes
/// are the JSON value itself; bytes that are not JSON are kept as a string rather than lost.
fn raw_json(raw: &Option<Vec<u8>>) -> Option<Value> {
    let raw = raw.as_deref().filter(|r| !r.is_empty())?;
    Some(serde_json::from_slice(raw).unwrap_or_else(|_| json!(String::from_utf8_lossy(raw))))
}

impl ToJson for RawExtension {
    fn to_json(&self) -> Option<Value> {
        raw_json(&self.raw)
    }
}

impl ToJson for meta::FieldsV1 {
    fn to_json(&self) -> Option<Value> {
        raw_json(&self.raw)
    }
}

impl ToJson for apiextensions::Json {
    fn to_json(&self) -> Option<Value> {
        raw_json(&self.raw)
    }
}

/// `items`: one schema, or an array of them.
impl ToJson for apiextensions::JsonSchemaPropsOrArray {
    fn to_json(&self) -> Option<Value> {
        match &self.schema {
            Some(schema) => schema.to_json(),
            None => Some(self.j_son_schemas.to_json().unwrap_or_else(|| json!([]))),
        }
    }
}

/// `additionalProperties`, `additionalItems`: a schema, or whether anything is allowed.
impl ToJson for apiextensions::JsonSchemaPropsOrBool {
    fn to_json(&self) -> Option<Value> {
        match &self.schema {
            Some(schema) => schema.to_json(),
            None => Some(json!(self.allows.unwrap_or(false))),
        }
    }
}

/// `dependencies` values: a schema, or the names of required properties.
impl ToJson for apiextensions::JsonSchemaPropsOrStringArray {
    fn to_json(&self) -> Option<Value> {
        match &self.schema {
            Some(schema) => schema.to_json(),
            None => Some(json!(self.property)),
        }
    }
}

/// A message: each field by its JSON name, or `inline` for an embedded Go struct whose fields
/// JSON puts in the parent (`Volume`'s `VolumeSource`). Every field is named: the pattern is
/// exhaustive, so a field k8s-pb gains fails the build rather than being dropped.
macro_rules! message {
    ($ty:path { $($field:ident => $json:tt),* $(,)? }) => {
        impl $crate::protobuf::json::ToJson for $ty {
            #[allow(unused_mut)] // a message without fields
            fn to_json(&self) -> Option<serde_json::Value> {
                let $ty { $($field),* } = self;
                let mut m = serde_json::Map::new();
                $( $crate::protobuf::json::put!(m, $field, $json); )*
                Some(serde_json::Value::Object(m))
            }
        }
    };
}

macro_rules! put {
    ($m:ident, $field:ident, inline) => {
        if let Some(serde_json::Value::Object(inner)) =
            $crate::protobuf::json::ToJson::to_json($field)
        {
            $m.extend(inner);
        }
    };
    ($m:ident, $field:ident, $json:literal) => {
        if let Some(v) = $crate::protobuf::json::ToJson::to_json($field) {
            $m.insert($json.to_string(), v);
        }
    };
}

pub(crate) use {message, put};
