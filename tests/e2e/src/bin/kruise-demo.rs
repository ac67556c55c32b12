//! The whole system on one machine: a registry and containerd on loopback, the project's test API
//! server with the CRDs, kruise-manager, one kruise-daemon for a Node named `demo-node`, and the
//! article's sidecar job (examples/sidecar-image-job.yaml) pointed at an image in the local
//! registry. Shows the job's progress until the image is on the node, then keeps running so you
//! can look around with kubectl (Ctrl-C stops everything). `--exit-when-done` stops at once.

use std::time::{Duration, Instant};

use e2e::node::NodeImages;
use e2e::{wait_for, Cluster, DaemonOptions, Process};
use kruise_api::ImagePullJob;
use kruise_testlab::{Lab, Layer};
use kube::api::PostParams;
use kube::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit_when_done = std::env::args().any(|a| a == "--exit-when-done");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cluster = Cluster::start().await;
    let lab = Lab::start()?;
    let logs = tempfile::Builder::new()
        .prefix("kruise-demo-logs-")
        .tempdir()?;
    println!(
        "API server   {} (kubeconfig {})",
        cluster.test_server().map(|s| s.url()).unwrap_or_default(),
        cluster.kubeconfig().display()
    );
    println!("registry     http://{}", lab.registry.host());
    println!("containerd   {}", lab.cri_endpoint());
    let image = lab.push(
        &lab.registry,
        "xxx/sidecar-image",
        "latest",
        &[Layer::random("sidecar.bin", 16 << 20, 42)],
    )?;
    println!("pushed       {} ({} bytes)", image.reference, image.size);

    cluster.shared_namespace("kruise-daemon-config").await;
    cluster.create_namespace(NAMESPACE).await;
    // Scoped to the demo's node and namespace: on a shared cluster it leaves the rest alone.
    let selector = cluster.selector();
    let lease = cluster.name("kruise-manager");
    let mut manager = Process::manager_with(
        cluster.kubeconfig(),
        logs.path(),
        "kruise-manager",
        &[
            "--node-selector",
            &selector,
            "--job-namespace",
            NAMESPACE,
            "--leader-election-id",
            &lease,
        ],
    );
    manager.wait_ready(Duration::from_secs(60)).await;
    println!("kruise-manager ready (log {})", manager.log.display());
    cluster
        .apply_node(
            "demo-node",
            serde_json::json!({"kubernetes.io/hostname": "demo-node"}),
        )
        .await;
    let images = NodeImages::new(cluster.client.clone());
    wait_for(
        "the NodeImage of demo-node",
        Duration::from_secs(60),
        || async {
            images
                .api
                .get_opt("demo-node")
                .await
                .ok()
                .flatten()
                .map(|_| ())
        },
    )
    .await;
    let opts = DaemonOptions::local("demo-node", lab.cri_endpoint());
    let mut daemon = Process::daemon(cluster.kubeconfig(), &opts, logs.path());
    daemon.wait_ready(Duration::from_secs(60)).await;
    println!(
        "kruise-daemon ready for demo-node (log {})",
        daemon.log.display()
    );

    let yaml = std::fs::read_to_string(root.join("examples/sidecar-image-job.yaml"))?;
    let yaml = yaml.replace("xxx/sidecar-image:latest", &image.reference);
    let job: ImagePullJob = serde_yaml_from(&yaml)?;
    let jobs: Api<ImagePullJob> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    replace(&jobs, &job).await?;
    println!(
        "applied      examples/sidecar-image-job.yaml with image {}",
        image.reference
    );

    let start = Instant::now();
    let mut last = String::new();
    loop {
        let st = jobs
            .get("sidecar-image-job")
            .await?
            .status
            .unwrap_or_default();
        let line = format!(
            "TOTAL {} ACTIVE {} SUCCEED {} FAILED {}  {}",
            st.desired,
            st.active,
            st.succeeded,
            st.failed,
            st.message.clone().unwrap_or_default()
        );
        if line != last {
            println!(
                "[{:>5.1}s] sidecar-image-job: {line}",
                start.elapsed().as_secs_f64()
            );
            last = line;
        }
        if st.completion_time.is_some() {
            anyhow::ensure!(
                st.succeeded == st.desired && st.desired == 1,
                "the job did not succeed: {st:?}"
            );
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "the job did not finish within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cri = kruise_cri::detect(Some(&lab.cri_endpoint()), std::path::Path::new("/none"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .client;
    let present = cri
        .image_status(&image.reference)
        .await?
        .ok_or_else(|| anyhow::anyhow!("image missing from containerd"))?;
    println!(
        "on the node  {} is in containerd as {}",
        image.reference, present.id
    );
    prewarm_status(&cluster).await?;
    println!();
    println!("Look around:");
    println!("  export KUBECONFIG={}", cluster.kubeconfig().display());
    println!("  kubectl -n {NAMESPACE} get imagepulljobs   # or: kubectl -n {NAMESPACE} get ipj");
    println!("  kubectl -n {NAMESPACE} describe ipj sidecar-image-job   # with its events");
    println!("  kubectl get ni demo-node -o yaml              # what the node holds and reports");
    println!(
        "  export PATH={}:$PATH   # kubectl-prewarm, the kubectl plugin",
        e2e::Binary::Plugin
            .path()
            .parent()
            .unwrap_or(&root)
            .display()
    );
    println!("  kubectl prewarm status -n {NAMESPACE} --watch   # progress, ETA; also: nodes, why, node, top");
    println!("  kubectl -n {NAMESPACE} apply -f examples/     # the article's jobs (their xxx/ images do not exist here, so they fail)");
    if exit_when_done {
        return Ok(());
    }
    println!("Press Ctrl-C to stop everything.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// What `kubectl prewarm status` says about the demo's job, with the plugin just built.
async fn prewarm_status(cluster: &Cluster) -> anyhow::Result<()> {
    let args = ["status", "-n", NAMESPACE, "sidecar-image-job"];
    let out = tokio::process::Command::new(e2e::Binary::Plugin.path())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(args)
        .output()
        .await?;
    println!();
    println!("$ kubectl prewarm {}", args.join(" "));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(
        out.status.success(),
        "kubectl prewarm status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The demo's namespace; its manager handles only the jobs here.
const NAMESPACE: &str = "kruise-demo";

/// Creates `job`, replacing one of the same name left by an earlier run (as `kubectl replace
/// --force` does), so the demo can run again and shows a fresh job.
async fn replace(jobs: &Api<ImagePullJob>, job: &ImagePullJob) -> anyhow::Result<()> {
    let name = job.metadata.name.clone().unwrap_or_default();
    if let Some(old) = jobs.get_opt(&name).await? {
        println!("replacing    {name} left by an earlier run");
        let _ = jobs.delete(&name, &e2e_delete_exactly(&old)).await;
        wait_for("the earlier job to go", Duration::from_secs(60), || async {
            jobs.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    jobs.create(&PostParams::default(), job).await?;
    Ok(())
}

fn e2e_delete_exactly(old: &ImagePullJob) -> kube::api::DeleteParams {
    kube::api::DeleteParams {
        preconditions: old
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..Default::default()
    }
}

fn serde_yaml_from(yaml: &str) -> anyhow::Result<ImagePullJob> {
    Ok(serde_yaml::from_str(yaml)?)
}
