//! Nodes and Pods as the manager watches them: only the fields its decisions read are decoded
//! (a Node's labels, Ready condition and addresses, a Pod's labels, node and phase), so a kubelet
//! heartbeat or a Node's list of images costs a parse and nothing more, and nothing else is kept
//! in memory.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Deserializer};

/// The metadata the manager reads; managedFields and annotations are skipped while parsing.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    deletion_timestamp: Option<Time>,
    creation_timestamp: Option<Time>,
}

pub(crate) fn lean_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = LeanMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        owner_references: m.owner_references,
        deletion_timestamp: m.deletion_timestamp,
        creation_timestamp: m.creation_timestamp,
        ..Default::default()
    })
}

/// A Node: labels, readiness and addresses.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct LeanNode {
    #[serde(deserialize_with = "lean_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: LeanNodeStatus,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct LeanNodeStatus {
    #[serde(default)]
    pub conditions: Vec<LeanCondition>,
    #[serde(default)]
    pub addresses: Vec<LeanAddress>,
}

/// One of a Node's addresses (`InternalIP`, `ExternalIP`, `Hostname`, …).
#[derive(Deserialize, Clone, Debug, Default)]
pub struct LeanAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeanCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub last_transition_time: Option<Time>,
}

impl LeanNode {
    /// Since when the Ready condition has been True; `None` when not Ready.
    pub fn ready_since(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        let ready = self.status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True").then(|| {
            ready
                .last_transition_time
                .as_ref()
                .map_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH, |t| t.0)
        })
    }

    /// The Node's first `InternalIP`, where its daemon serves blobs to peers; `None` (the node is
    /// never named as a peer) when it has none or it does not parse.
    pub fn internal_ip(&self) -> Option<std::net::IpAddr> {
        let a = (self.status.addresses.iter()).find(|a| a.type_ == "InternalIP")?;
        a.address.trim().parse().ok()
    }
}

/// A Pod: labels, node and phase.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct LeanPod {
    #[serde(deserialize_with = "lean_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LeanPodSpec,
    #[serde(default)]
    pub status: LeanPodStatus,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeanPodSpec {
    pub node_name: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct LeanPodStatus {
    pub phase: Option<String>,
}

impl LeanPod {
    /// Scheduled, not finished, not being deleted: its node counts for podSelector jobs.
    pub fn active(&self) -> bool {
        self.spec
            .node_name
            .as_deref()
            .is_some_and(|n| !n.is_empty())
            && !matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
            && self.metadata.deletion_timestamp.is_none()
    }
}

macro_rules! lean_resource {
    ($ty:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;
            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                "".into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                "v1".into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use lean_resource;

lean_resource!(LeanNode, "Node", "nodes", ClusterResourceScope);
lean_resource!(LeanPod, "Pod", "pods", NamespaceResourceScope);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_decisions_read_is_kept() {
        let node: LeanNode = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "uid": "u", "resourceVersion": "7", "labels": {"a": "b"},
                "annotations": {"big": "x"}, "managedFields": [{"manager": "kubelet"}]},
            "status": {"images": [{"names": ["nginx"], "sizeBytes": 1}],
                "addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.0.7"}, {"type": "InternalIP", "address": "fd00::7"}],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T09:00:00Z", "lastHeartbeatTime": "2026-11-26T10:00:00Z"}]},
        }))
        .unwrap();
        assert_eq!(node.metadata.annotations, None);
        assert_eq!(node.metadata.managed_fields, None);
        assert_eq!(
            node.ready_since(),
            Some("2026-11-26T09:00:00Z".parse().unwrap())
        );
        assert_eq!(
            node.internal_ip(),
            Some([10, 0, 0, 7].into()),
            "the first InternalIP"
        );
        let bare: LeanNode = serde_json::from_value(json!({"metadata": {"name": "b"},
            "status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]}}))
        .unwrap();
        assert_eq!(bare.internal_ip(), None);
        let pod: LeanPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        assert!(pod.active());
    }
}
