//! The watches: one task per kind, each forwarding its events to the engine's thread as they
//! come, decoded as lean as the kind allows. Nodes and NodeImages are watched through the
//! installation's node selector, jobs, pods and source secrets in its namespace. A watch that
//! fails says which server and why, once, and kube's watcher retries with backoff.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kruise_api::constants::DAEMON_CONFIG_NAMESPACE;
use kruise_api::{ImageListPullJob, ImagePullJob, NodeImage};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};

use crate::engine::{Event, Input};
use crate::lean::{LeanNode, LeanPod};

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
}

fn convert<K>(e: watcher::Event<K>) -> Event<K> {
    match e {
        watcher::Event::Apply(o) => Event::Apply(o),
        watcher::Event::Delete(o) => Event::Delete(o),
        watcher::Event::Init => Event::Init,
        watcher::Event::InitApply(o) => Event::InitApply(o),
        watcher::Event::InitDone => Event::InitDone,
    }
}

fn spawn<K>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    wrap: fn(Event<K>) -> Input,
    tx: flume::Sender<Input>,
    server: String,
    supervisor: &kruise_observe::Supervisor,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let name = format!("the {what} watch");
    let sup = supervisor.clone();
    // Ending because the engine is gone is the engine's failure (or a stop), not the watch's.
    supervisor.spawn_finite(&name.clone(), async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut failures = kruise_observe::api::RetryLog::default();
        let activity = format!("watching {what}");
        while let Some(e) = events.next().await {
            match e {
                Ok(e) => {
                    failures.recovered(&activity);
                    // Waits while the engine's queue is full; the engine's own watchdog says
                    // when it has stopped taking inputs.
                    if tx.send_async(wrap(convert(e))).await.is_err() {
                        return; // the engine stopped
                    }
                }
                Err(e) => failures.failed(&activity, &server, &e, None),
            }
        }
        sup.fail(format!("{name} ended unexpectedly"));
    });
}

/// Source pull secrets as the engine holds them: which exist, their type and resourceVersion,
/// without their data. A cluster's pull secrets are watched as metadata only (no data crosses
/// the wire or stays in memory); the writer reads the few that jobs name when it copies them.
fn source_secrets(e: Event<PartialObjectMeta<Secret>>, type_: &str) -> Event<Secret> {
    let lean = |m: PartialObjectMeta<Secret>| {
        let mut metadata = m.metadata;
        metadata.managed_fields = None;
        Secret {
            metadata,
            type_: Some(type_.to_string()),
            ..Default::default()
        }
    };
    match e {
        Event::Apply(m) => Event::Apply(lean(m)),
        Event::Delete(m) => Event::Delete(lean(m)),
        Event::Init => Event::Init,
        Event::InitApply(m) => Event::InitApply(lean(m)),
        Event::InitDone => Event::InitDone,
    }
}

/// Starts every watch the engine needs.
pub fn start(
    client: &Client,
    scope: &Scope,
    tx: &flume::Sender<Input>,
    server: &str,
    supervisor: &kruise_observe::Supervisor,
) {
    let c = client;
    let s = || server.to_string();
    spawn::<LeanNode>(
        "Nodes",
        Api::all(c.clone()),
        scope.nodes(),
        Input::Node,
        tx.clone(),
        s(),
        supervisor,
    );
    spawn::<NodeImage>(
        "NodeImages",
        Api::all(c.clone()),
        scope.nodes(),
        Input::NodeImage,
        tx.clone(),
        s(),
        supervisor,
    );
    let cfg = watcher::Config::default;
    spawn::<ImagePullJob>(
        "ImagePullJobs",
        scope.jobs_api(c),
        cfg(),
        Input::Job,
        tx.clone(),
        s(),
        supervisor,
    );
    spawn::<ImageListPullJob>(
        "ImageListPullJobs",
        scope.jobs_api(c),
        cfg(),
        Input::ListJob,
        tx.clone(),
        s(),
        supervisor,
    );
    spawn::<LeanPod>(
        "Pods",
        scope.jobs_api(c),
        cfg(),
        Input::Pod,
        tx.clone(),
        s(),
        supervisor,
    );
    spawn::<PartialObjectMeta<Secret>>(
        "pull secrets (dockerconfigjson)",
        scope.jobs_api(c),
        cfg().fields("type=kubernetes.io/dockerconfigjson"),
        |e| Input::DockerConfigJson(source_secrets(e, "kubernetes.io/dockerconfigjson")),
        tx.clone(),
        s(),
        supervisor,
    );
    spawn::<PartialObjectMeta<Secret>>(
        "pull secrets (dockercfg)",
        scope.jobs_api(c),
        cfg().fields("type=kubernetes.io/dockercfg"),
        |e| Input::DockerCfg(source_secrets(e, "kubernetes.io/dockercfg")),
        tx.clone(),
        s(),
        supervisor,
    );
    spawn::<Secret>(
        "the pull-secret copies",
        Api::namespaced(c.clone(), DAEMON_CONFIG_NAMESPACE),
        cfg(),
        Input::Copy,
        tx.clone(),
        s(),
        supervisor,
    );
}
