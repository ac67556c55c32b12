//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as kubectl's typed commands
//! (`kubectl create namespace|secret|configmap|serviceaccount|token|deployment`, `kubectl run`)
//! and client-go programs send them for built-in kinds. A body is the magic `k8s\0` and a `runtime.Unknown` whose `raw`
//! holds the typed message (k8s-pb's types); it becomes the JSON form the rest of the server
//! reads. Every built-in kind the server serves is read; answers stay JSON: clients asking for
//! protobuf (kubectl does) list JSON as well, and take it.
//!
//! Each message's JSON names are listed in the modules below, one `message!` per message, every
//! field named: a field k8s-pb gains fails the build instead of being dropped.

mod apiextensions;
mod apps;
mod authentication;
mod core;
mod json;
mod pod;
mod volumes;

use k8s_pb::api::coordination::v1 as coordination_v1;
use k8s_pb::api::{apps::v1 as apps_v1, authentication::v1 as authentication_v1};
use k8s_pb::api::{core::v1 as core_v1, events::v1 as events_v1};
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions_v1;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{json, Value};

use crate::errors::{ApiError, ApiResult};
use json::ToJson;

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// The message in `raw`, as JSON.
fn read<M: Message + Default + ToJson>(raw: &[u8]) -> ApiResult<Value> {
    let message = M::decode(raw).map_err(bad_body)?;
    Ok(message.to_json().unwrap_or_else(|| json!({})))
}

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
        ("v1", "Namespace") => read::<core_v1::Namespace>(&raw),
        ("v1", "Node") => read::<core_v1::Node>(&raw),
        ("v1", "Pod") => read::<core_v1::Pod>(&raw),
        ("v1", "Secret") => read::<core_v1::Secret>(&raw),
        ("v1", "ConfigMap") => read::<core_v1::ConfigMap>(&raw),
        ("v1", "ServiceAccount") => read::<core_v1::ServiceAccount>(&raw),
        ("authentication.k8s.io/v1", "TokenRequest") => {
            read::<authentication_v1::TokenRequest>(&raw)
        }
        ("authentication.k8s.io/v1", "TokenReview") => {
            read::<authentication_v1::TokenReview>(&raw)
        }
        ("v1", "Event") => read::<core_v1::Event>(&raw),
        ("events.k8s.io/v1", "Event") => read::<events_v1::Event>(&raw),
        ("coordination.k8s.io/v1", "Lease") => read::<coordination_v1::Lease>(&raw),
        ("apps/v1", "Deployment") => read::<apps_v1::Deployment>(&raw),
        ("apps/v1", "StatefulSet") => read::<apps_v1::StatefulSet>(&raw),
        ("apps/v1", "DaemonSet") => read::<apps_v1::DaemonSet>(&raw),
        ("apps/v1", "ReplicaSet") => read::<apps_v1::ReplicaSet>(&raw),
        ("apps/v1", "ControllerRevision") => read::<apps_v1::ControllerRevision>(&raw),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            read::<apiextensions_v1::CustomResourceDefinition>(&raw)
        }
        _ => Err(ApiError::unsupported_media_type(format!(
            "the test API server reads protobuf bodies of the built-in kinds it serves, not {kind} ({api_version}); send this object as application/json"
        ))),
    }?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn bad_body(e: prost::DecodeError) -> ApiError {
    ApiError::bad_request(format!("the protobuf body cannot be decoded: {e}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::{apps::v1 as openapi_apps, coordination::v1 as openapi_coordination};
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

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

    fn metadata(name: &str) -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: Some(name.into()),
            // What Go sends for the plain fields it leaves unset.
            generate_name: Some(String::new()),
            creation_timestamp: Some(meta::Time::default()),
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            ..Default::default()
        })
    }

    #[test]
    fn a_secret_reads_as_its_json() {
        let secret = core_v1::Secret {
            metadata: metadata("pull"),
            data: BTreeMap::from([("key".to_string(), b"value".to_vec())]),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let body = envelope("v1", "Secret", secret.encode_to_vec());
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "pull", "labels": {"app": "web"}},
                "data": {"key": "dmFsdWU="}})
        );
    }

    /// `kubectl create deployment --replicas=0` as client-go sends it, with the forms whose JSON
    /// is not their message: zero replicas kept, IntOrString, Quantity, inline volume source
    /// and probe handler. The JSON reads back as the Kubernetes type with the same values.
    #[test]
    fn a_deployment_round_trips_into_the_kubernetes_type() {
        let container = core_v1::Container {
            name: Some("web".into()),
            image: Some("nginx".into()),
            resources: Some(core_v1::ResourceRequirements {
                limits: BTreeMap::from([(
                    "memory".to_string(),
                    Quantity {
                        string: Some("64Mi".into()),
                    },
                )]),
                ..Default::default()
            }),
            readiness_probe: Some(core_v1::Probe {
                handler: Some(core_v1::ProbeHandler {
                    http_get: Some(core_v1::HttpGetAction {
                        path: Some("/healthz".into()),
                        port: Some(IntOrString {
                            r#type: Some(0),
                            int_val: Some(8080),
                            str_val: Some(String::new()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = core_v1::PodSpec {
            containers: vec![container],
            volumes: vec![core_v1::Volume {
                name: Some("scratch".into()),
                volume_source: Some(core_v1::VolumeSource {
                    empty_dir: Some(core_v1::EmptyDirVolumeSource::default()),
                    ..Default::default()
                }),
            }],
            security_context: Some(core_v1::PodSecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let deployment = apps_v1::Deployment {
            metadata: metadata("web"),
            spec: Some(apps_v1::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                    ..Default::default()
                }),
                template: Some(core_v1::PodTemplateSpec {
                    metadata: metadata(""),
                    spec: Some(pod),
                }),
                strategy: Some(apps_v1::DeploymentStrategy {
                    r#type: Some("RollingUpdate".into()),
                    rolling_update: Some(apps_v1::RollingUpdateDeployment {
                        max_surge: Some(IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: Some("25%".into()),
                        }),
                        max_unavailable: None,
                    }),
                }),
                ..Default::default()
            }),
            status: Some(apps_v1::DeploymentStatus::default()),
        };
        let body = envelope("apps/v1", "Deployment", deployment.encode_to_vec());
        let obj = decode(&body).unwrap();
        assert_eq!(
            obj["spec"]["template"]["spec"]["volumes"][0],
            json!({"name": "scratch", "emptyDir": {}})
        );
        let typed: openapi_apps::Deployment = serde_json::from_value(obj).unwrap();
        let spec = typed.spec.unwrap();
        assert_eq!(spec.replicas, Some(0));
        let strategy = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(
            strategy.max_surge,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("25%".into()))
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.security_context.unwrap().run_as_user, Some(0));
        let c = &pod.containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_deref()),
            ("web", Some("nginx"))
        );
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "64Mi"
        );
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            probe.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080)
        );
        assert!(pod.volumes.unwrap()[0].empty_dir.is_some());
    }

    #[test]
    fn a_lease_keeps_its_micro_times() {
        let lease = coordination_v1::Lease {
            metadata: metadata("leader"),
            spec: Some(coordination_v1::LeaseSpec {
                holder_identity: Some("manager-0".into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(meta::MicroTime {
                    seconds: Some(1_700_000_000),
                    nanos: Some(123_456_000),
                }),
                ..Default::default()
            }),
        };
        let body = envelope("coordination.k8s.io/v1", "Lease", lease.encode_to_vec());
        let obj = decode(&body).unwrap();
        assert_eq!(
            obj["spec"]["renewTime"],
            json!("2023-11-14T22:13:20.123456Z")
        );
        let typed: openapi_coordination::Lease = serde_json::from_value(obj).unwrap();
        let spec = typed.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("manager-0"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    /// `kubectl create token --bound-object-kind Pod` as client-go sends it: an empty status,
    /// Go's zero time in it, and the bound object's `uid` under its protobuf name.
    #[test]
    fn a_token_request_reads_as_its_json() {
        let request = authentication_v1::TokenRequest {
            metadata: metadata(""),
            spec: Some(authentication_v1::TokenRequestSpec {
                audiences: vec!["peer".into()],
                expiration_seconds: Some(600),
                bound_object_ref: Some(authentication_v1::BoundObjectReference {
                    kind: Some("Pod".into()),
                    api_version: Some("v1".into()),
                    name: Some("web".into()),
                    u_id: Some("1234".into()),
                }),
            }),
            status: Some(authentication_v1::TokenRequestStatus {
                token: Some(String::new()),
                expiration_timestamp: Some(meta::Time::default()),
            }),
        };
        let body = envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            request.encode_to_vec(),
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"labels": {"app": "web"}},
                "spec": {"audiences": ["peer"], "expirationSeconds": 600,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "1234"}},
                "status": {}})
        );
    }

    #[test]
    fn other_kinds_and_other_bodies_are_refused_saying_why() {
        let job = envelope("batch/v1", "Job", Vec::new());
        let e = decode(&job).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("not Job (batch/v1)"), "{}", e.message);
        assert!(e.message.contains("application/json"), "{}", e.message);
        let e = decode(b"{\"kind\": \"Namespace\"}").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "the protobuf body does not start with \"k8s\\0\"")
        );
    }
}
