//! NodeImage lifecycle (OpenKruise's nodeimage controller): one per Node once the Node has been
//! Ready for the creation delay, labels mirrored, none for virtual-kubelet nodes, removed when
//! the Node is gone (unless it carries the fake-NodeImage label, as in OpenKruise's e2e tests).
//! Decided per node, from that node's records only.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// What the engine knows of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRec {
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// Since when Ready has been True; `None` when not Ready.
    pub ready_since: Option<Timestamp>,
    /// Its first InternalIP: where its daemon serves blobs to peers (none: never a seed).
    pub address: Option<std::net::IpAddr>,
}

impl NodeRec {
    pub fn is_virtual(&self) -> bool {
        let (k, v) = kruise_api::constants::VIRTUAL_KUBELET_LABEL;
        self.labels.get(k).map(String::as_str) == Some(v)
    }
}

/// What the lifecycle needs of a NodeImage.
#[derive(Debug, Clone, Copy)]
pub struct NodeImageView<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub deleting: bool,
}

impl NodeImageView<'_> {
    fn fake(&self) -> bool {
        self.labels
            .contains_key(kruise_api::constants::FAKE_NODEIMAGE_LABEL)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create {
        labels: BTreeMap<String, String>,
        node_uid: String,
    },
    Relabel {
        labels: BTreeMap<String, String>,
    },
    Delete,
}

/// What should happen to the NodeImage of one node now, and when to look again (a node not yet
/// Ready for the creation delay).
pub fn decide(
    node: Option<&NodeRec>,
    ni: Option<NodeImageView>,
    delay: Duration,
    now: Timestamp,
) -> (Option<Change>, Option<Timestamp>) {
    let node = node.filter(|n| !n.is_virtual());
    match (node, ni) {
        (Some(node), None) => {
            let Some(ready) = node.ready_since else {
                return (None, None);
            };
            let ready_for = Duration::try_from(now.duration_since(ready)).unwrap_or_default();
            if ready_for >= delay {
                let change = Change::Create {
                    labels: node.labels.clone(),
                    node_uid: node.uid.clone(),
                };
                (Some(change), None)
            } else {
                let at =
                    ready + k8s_openapi::jiff::SignedDuration::try_from(delay).unwrap_or_default();
                (None, Some(at))
            }
        }
        (Some(node), Some(ni)) if !ni.deleting && *ni.labels != node.labels => (
            Some(Change::Relabel {
                labels: node.labels.clone(),
            }),
            None,
        ),
        (None, Some(ni)) if !ni.fake() && !ni.deleting => (Some(Change::Delete), None),
        _ => (None, None),
    }
}
