//! The local demo: a registry and containerd on loopback, an image pushed to the registry, and
//! kruise-daemon started on that containerd. Until the API server and the controllers exist
//! (their issues), the demo pulls the image through the same CRI client the daemon uses and
//! shows it in the runtime.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kruise_cri::PullRequest;
use kruise_testlab::{free_port, http_status, Lab, Layer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lab = Lab::start()?;
    println!("registry     http://{}", lab.registry.host());
    println!("containerd   {}", lab.cri_endpoint());
    let image = lab.push(
        &lab.registry,
        "demo/app",
        "v1",
        &[Layer::random("app.bin", 8 << 20, 42)],
    )?;
    println!("pushed       {} ({} bytes)", image.reference, image.size);

    let daemon_bin = std::env::current_exe()?.with_file_name("kruise-daemon");
    let port = free_port()?;
    let mut daemon = Command::new(&daemon_bin)
        .args([
            "--node-name",
            "demo-node",
            "--runtime-endpoint",
            &lab.cri_endpoint(),
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "starting {} (run `cargo build --workspace --bins` first): {e}",
                daemon_bin.display()
            )
        })?;
    let start = Instant::now();
    while http_status(port, "/readyz") != Some(200) {
        anyhow::ensure!(daemon.try_wait()?.is_none(), "kruise-daemon exited");
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "kruise-daemon not ready after 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("kruise-daemon ready: http://127.0.0.1:{port}/readyz, metrics at /metrics");

    let cri = kruise_cri::detect(
        Some(&lab.cri_endpoint()),
        std::path::Path::new("/hostvarrun"),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .client;
    let t = Instant::now();
    let id = cri
        .pull_image(
            PullRequest {
                image: image.reference.clone(),
                ..Default::default()
            },
            Some(Duration::from_secs(120)),
        )
        .await?;
    println!(
        "pulled       {} as {id} in {:?}",
        image.reference,
        t.elapsed()
    );
    let status = cri
        .image_status(&image.reference)
        .await?
        .ok_or_else(|| anyhow::anyhow!("image missing after pull"))?;
    println!(
        "in runtime   tags {:?}, {} bytes",
        status.repo_tags, status.size
    );

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let status = daemon.wait()?;
    anyhow::ensure!(
        status.success(),
        "kruise-daemon exited with {status} on SIGTERM"
    );
    println!("kruise-daemon stopped cleanly; lab torn down");
    Ok(())
}
