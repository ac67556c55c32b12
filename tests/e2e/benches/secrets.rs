//! The manager's memory in a cluster full of other people's Secrets: `BENCH_SECRETS` Secrets
//! (10,000) of `BENCH_SECRET_KIB` KiB (100) each, of type `BENCH_SECRET_TYPE`
//! (`kubernetes.io/dockerconfigjson`: pull secrets, the type the manager reads; or e.g.
//! `helm.sh/release.v1`), spread over 100 namespaces, and one job naming one small pull secret.
//! Prints the manager's RSS once it is ready and once the job's copy is written, with the
//! conditions. Nothing is asserted.
//!
//!   cargo bench -p e2e --bench secrets           (`bash scripts/bench secrets`)

use std::time::{Duration, Instant};

use base64::Engine;
use e2e::fleet::apiserver::ApiServer;
use e2e::fleet::measure::setting;
use e2e::system::manifest;
use e2e::{wait_for, Process};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

const NAMESPACES: usize = 100;
const NS: &str = "bench";

fn secret(name: &str, type_: &str, kib: usize, seed: usize) -> Secret {
    let blob: String = (0..kib * 1024)
        .map(|i| char::from(b'a' + ((i * 7 + seed) % 26) as u8))
        .collect();
    let data = if type_ == "kubernetes.io/dockerconfigjson" {
        json!({".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(
            json!({"auths": {"registry.example.com": {"auth": "dTpw", "padding": blob}}}).to_string()
        )})
    } else {
        json!({"release": base64::engine::general_purpose::STANDARD.encode(blob)})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name}, "type": type_, "data": data,
    }))
    .expect("a Secret")
}

#[tokio::main]
async fn main() {
    let count = setting("BENCH_SECRETS", 10_000usize);
    let kib = setting("BENCH_SECRET_KIB", 100usize);
    let type_ = std::env::var("BENCH_SECRET_TYPE")
        .unwrap_or_else(|_| "kubernetes.io/dockerconfigjson".into());
    let server = ApiServer::start();
    let mut namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("foreign-{i:02}")).collect();
    namespaces.push(NS.into());
    let refs: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let cluster = server.cluster(&refs).await;
    cluster.shared_namespace("kruise-daemon-config").await;

    let loading = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api: Api<Secret> =
                Api::namespaced(cluster.client.clone(), &namespaces[i % NAMESPACES]);
            let s = secret(&format!("foreign-{i}"), &type_, kib, i);
            async move {
                api.create(&PostParams::default(), &s)
                    .await
                    .expect("created")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "{count} Secrets of {kib} KiB ({type_}) written in {:.1?}",
        loading.elapsed()
    );
    let pull: Api<Secret> = Api::namespaced(cluster.client.clone(), NS);
    pull.create(
        &PostParams::default(),
        &secret("mine", "kubernetes.io/dockerconfigjson", 1, 0),
    )
    .await
    .expect("the job's pull secret");

    let logs = tempfile::tempdir().unwrap();
    let mut manager = Process::manager_with(&server.kubeconfig(), logs.path(), "manager", &[]);
    let started = Instant::now();
    manager.wait_ready(Duration::from_secs(300)).await;
    let ready = started.elapsed();
    let rss_ready = manager.rss_kib().expect("the manager's RSS");
    let jobs: Api<kruise_api::ImagePullJob> = Api::namespaced(cluster.client.clone(), NS);
    let job = manifest(
        "v1beta1",
        "with-secret",
        "registry.example.com/app:1",
        json!({"pullSecrets": ["mine"]}),
    );
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(job).unwrap(),
    )
    .await
    .expect("the job");
    let copies: Api<Secret> = Api::namespaced(cluster.client.clone(), "kruise-daemon-config");
    wait_for(
        "the job's pull secret copied",
        Duration::from_secs(120),
        || async {
            let list = copies.list(&Default::default()).await.ok()?;
            (!list.items.is_empty()).then_some(())
        },
    )
    .await;
    let rss_copied = manager.rss_kib().expect("the manager's RSS");
    let peak = manager.peak_rss_kib().expect("the manager's peak RSS");
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "secrets: {count} foreign Secrets of {kib} KiB, type {type_}, in {NAMESPACES} namespaces; \
         kruise-test-apiserver process; {build} kruise-manager, all namespaces, no nodes"
    );
    println!("  ready after {ready:.1?}");
    println!(
        "  manager RSS: {} MiB when ready, {} MiB after copying the job's secret, {} MiB peak",
        rss_ready / 1024,
        rss_copied / 1024,
        peak / 1024
    );
    let _ = manager.terminate(Duration::from_secs(10)).await;
}
