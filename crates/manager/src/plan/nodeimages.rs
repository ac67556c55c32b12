//! NodeImage lifecycle (OpenKruise's nodeimage controller): one per Node once the Node has been
//! Ready for the creation delay, labels mirrored, none for virtual-kubelet nodes, removed when
//! the Node is gone (unless it carries the fake-NodeImage label, as in OpenKruise's e2e tests).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kruise_api::constants::{FAKE_NODEIMAGE_LABEL, VIRTUAL_KUBELET_LABEL};

use super::{NodeInfo, Plan, Settings, Snapshot};

#[derive(Debug, Clone, PartialEq)]
pub enum NodeImageChange {
    Create {
        labels: BTreeMap<String, String>,
        node_uid: String,
    },
    Relabel {
        labels: BTreeMap<String, String>,
    },
    Delete,
}

fn is_virtual(node: &NodeInfo) -> bool {
    node.labels.get(VIRTUAL_KUBELET_LABEL.0).map(String::as_str) == Some(VIRTUAL_KUBELET_LABEL.1)
}

pub fn lifecycle(s: &Snapshot, settings: &Settings, now: Timestamp, plan: &mut Plan) {
    let existing: BTreeMap<&str, &kruise_api::NodeImage> = s
        .node_images
        .iter()
        .filter_map(|ni| ni.metadata.name.as_deref().map(|n| (n, ni.as_ref())))
        .collect();
    let nodes: BTreeMap<&str, &NodeInfo> = s
        .nodes
        .iter()
        .filter(|n| !is_virtual(n))
        .map(|n| (n.name.as_str(), n))
        .collect();
    for (name, node) in &nodes {
        match existing.get(name) {
            None => {
                let Some(ready) = node.ready_since else {
                    continue;
                };
                let ready_for = Duration::try_from(now.duration_since(ready)).unwrap_or_default();
                if ready_for >= settings.nodeimage_creation_delay {
                    let change = NodeImageChange::Create {
                        labels: node.labels.clone(),
                        node_uid: node.uid.clone(),
                    };
                    plan.node_images.insert(name.to_string(), change);
                } else {
                    plan.requeue(settings.nodeimage_creation_delay - ready_for);
                }
            }
            Some(ni) => {
                let labels = ni.metadata.labels.clone().unwrap_or_default();
                if labels != node.labels && ni.metadata.deletion_timestamp.is_none() {
                    plan.node_images.insert(
                        name.to_string(),
                        NodeImageChange::Relabel {
                            labels: node.labels.clone(),
                        },
                    );
                }
            }
        }
    }
    for (name, ni) in &existing {
        let fake = ni
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(FAKE_NODEIMAGE_LABEL));
        if !nodes.contains_key(name) && !fake && ni.metadata.deletion_timestamp.is_none() {
            plan.node_images
                .insert(name.to_string(), NodeImageChange::Delete);
        }
    }
}
