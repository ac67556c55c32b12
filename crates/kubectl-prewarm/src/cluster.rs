//! Reading the cluster: the client from the kubeconfig as kubectl would pick it, and the
//! snapshot each command needs. Only reads of ImagePullJobs, NodeImages and Nodes.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{ImagePullJob, NodeImage, TagPhase};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::args::Args;
use crate::model::{Settings, Snapshot};

/// A client for the context the flags (or kubectl's defaults) name, and its default namespace.
pub async fn client(args: &Args) -> anyhow::Result<(Client, String)> {
    let opts = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&opts).await?,
        None => Config::infer().await.context(
            "no cluster to talk to: set KUBECONFIG or --kubeconfig, or run inside a cluster",
        )?,
    };
    let ns = config.default_namespace.clone();
    Ok((Client::try_from(config)?, ns))
}

/// An empty snapshot at `now` with the manager's settings from the flags.
pub fn empty(args: &Args) -> Snapshot {
    Snapshot {
        now: Timestamp::now(),
        settings: Settings {
            creation_delay: args.nodeimage_creation_delay,
            response_timeout: args.node_response_timeout,
            resolve_digests: args.resolve_digests,
        },
        ..Default::default()
    }
}

/// The job `ns/name`, with a message saying how to find it when it is not there.
pub async fn job(client: &Client, ns: &str, name: &str) -> anyhow::Result<ImagePullJob> {
    Api::<ImagePullJob>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading ImagePullJob {ns}/{name}"))?
        .ok_or_else(|| {
            anyhow!("ImagePullJob {ns}/{name} not found: pass its namespace with -n, or list them with `kubectl get imagepulljobs -A`")
        })
}

/// The jobs of `ns`, or of every namespace (`None`).
pub async fn jobs(client: &Client, ns: Option<&str>) -> anyhow::Result<Vec<ImagePullJob>> {
    let api = match ns {
        Some(ns) => Api::<ImagePullJob>::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut list = api
        .list(&ListParams::default())
        .await
        .context("listing ImagePullJobs (are the CRDs installed? `kubectl get crd imagepulljobs.apps.kruise.io`)")?
        .items;
    list.sort_by_key(|j| (j.metadata.namespace.clone(), j.metadata.name.clone()));
    Ok(list)
}

/// Every NodeImage, from the API server's cache.
pub async fn node_images(client: &Client) -> anyhow::Result<BTreeMap<String, NodeImage>> {
    let list = Api::<NodeImage>::all(client.clone())
        .list(&ListParams::default().match_any())
        .await
        .context("listing NodeImages")?;
    Ok(list
        .items
        .into_iter()
        .map(|ni| (ni.metadata.name.clone().unwrap_or_default(), ni))
        .collect())
}

/// The Nodes named, those that exist.
pub async fn nodes<'a>(
    client: &Client,
    names: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<BTreeMap<String, Node>> {
    let api = Api::<Node>::all(client.clone());
    let mut out = BTreeMap::new();
    for name in names {
        if let Some(n) = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading Node {name}"))?
        {
            out.insert(name.clone(), n);
        }
    }
    Ok(out)
}

/// Up to three nodes where each job succeeded: the kubelet lists the image's size there.
pub fn size_sources(snap: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for job in &snap.jobs {
        let Ok(r) = kruise_api::imageref::ImageRef::parse(&job.spec.image) else {
            continue;
        };
        let (key, tag) = (r.node_image_key(), r.node_image_tag());
        let done = snap.node_images.iter().filter(|(_, ni)| {
            ni.status
                .as_ref()
                .and_then(|s| s.image_statuses.get(&key))
                .is_some_and(|s| {
                    s.tags
                        .iter()
                        .any(|t| t.tag == tag && t.phase == TagPhase::Succeeded)
                })
        });
        out.extend(done.take(3).map(|(n, _)| n.clone()));
    }
    out.sort();
    out.dedup();
    out
}

/// Every other job (the queue's order counts the jobs that want each node); where listing all
/// namespaces is forbidden, those of `ns`.
pub async fn other_jobs(client: &Client, ns: &str) -> anyhow::Result<Vec<ImagePullJob>> {
    match jobs(client, None).await {
        Ok(all) => Ok(all),
        Err(_) => jobs(client, Some(ns)).await,
    }
}
