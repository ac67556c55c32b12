//! The lab for pinning pre-warmed images against the kubelet's image GC (issue #17), on a real
//! containerd 1.7: Debian 12's 1.6.20 never reports CRI `pinned: true`, so these tests run
//! Debian trixie's 1.7.24, which `bash .ci/install-deps` unpacks into /opt/kruise-lab (or the
//! containerd `$KRUISE_LAB_CONTAINERD_PINNING` names). Without it they fail, saying so. They also
//! need root and the lab's Debian packages, like tests/containerd.rs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kruise_cri::{detect, CriClient, PullRequest};
use kruise_testlab::{ContainerdBinary, ContainerdOptions, Lab, Layer};

const PINNED_LABEL: &str = "io.cri-containerd.pinned";

fn pinning_lab(image_fs_bytes: Option<u64>) -> Lab {
    Lab::start_with(ContainerdOptions {
        binary: ContainerdBinary::Pinning,
        image_fs_bytes,
    })
    .expect("lab with the pinning containerd")
}

async fn client(lab: &Lab) -> CriClient {
    let found = detect(Some(&lab.cri_endpoint()), Path::new("/nonexistent"))
        .await
        .expect("containerd answers");
    assert!(
        found.version.runtime_version.starts_with("1.7."),
        "the pinning lab runs containerd 1.7, not {} ({})",
        found.version.runtime_version,
        lab.containerd.binary().display()
    );
    found.client
}

async fn pull(cri: &CriClient, image: &str) -> String {
    cri.pull_image(
        PullRequest {
            image: image.to_string(),
            ..Default::default()
        },
        Some(Duration::from_secs(60)),
    )
    .await
    .unwrap_or_else(|e| panic!("pulling {image}: {e}"))
}

/// `ctr -n k8s.io images label REF LABEL` (`key=value` sets it, `key=` removes it).
fn ctr_label(lab: &Lab, reference: &str, label: &str) {
    let out = lab
        .containerd
        .ctr()
        .args(["-n", "k8s.io", "images", "label", reference, label])
        .output()
        .expect("running ctr");
    assert!(
        out.status.success(),
        "ctr images label {reference} {label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls ImageStatus until it reports `pinned == want`: containerd's CRI image store follows
/// label changes through events, a moment after `ctr` returns.
async fn wait_pinned(cri: &CriClient, reference: &str, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let image = cri
            .image_status(reference)
            .await
            .unwrap()
            .expect("the image is there");
        if image.pinned == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ImageStatus still reports pinned={} for {reference} 20 s after the label changed",
            image.pinned
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_pinned_label_shows_in_cri_image_status_and_goes_away_with_it() {
    let lab = pinning_lab(None);
    eprintln!(
        "pinning lab runs {}",
        lab.containerd.version().expect("containerd --version")
    );
    let img = lab
        .push(
            &lab.registry,
            "lab/pin-me",
            "v1",
            &[Layer::file("etc/pin", "pin me")],
        )
        .unwrap();
    let cri = client(&lab).await;
    assert_eq!(pull(&cri, &img.reference).await, img.config_digest);
    wait_pinned(&cri, &img.reference, false).await;

    ctr_label(&lab, &img.reference, &format!("{PINNED_LABEL}=pinned"));
    wait_pinned(&cri, &img.reference, true).await;
    let listed = cri.list_images().await.unwrap();
    assert!(
        listed.iter().any(|i| i.id == img.config_digest && i.pinned),
        "ListImages reports the pin too"
    );

    ctr_label(&lab, &img.reference, &format!("{PINNED_LABEL}="));
    wait_pinned(&cri, &img.reference, false).await;
}

/// The size in bytes of the filesystem holding `path` (block size × blocks, as statfs(2) reports).
fn statvfs_capacity(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["--file-system", "--format", "%S %b"])
        .arg(path)
        .output()
        .expect("running stat");
    assert!(out.status.success(), "stat -f {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap());
    fields.next().unwrap() * fields.next().unwrap()
}

#[tokio::test]
async fn a_small_image_filesystem_has_its_size_and_still_takes_a_pull() {
    const SIZE: u64 = 64 << 20;
    let lab = pinning_lab(Some(SIZE));
    let image_fs = lab
        .containerd
        .image_fs()
        .expect("an image filesystem was asked for")
        .to_path_buf();
    assert_eq!(image_fs, lab.containerd.root());
    let capacity = statvfs_capacity(&image_fs);
    assert!(
        capacity.abs_diff(SIZE) <= SIZE / 50,
        "statvfs capacity {capacity} at {} is not about {SIZE}",
        image_fs.display()
    );

    let img = lab
        .push(
            &lab.registry,
            "lab/small-fs",
            "v1",
            &[Layer::random("data.bin", 4 << 20, 17)],
        )
        .unwrap();
    let cri = client(&lab).await;
    assert_eq!(pull(&cri, &img.reference).await, img.config_digest);
    let fs = cri.image_fs_info().await.unwrap();
    let mountpoint = fs
        .iter()
        .filter_map(|f| f.fs_id.as_ref())
        .map(|id| id.mountpoint.clone())
        .next()
        .expect("ImageFsInfo names a mountpoint");
    assert!(
        Path::new(&mountpoint).starts_with(&image_fs),
        "CRI's image filesystem {mountpoint} is on the small filesystem {}",
        image_fs.display()
    );
    assert_eq!(
        statvfs_capacity(Path::new(&mountpoint)),
        capacity,
        "the snapshots live on the small filesystem"
    );

    // The content store holds the pulled layer on the small filesystem.
    let used = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(&image_fs)
        .output()
        .expect("du");
    let used: u64 = String::from_utf8_lossy(&used.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        used >= 4 << 20,
        "{used} bytes used on the image filesystem after a 4 MiB pull"
    );
}

#[tokio::test]
async fn the_images_service_pins_names_and_unpins() {
    let lab = pinning_lab(None);
    let img = lab
        .push(
            &lab.registry,
            "lab/store",
            "v1",
            &[Layer::random("s.bin", 1 << 20, 9)],
        )
        .unwrap();
    let cri = client(&lab).await;
    pull(&cri, &img.digest_reference).await;
    let store = kruise_cri::ImageStore::new(cri.channel());
    assert!(store.available().await);
    // The digest pull, named after its tag.
    assert_eq!(
        store
            .name_like(&img.reference, &img.digest_reference, true)
            .await
            .unwrap(),
        Some(true)
    );
    // CRI learns the new name from containerd's event: a moment later.
    let start = Instant::now();
    let named = loop {
        if let Some(i) = cri.image_status(&img.reference).await.unwrap() {
            break i;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never named");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(named.id, img.config_digest);
    let set = store
        .set_labels(
            &img.reference,
            &[
                (PINNED_LABEL, Some("pinned")),
                ("example.com/mark", Some("x")),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", lab.containerd.log_tail()));
    assert!(set);
    let start = Instant::now();
    while !cri
        .image_status(&img.reference)
        .await
        .unwrap()
        .unwrap()
        .pinned
    {
        assert!(start.elapsed() < Duration::from_secs(20), "never pinned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let marked = store.with_label("example.com/mark", "x").await.unwrap();
    assert_eq!(marked.len(), 1, "{marked:?}");
    store
        .set_labels(
            &img.reference,
            &[(PINNED_LABEL, None), ("example.com/mark", None)],
        )
        .await
        .unwrap();
    let start = Instant::now();
    while cri
        .image_status(&img.reference)
        .await
        .unwrap()
        .unwrap()
        .pinned
    {
        assert!(start.elapsed() < Duration::from_secs(20), "never unpinned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
