//! The pre-download controller's watches: apps/v1 workloads, ControllerRevisions, ReplicaSets,
//! pods and ImagePullJobs always; OpenKruise's CloneSet, Advanced StatefulSet and Advanced
//! DaemonSet while their CRDs are served (found by probing every
//! `--predownload-discovery-interval`). Each object is decoded into what the controller keeps
//! in its own task, and sent as a [`Change`] on a bounded channel (a full channel holds the
//! watch back). Every watch and the discovery run supervised until `stop`: one that ends
//! otherwise fails the process.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use kruise_api::ImagePullJob;
use kruise_observe::Supervisor;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::controller::Config;
use super::store::{lean_workload, Event, RolloutPod, WatchedRevision};
use super::Kind;

/// One watch event, decoded.
// Pod and job events are larger than the others; each is moved once through the channel, so
// boxing would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Change {
    /// The workload's JSON, lean ([`lean_workload`]), with its apiVersion and kind set.
    Workload(Kind, Event<Value>),
    Revision(Event<WatchedRevision>),
    ReplicaSet(Event<WatchedRevision>),
    Pod(Event<RolloutPod>),
    Job(Event<ImagePullJob>),
    KindGone(Kind),
}

/// OpenKruise's kinds, with the versions to try, preferred first.
const KRUISE_KINDS: &[(Kind, &str, &[&str])] = &[
    (Kind::CloneSet, "clonesets", &["v1beta1", "v1alpha1"]),
    (
        Kind::AdvancedStatefulSet,
        "statefulsets",
        &["v1beta1", "v1alpha1"],
    ),
    (
        Kind::AdvancedDaemonSet,
        "daemonsets",
        &["v1beta1", "v1alpha1"],
    ),
];

/// What the watches share: where to send, what stops them, who supervises them.
#[derive(Clone)]
pub(super) struct Watches {
    pub client: Client,
    pub namespace: String,
    pub tx: Sender<Change>,
    pub stop: CancellationToken,
    pub supervisor: Supervisor,
}

impl Watches {
    /// Starts every watch and the discovery of OpenKruise's kinds.
    pub fn start(&self, cfg: &Config) {
        for (kind, ar) in [
            (Kind::Deployment, ApiResource::erase::<Deployment>(&())),
            (Kind::StatefulSet, ApiResource::erase::<StatefulSet>(&())),
            (Kind::DaemonSet, ApiResource::erase::<DaemonSet>(&())),
        ] {
            self.workload(kind, ar);
        }
        self.dynamic(ApiResource::erase::<ControllerRevision>(&()), |e| {
            Change::Revision(e.map(|v| WatchedRevision::controller_revision(&v)))
        });
        self.dynamic(ApiResource::erase::<ReplicaSet>(&()), |e| {
            Change::ReplicaSet(e.map(|v| WatchedRevision::replica_set(&v)))
        });
        self.typed::<RolloutPod>("pods", Change::Pod);
        self.typed::<ImagePullJob>("imagepulljobs", Change::Job);
        let me = self.clone();
        self.supervisor.spawn(
            "the pre-download discovery of OpenKruise's workload CRDs",
            me.discover(cfg.discovery_interval),
        );
    }

    fn workload(&self, kind: Kind, ar: ApiResource) -> tokio::task::JoinHandle<()> {
        self.dynamic(ar, move |e| Change::Workload(kind, e.map(lean_workload)))
    }

    /// Watches a kind as JSON, with its apiVersion and kind set (list items may lack them).
    fn dynamic(
        &self,
        ar: ApiResource,
        wrap: impl Fn(Event<Value>) -> Change + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let api: Api<DynamicObject> = if self.namespace.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
        };
        let name = format!("the pre-download watch of {}", ar.plural);
        let me = self.clone();
        self.supervisor.spawn(&name, async move {
            let to_value = |o: DynamicObject| {
                let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
                if let Some(m) = v.as_object_mut() {
                    m.insert("apiVersion".into(), ar.api_version.clone().into());
                    m.insert("kind".into(), ar.kind.clone().into());
                }
                v
            };
            let events = watcher(api, watcher::Config::default());
            me.forward(events, &ar.plural, |e| wrap(event_of(e, to_value)))
                .await;
        })
    }

    fn typed<K>(&self, what: &'static str, wrap: fn(Event<K>) -> Change)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + 'static,
        K::DynamicType: Default,
    {
        let api: Api<K> = if self.namespace.is_empty() {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), &self.namespace)
        };
        let me = self.clone();
        let name = format!("the pre-download watch of {what}");
        self.supervisor.spawn(&name, async move {
            let events = watcher(api, watcher::Config::default());
            me.forward(events, what, |e| wrap(event_of(e, |o| o))).await;
        });
    }

    /// Sends each event on; returns on `stop`, or if the controller is gone.
    async fn forward<K, S>(&self, stream: S, what: &str, wrap: impl Fn(watcher::Event<K>) -> Change)
    where
        S: futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    {
        let mut events = std::pin::pin!(stream.default_backoff());
        let mut failures = kruise_observe::api::RetryLog::default();
        let activity = format!("watching {what} for rollout pre-download");
        loop {
            let e = tokio::select! {
                _ = self.stop.cancelled() => return,
                e = events.next() => match e { Some(e) => e, None => return },
            };
            match e {
                Ok(e) => {
                    failures.recovered(&activity);
                    let change = wrap(e);
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        sent = self.tx.send(change) => if sent.is_err() { return },
                    }
                }
                Err(e) => failures.failed(&activity, "", &e, None),
            }
        }
    }

    /// Starts and stops the watches of OpenKruise's workload kinds as their CRDs come and go.
    async fn discover(self, interval: std::time::Duration) {
        let mut running: BTreeMap<&'static str, (String, tokio::task::JoinHandle<()>)> =
            BTreeMap::new();
        loop {
            for (kind, plural, versions) in KRUISE_KINDS {
                let served = served_version(&self.client, plural, versions).await;
                let current = running.get(plural).map(|(v, _)| v.as_str());
                match (served, current) {
                    (Ok(Some(v)), Some(c)) if v == c => {}
                    (Ok(Some(v)), _) => {
                        if let Some((_, h)) = running.remove(plural) {
                            h.abort();
                        }
                        tracing::info!(kind = kind.label(), version = %v, "an OpenKruise workload CRD is served; pre-downloading for its rollouts");
                        let h = self.workload(*kind, kruise_resource(*kind, plural, &v));
                        running.insert(plural, (v, h));
                    }
                    (Ok(None), Some(_)) => {
                        if let Some((_, h)) = running.remove(plural) {
                            h.abort();
                        }
                        tracing::info!(
                            kind = kind.label(),
                            "an OpenKruise workload CRD is gone; no longer watching it"
                        );
                        tokio::select! {
                            _ = self.stop.cancelled() => return,
                            _ = self.tx.send(Change::KindGone(*kind)) => {}
                        }
                    }
                    (Ok(None), None) | (Err(_), _) => {}
                }
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

fn kruise_resource(kind: Kind, plural: &str, version: &str) -> ApiResource {
    ApiResource {
        group: "apps.kruise.io".into(),
        version: version.into(),
        api_version: format!("apps.kruise.io/{version}"),
        kind: kind.api_kind().into(),
        plural: plural.into(),
    }
}

fn event_of<K, T>(e: watcher::Event<K>, f: impl Fn(K) -> T) -> Event<T> {
    match e {
        watcher::Event::Init => Event::Init,
        watcher::Event::InitApply(o) | watcher::Event::Apply(o) => Event::Apply(f(o)),
        watcher::Event::Delete(o) => Event::Delete(f(o)),
        watcher::Event::InitDone => Event::InitDone,
    }
}

/// The first of `versions` the API server serves `plural` at (a one-item list), `None` when it
/// serves none (404), an error when it cannot tell (it is asked again next time).
async fn served_version(
    client: &Client,
    plural: &str,
    versions: &[&str],
) -> Result<Option<String>, ()> {
    for v in versions {
        let ar = ApiResource {
            group: "apps.kruise.io".into(),
            version: (*v).into(),
            api_version: format!("apps.kruise.io/{v}"),
            kind: String::new(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let one = kube::api::ListParams::default().limit(1);
        match crate::writer::timed(api.list(&one)).await {
            Ok(_) => return Ok(Some((*v).into())),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::debug!(plural, version = v, error = %e, "probing for an OpenKruise workload CRD");
                return Err(());
            }
        }
    }
    Ok(None)
}
