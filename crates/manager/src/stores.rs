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

/// What one installation manages: the Nodes a label selector matches (and their NodeImages,
/// whose labels mirror the Nodes'), and the jobs of one namespace; empty means everything.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub node_selector: String,
    pub job_namespace: String,
}

impl Scope {
    /// An API for the jobs' namespace, or all namespaces.
    fn jobs_api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.job_namespace.is_empty() {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), &self.job_namespace)
        }
    }

    fn nodes(&self) -> watcher::Config {
        let cfg = watcher::Config::default();
        if self.node_selector.is_empty() {
            cfg
        } else {
            cfg.labels(&self.node_selector)
        }
    }

    /// Whether a pull-secret copy made for `source` (`namespace/name`) is this installation's.
    pub fn owns_source(&self, source: &str) -> bool {
        self.job_namespace.is_empty()
            || source.split('/').next() == Some(self.job_namespace.as_str())
    }
}

impl Stores {
    pub fn start(client: &Client, scope: &Scope, changed: Arc<Notify>) -> Self {
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
            nodes: watch(
                Api::all(client.clone()),
                scope.nodes(),
                changed.clone(),
                trim_node,
            ),
            node_images: watch(
                Api::all(client.clone()),
                scope.nodes(),
                changed.clone(),
                clear_managed_fields,
            ),
            jobs: watch(
                scope.jobs_api(client),
                cfg(),
                changed.clone(),
                clear_managed_fields,
            ),
            list_jobs: watch(
                scope.jobs_api(client),
                cfg(),
                changed.clone(),
                clear_managed_fields,
            ),
            pods: watch(scope.jobs_api(client), cfg(), changed.clone(), trim_pod),
            docker_config_json: watch(
                scope.jobs_api(client),
                cfg().fields("type=kubernetes.io/dockerconfigjson"),
                changed.clone(),
                clear_managed_fields,
            ),
            docker_cfg: watch(
                scope.jobs_api(client),
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
