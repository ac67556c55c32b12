//! `kruise-e2e-cleanup --kubeconfig K --selector e2e.kruise.io/test=ID [--lease NS/NAME]...`:
//! deletes what one end-to-end test made on a shared cluster, started (and not waited for) when
//! the test's cluster handle drops. Deletes the Nodes, NodeImages and namespaces the selector
//! matches (a namespace takes its jobs, secrets and events along), the secrets in
//! `kruise-daemon-config` it matches or copied from those namespaces, and the named Leases;
//! retries for a minute, then gives up saying what is left.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kruise_api::NodeImage;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};

const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut kubeconfig = None;
    let mut selector = None;
    let mut leases = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--kubeconfig" => kubeconfig = Some(value),
            "--selector" => selector = Some(value),
            "--lease" => leases.push(value),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let kubeconfig = kubeconfig.ok_or_else(|| anyhow::anyhow!("--kubeconfig is required"))?;
    let selector = selector.ok_or_else(|| anyhow::anyhow!("--selector is required"))?;
    anyhow::ensure!(
        selector.starts_with("e2e.kruise.io/test="),
        "refusing to delete anything not selected by a test's label: {selector}"
    );
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = Client::try_from(config)?;
    let started = Instant::now();
    loop {
        match sweep(&client, &selector, &leases).await {
            Ok(left) if left.is_empty() => {
                println!("deleted everything selected by {selector}");
                return Ok(());
            }
            Ok(left) if started.elapsed() > GIVE_UP_AFTER => {
                anyhow::bail!("gave up after {GIVE_UP_AFTER:?}; still there: {left:?}")
            }
            Ok(left) => println!("still there: {left:?}"),
            Err(e) if started.elapsed() > GIVE_UP_AFTER => return Err(e),
            Err(e) => println!("cleanup failed, retrying: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One pass of deletions; returns what still exists.
async fn sweep(client: &Client, selector: &str, leases: &[String]) -> anyhow::Result<Vec<String>> {
    let by_label = ListParams::default().labels(selector);
    let mut left = Vec::new();
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes.list_metadata(&by_label).await?.items {
        left.push(format!("node {}", n.name_any()));
        delete(&nodes, &n.name_any()).await?;
    }
    let images: Api<NodeImage> = Api::all(client.clone());
    for ni in images.list_metadata(&by_label).await?.items {
        left.push(format!("nodeimage {}", ni.name_any()));
        delete(&images, &ni.name_any()).await?;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ours: BTreeSet<String> = namespaces
        .list_metadata(&by_label)
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    let copies: Api<Secret> = Api::namespaced(client.clone(), "kruise-daemon-config");
    if let Ok(list) = copies.list_metadata(&ListParams::default()).await {
        for s in list.items {
            let source_ns = s
                .annotations()
                .get("imagepulljobs.kruise.io/source-key")
                .and_then(|k| k.split('/').next().map(str::to_string));
            let labelled = selector
                .split_once('=')
                .is_some_and(|(k, v)| s.labels().get(k).map(String::as_str) == Some(v));
            if labelled || source_ns.is_some_and(|ns| ours.contains(&ns)) {
                left.push(format!("secret kruise-daemon-config/{}", s.name_any()));
                delete(&copies, &s.name_any()).await?;
            }
        }
    }
    for ns in &ours {
        left.push(format!("namespace {ns}"));
        delete(&namespaces, ns).await?;
    }
    for lease in leases {
        let (ns, name) = lease.split_once('/').unwrap_or(("default", lease));
        let api: Api<Lease> = Api::namespaced(client.clone(), ns);
        if api.get_opt(name).await?.is_some() {
            left.push(format!("lease {lease}"));
            delete(&api, name).await?;
        }
    }
    Ok(left)
}

async fn delete<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
