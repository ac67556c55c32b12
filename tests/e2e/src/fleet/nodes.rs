//! The rest of a fleet: Nodes created and removed in bulk, kubelet heartbeats (the Ready
//! condition rewritten every `every`, spread evenly over the interval), pods churning on random
//! nodes, and a fleet's NodeImages written as a past fan-out left them (every tag pulled).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Creates Ready Nodes (`name`, labels), 32 at a time.
pub async fn create(client: &Client, nodes: &[(String, Value)]) {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(nodes.iter().cloned())
        .map(|(name, labels)| {
            let api = api.clone();
            async move {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": labels},
                    "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z",
                        "lastHeartbeatTime": k8s_openapi::jiff::Timestamp::now().to_string(), "reason": "KubeletReady"}]},
                }))
                .unwrap();
                api.create(&PostParams::default(), &node).await.expect("node created");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

pub async fn delete(client: &Client, names: &[String]) {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// Rewrites every node's Ready condition every `every`, spread evenly, until `stop`.
pub async fn heartbeats(
    client: Client,
    nodes: Arc<Mutex<Vec<String>>>,
    every: Duration,
    stop: CancellationToken,
) {
    let api: Api<Node> = Api::all(client);
    let tick = Duration::from_millis(100);
    let mut interval = tokio::time::interval(tick);
    let mut at = 0usize;
    let ticks_per_round = (every.as_millis() / tick.as_millis()).max(1) as usize;
    let mut tick_no = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let names = nodes.lock().unwrap().clone();
        if names.is_empty() {
            continue;
        }
        tick_no += 1;
        // The nodes whose turn it is in this tick.
        let due = (names.len() * tick_no).div_ceil(ticks_per_round)
            - (names.len() * (tick_no - 1)).div_ceil(ticks_per_round);
        let batch: Vec<String> = (0..due)
            .map(|i| names[(at + i) % names.len()].clone())
            .collect();
        at = (at + due) % names.len();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastTransitionTime": "2020-01-01T00:00:00Z", "lastHeartbeatTime": now}]}});
        for name in batch {
            let (api, patch) = (api.clone(), patch.clone());
            tokio::spawn(async move {
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            });
        }
    }
}

/// Creates pods on random nodes in `namespace` at `per_second`, deleting the oldest beyond
/// `keep`, until `stop`: pods no job selects.
pub async fn churn_pods(
    client: Client,
    namespace: String,
    nodes: Arc<Mutex<Vec<String>>>,
    per_second: u32,
    keep: usize,
    stop: CancellationToken,
) {
    if per_second == 0 {
        return;
    }
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let mut interval = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut made = std::collections::VecDeque::new();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let node = {
            let names = nodes.lock().unwrap();
            if names.is_empty() {
                continue;
            }
            names[rng.usize(0..names.len())].clone()
        };
        n += 1;
        let name = format!("churn-{n}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": format!("churn-{}", n % 10)}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.example.com/app:1"}]},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        let api2 = api.clone();
        tokio::spawn(async move {
            let _ = api2.create(&PostParams::default(), &pod).await;
        });
        made.push_back(name);
        if made.len() > keep {
            let old = made.pop_front().unwrap();
            let api2 = api.clone();
            tokio::spawn(async move {
                let _ = api2.delete(&old, &DeleteParams::default()).await;
            });
        }
    }
}

/// NodeImages for `nodes` as a finished fan-out of `jobs` leaves them: every job's tag on every
/// node it selects, pulled (status Succeeded at version 0). Written before the manager starts,
/// which adopts them: a steady state without waiting for a fan-out.
pub async fn settled_node_images(
    client: &Client,
    nodes: &[(String, Value)],
    jobs: &[ImagePullJob],
) {
    let api: Api<NodeImage> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    futures::stream::iter(nodes.iter().cloned())
        .map(|(name, labels)| {
            let (api, node_api, now) = (api.clone(), node_api.clone(), now.clone());
            let mut images: BTreeMap<String, Value> = BTreeMap::new();
            let mut statuses: BTreeMap<String, Value> = BTreeMap::new();
            for job in jobs {
                let selected = job.spec.template.selector.as_ref().and_then(|s| s.match_labels.as_ref()).is_none_or(|m| {
                    m.iter().all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v.as_str()))
                });
                if !selected {
                    continue;
                }
                let r = kruise_api::imageref::ImageRef::parse(&job.spec.image).unwrap();
                let (key, tag) = (r.node_image_key(), r.node_image_tag());
                images.insert(key.clone(), json!({"tags": [{"tag": tag, "createdAt": now, "ownerReferences": [{
                    "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "name": job.name_any(),
                    "namespace": job.namespace(), "uid": job.uid()}]}]}));
                statuses.insert(key, json!({"tags": [{"tag": tag, "phase": "Succeeded", "version": 0, "progress": 100, "completionTime": now}]}));
            }
            async move {
                let node = node_api.get(&name).await.expect("node exists");
                let ni: NodeImage = serde_json::from_value(json!({
                    "apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage",
                    "metadata": {"name": name, "labels": labels, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.uid()}]},
                    "spec": {"images": images},
                }))
                .unwrap();
                api.create(&PostParams::default(), &ni).await.expect("NodeImage created");
                let status = json!({"status": {"desired": statuses.len(), "succeeded": statuses.len(), "imageStatuses": statuses}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status written");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}
