//! Watches and caches of what the planner reads, trimmed to what it reads (no managedFields, no
//! node images or annotations, pods reduced to labels, node and phase), and a signal that fires
//! on every change.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kruise_api::constants::DAEMON_CONFIG_NAMESPACE;
use kruise_api::{ImageListPullJob, ImagePullJob, NodeImage};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Stores {
    pub nodes: Store<Node>,
    pub node_images: Store<NodeImage>,
    pub jobs: Store<ImagePullJob>,
    pub list_jobs: Store<ImageListPullJob>,
    pub pods: Store<Pod>,
    /// Secrets of the two registry-credential types, cluster-wide (the sources jobs name).
    pub docker_config_json: Store<Secret>,
    pub docker_cfg: Store<Secret>,
    /// Secrets in the daemon's namespace (the synced copies).
    pub synced: Store<Secret>,
}

fn clear_managed_fields<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(trim)
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(e) => {
                    tracing::warn!(kind = %std::any::type_name::<K>(), error = %e, "watch failed; retrying")
                }
            }
        }
    });
    reader
}

impl Stores {
    pub fn start(client: &Client, changed: Arc<Notify>) -> Self {
        let cfg = watcher::Config::default;
        let trim_node: fn(&mut Node) = |n| {
            clear_managed_fields(n);
            n.metadata.annotations = None;
            if let Some(s) = n.status.as_mut() {
                s.images = None;
                s.volumes_attached = None;
                s.volumes_in_use = None;
            }
        };
        let trim_pod: fn(&mut Pod) = |p| {
            clear_managed_fields(p);
            p.metadata.annotations = None;
            let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone());
            p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
                node_name,
                ..Default::default()
            });
            let phase = p.status.as_ref().and_then(|s| s.phase.clone());
            p.status = Some(k8s_openapi::api::core::v1::PodStatus {
                phase,
                ..Default::default()
            });
        };
        Self {
            nodes: watch(Api::all(client.clone()), cfg(), changed.clone(), trim_node),
            node_images: watch(
                Api::all(client.clone()),
                cfg(),
                changed.clone(),
                clear_managed_fields,
            ),
            jobs: watch(
                Api::all(client.clone()),
                cfg(),
                changed.clone(),
                clear_managed_fields,
            ),
            list_jobs: watch(
                Api::all(client.clone()),
                cfg(),
                changed.clone(),
                clear_managed_fields,
            ),
            pods: watch(Api::all(client.clone()), cfg(), changed.clone(), trim_pod),
            docker_config_json: watch(
                Api::all(client.clone()),
                cfg().fields("type=kubernetes.io/dockerconfigjson"),
                changed.clone(),
                clear_managed_fields,
            ),
            docker_cfg: watch(
                Api::all(client.clone()),
                cfg().fields("type=kubernetes.io/dockercfg"),
                changed.clone(),
                clear_managed_fields,
            ),
            synced: watch(
                Api::namespaced(client.clone(), DAEMON_CONFIG_NAMESPACE),
                cfg(),
                changed,
                clear_managed_fields,
            ),
        }
    }

    /// Waits until every cache holds a complete list.
    pub async fn wait_until_ready(&self) -> anyhow::Result<()> {
        self.nodes.wait_until_ready().await?;
        self.node_images.wait_until_ready().await?;
        self.jobs.wait_until_ready().await?;
        self.list_jobs.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.docker_config_json.wait_until_ready().await?;
        self.docker_cfg.wait_until_ready().await?;
        self.synced.wait_until_ready().await?;
        Ok(())
    }
}
