//! Helpers for tests that play the manager's part: write NodeImage specs directly and watch
//! what the daemon reports.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kruise_api::imageref::ImageRef;
use kruise_api::{ImageTagSpec, ImageTagStatus, NodeImage, TagPhase};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use crate::wait_for;

/// `(NodeImage key, tag)` of a reference, as the manager would write it.
pub fn key_and_tag(reference: &str) -> (String, String) {
    let r = ImageRef::parse(reference).expect("a valid reference");
    (r.node_image_key(), r.node_image_tag())
}

pub struct NodeImages {
    pub api: Api<NodeImage>,
    /// Labels of the NodeImages [`NodeImages::create`] makes (a test's label).
    labels: std::collections::BTreeMap<String, String>,
}

impl NodeImages {
    /// NodeImages created without labels (the demo, benchmarks on their own server).
    pub fn new(client: kube::Client) -> Self {
        Self::labelled(client, json!({}))
    }

    /// NodeImages created with `labels` (see [`crate::Cluster::node_images`]).
    pub fn labelled(client: kube::Client, labels: Value) -> Self {
        Self {
            api: Api::all(client),
            labels: serde_json::from_value(labels).expect("labels are a string map"),
        }
    }

    pub async fn create(&self, node: &str) {
        let mut ni = NodeImage::new(node, Default::default());
        ni.metadata.labels = Some(self.labels.clone());
        self.api
            .create(&PostParams::default(), &ni)
            .await
            .expect("NodeImage created");
    }

    /// Sets `spec.images[key]` for `reference` to `entry` (tags etc.), or removes it with `Value::Null`.
    pub async fn set_image(&self, node: &str, reference: &str, entry: Value) {
        let (key, _) = key_and_tag(reference);
        let patch = json!({"spec": {"images": {key: entry}}});
        self.api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("NodeImage spec patched");
    }

    /// Sets the image of `reference` to just its tag at `version` (with `extra` fields).
    pub async fn want(&self, node: &str, reference: &str, version: i64, extra: Value) {
        self.set_image(
            node,
            reference,
            json!({"tags": [Self::tag(reference, version, extra)]}),
        )
        .await;
    }

    /// One tag entry for `reference` with `version` and extra fields merged in.
    pub fn tag(reference: &str, version: i64, extra: Value) -> Value {
        let (_, tag) = key_and_tag(reference);
        let mut t = json!({"tag": tag, "version": version, "createdAt": k8s_openapi::jiff::Timestamp::now().to_string()});
        if let (Some(t), Some(e)) = (t.as_object_mut(), extra.as_object()) {
            t.extend(e.clone());
        }
        t
    }

    /// The spec entry for `reference` on `node`, as the manager wrote it.
    pub async fn tag_spec(&self, node: &str, reference: &str) -> Option<ImageTagSpec> {
        let (key, tag) = key_and_tag(reference);
        let ni = self.api.get(node).await.ok()?;
        ni.spec
            .images
            .get(&key)?
            .tags
            .iter()
            .find(|t| t.tag == tag)
            .cloned()
    }

    pub async fn tag_status(&self, node: &str, reference: &str) -> Option<ImageTagStatus> {
        let (key, tag) = key_and_tag(reference);
        let ni = self.api.get(node).await.ok()?;
        ni.status?
            .image_statuses
            .get(&key)?
            .tags
            .iter()
            .find(|t| t.tag == tag)
            .cloned()
    }

    /// Waits for the tag to reach `phase` at `version`.
    pub async fn wait_phase(
        &self,
        node: &str,
        reference: &str,
        phase: TagPhase,
        version: i64,
        deadline: Duration,
    ) -> ImageTagStatus {
        wait_for(
            &format!("{reference} on {node} to be {phase:?} at version {version}"),
            deadline,
            || async {
                self.tag_status(node, reference)
                    .await
                    .filter(|s| s.phase == phase && s.version == version)
            },
        )
        .await
    }
}

/// Counts the writes of one NodeImage's status, as a watch the test keeps sees them (the same on
/// the test API server and on a real cluster, where request counters are not the test's own).
pub struct StatusWrites {
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusWrites {
    pub fn start(api: Api<NodeImage>, node: &str) -> Self {
        use futures::StreamExt;
        use kube::runtime::{watcher, WatchStreamExt};
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let task = tokio::spawn(async move {
            let mut events = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            let mut last = None;
            while let Some(e) = events.next().await {
                let Ok(ni) = e else { continue };
                if last.is_some() && last != Some(ni.status.clone()) {
                    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                last = Some(ni.status.clone());
            }
        });
        Self { count, task }
    }

    /// Status changes seen since the watch started.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StatusWrites {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Events (events.k8s.io) in `namespace` with `reason` about an object named `name`.
pub async fn events(
    client: &kube::Client,
    namespace: &str,
    reason: &str,
    name: &str,
) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}
