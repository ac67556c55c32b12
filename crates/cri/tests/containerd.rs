//! The CRI client against a real containerd and real registries on loopback (kruise-testlab).
//! These tests need root and the Debian packages `containerd docker-registry skopeo
//! apache2-utils`; without them they fail, saying what to install.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use kruise_cri::auth::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE};
use kruise_cri::proto::AuthConfig;
use kruise_cri::{detect, CriClient, CriErrorKind, DockerKeyring, PullRequest, RuntimeKind};
use kruise_testlab::{Lab, Layer};

async fn client(lab: &Lab) -> CriClient {
    let found = detect(Some(&lab.cri_endpoint()), Path::new("/nonexistent"))
        .await
        .expect("containerd answers");
    assert_eq!(found.version.runtime_name, "containerd");
    assert_eq!(found.version.runtime_api_version, "v1");
    eprintln!(
        "CRI tests run against {} {} at {}",
        found.version.runtime_name, found.version.runtime_version, found.endpoint
    );
    found.client
}

fn pull(image: &str) -> PullRequest {
    PullRequest {
        image: image.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn pulls_inspects_lists_and_removes_an_image() {
    let lab = Lab::start().expect("lab");
    let img = lab
        .push(
            &lab.registry,
            "lab/multi",
            "v1",
            &[
                Layer::file("etc/app.conf", "a=1"),
                Layer::random("data.bin", 2 << 20, 11),
            ],
        )
        .unwrap();
    let cri = client(&lab).await;

    assert_eq!(
        cri.image_status(&img.reference).await.unwrap(),
        None,
        "not there before the pull"
    );
    let image_ref = cri
        .pull_image(pull(&img.reference), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        image_ref, img.config_digest,
        "PullImage returns the image ID"
    );

    let status = cri
        .image_status(&img.reference)
        .await
        .unwrap()
        .expect("ImageStatus finds the pulled image");
    assert_eq!(status.id, img.config_digest);
    assert!(
        status.repo_tags.contains(&img.reference),
        "{:?}",
        status.repo_tags
    );
    assert_eq!(status.size, img.size);
    let by_id = cri.image_status(&img.config_digest).await.unwrap();
    assert_eq!(
        by_id.map(|i| i.id),
        Some(img.config_digest.clone()),
        "found by ID too"
    );

    let listed = cri.list_images().await.unwrap();
    assert!(listed
        .iter()
        .any(|i| i.id == img.config_digest && i.repo_tags.contains(&img.reference)));
    assert!(
        !cri.image_fs_info().await.unwrap().is_empty(),
        "ImageFsInfo reports the image filesystem"
    );

    cri.remove_image(&img.reference).await.unwrap();
    assert_eq!(
        cri.image_status(&img.reference).await.unwrap(),
        None,
        "gone after RemoveImage"
    );
    cri.remove_image(&img.reference)
        .await
        .expect("removing a missing image succeeds");
}

#[tokio::test]
async fn digest_references_pull_and_are_found_by_digest() {
    let lab = Lab::start().expect("lab");
    let img = lab
        .push(
            &lab.registry,
            "lab/pinned",
            "v1",
            &[Layer::file("x", "pinned")],
        )
        .unwrap();
    let cri = client(&lab).await;
    let with_tag = format!(
        "{}:v1@{}",
        img.reference.rsplit_once(':').unwrap().0,
        img.manifest_digest
    );
    for reference in [&img.digest_reference, &with_tag] {
        let id = cri
            .pull_image(pull(reference), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(id, img.config_digest, "{reference}");
    }
    let status = cri
        .image_status(&img.digest_reference)
        .await
        .unwrap()
        .expect("found by digest");
    assert!(
        status.repo_digests.contains(&img.digest_reference),
        "{:?}",
        status.repo_digests
    );
}

#[tokio::test]
async fn a_private_registry_needs_the_right_credentials() {
    let lab = Lab::start().expect("lab");
    // Content no other test pushed: blobs are shared across registries by digest.
    let img = lab
        .push(
            &lab.auth_registry,
            "lab/private",
            "v1",
            &[Layer::random("p.bin", 1 << 20, 0x5eed)],
        )
        .unwrap();
    let cri = client(&lab).await;
    let creds = lab.auth_registry.credentials().unwrap().clone();

    let anonymous = cri
        .pull_image(pull(&img.reference), Some(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(anonymous.kind, CriErrorKind::Unauthorized, "{anonymous}");
    assert!(
        anonymous.to_string().contains("401 Unauthorized"),
        "{anonymous}"
    );
    assert!(
        anonymous
            .to_string()
            .starts_with("the registry refused the credentials"),
        "{anonymous}"
    );

    let wrong = PullRequest {
        auth: Some(AuthConfig {
            username: creds.username.clone(),
            password: "wrong".into(),
            ..Default::default()
        }),
        ..pull(&img.reference)
    };
    assert_eq!(
        cri.pull_image(wrong, Some(Duration::from_secs(60)))
            .await
            .unwrap_err()
            .kind,
        CriErrorKind::Unauthorized
    );

    // The credentials a user would put in a dockerconfigjson secret, chosen by the keyring.
    let config = serde_json::json!({"auths": {lab.auth_registry.host(): {
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.password))
    }}});
    let mut ring = DockerKeyring::new();
    ring.add_secret(
        "kruise-daemon-config/lab",
        DOCKER_CONFIG_JSON_TYPE,
        &BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            serde_json::to_vec(&config).unwrap(),
        )]),
    )
    .unwrap();
    let (auth, secret) = ring
        .lookup(&img.reference)
        .into_iter()
        .next()
        .expect("the keyring matches the registry");
    assert_eq!(secret, "kruise-daemon-config/lab");
    let id = cri
        .pull_image(
            PullRequest {
                auth: Some(auth),
                ..pull(&img.reference)
            },
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(id, img.config_digest);
}

#[tokio::test]
async fn a_missing_image_and_a_stopped_registry_fail_differently() {
    let mut lab = Lab::start().expect("lab");
    let img = lab
        .push(
            &lab.registry,
            "lab/small",
            "v1",
            &[Layer::file("x", "small")],
        )
        .unwrap();
    let cri = client(&lab).await;

    let missing = format!("{}/lab/small:nothere", lab.registry.host());
    let not_found = cri
        .pull_image(pull(&missing), Some(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(not_found.kind, CriErrorKind::NotFound, "{not_found}");
    assert!(
        not_found
            .to_string()
            .starts_with("image not found in the registry"),
        "{not_found}"
    );

    lab.registry.stop();
    let down = cri
        .pull_image(pull(&img.reference), Some(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(down.kind, CriErrorKind::RegistryUnreachable, "{down}");
    assert!(down.to_string().contains("connection refused"), "{down}");
    assert!(
        down.to_string().starts_with("the registry is unreachable"),
        "{down}"
    );
    assert!(down.kind.is_transient() && !not_found.kind.is_transient());

    lab.registry.start_again().unwrap();
    cri.pull_image(pull(&img.reference), Some(Duration::from_secs(60)))
        .await
        .expect("pulls again once the registry is back");
}

#[tokio::test]
async fn a_pull_deadline_is_enforced_and_reported_as_a_timeout() {
    let lab = Lab::start().expect("lab");
    let img = lab
        .push(
            &lab.registry,
            "lab/big",
            "v1",
            &[Layer::random("big.bin", 20 << 20, 77)],
        )
        .unwrap();
    let cri = client(&lab).await;
    let err = cri
        .pull_image(pull(&img.reference), Some(Duration::from_millis(5)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, CriErrorKind::Timeout, "{err}");
    assert_eq!(
        cri.image_status(&img.reference).await.unwrap(),
        None,
        "the runtime stopped the pull"
    );
}

#[tokio::test]
async fn detection_probes_openkruise_sockets_in_order_and_explains_failure() {
    let lab = Lab::start().expect("lab");
    let host_run = tempfile::tempdir().unwrap();

    let none = detect(None, host_run.path()).await.unwrap_err();
    assert_eq!(none.tried.len(), 6, "{none}");
    let text = none.to_string();
    for socket in [
        "containerd.sock",
        "containerd/containerd.sock",
        "crio.sock",
        "crio/crio.sock",
        "cri-dockerd.sock",
        "cri-dockerd/cri-dockerd.sock",
    ] {
        assert!(
            text.contains(&host_run.path().join(socket).display().to_string()),
            "{text}"
        );
    }
    assert!(text.contains("--runtime-endpoint"), "{text}");

    // A stale socket file at the first candidate is reported and skipped; the runtime at the
    // k3s-style second path is found.
    std::fs::write(host_run.path().join("containerd.sock"), b"").unwrap();
    std::fs::create_dir(host_run.path().join("containerd")).unwrap();
    std::os::unix::fs::symlink(
        lab.containerd.socket(),
        host_run.path().join("containerd/containerd.sock"),
    )
    .unwrap();
    let found = detect(None, host_run.path())
        .await
        .expect("finds containerd");
    assert_eq!(found.kind, RuntimeKind::Containerd);
    assert!(
        found.endpoint.ends_with("containerd/containerd.sock"),
        "{}",
        found.endpoint
    );
    assert_eq!(found.version.runtime_name, "containerd");

    let bad = detect(Some("tcp://127.0.0.1:1"), host_run.path())
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("is not a unix socket"), "{bad}");
}

/// Under containerd, a pull's progress is read from the content store while the CRI call runs:
/// it climbs through intermediate values (the download is throttled to about 4 s) and stays
/// below 100 until the pull returns.
#[tokio::test]
async fn pull_progress_climbs_from_the_content_store() {
    let lab = Lab::start().expect("lab");
    let img = lab
        .push(
            &lab.registry,
            "lab/progress",
            "v1",
            &[
                Layer::random("a.bin", 6 << 20, 31),
                Layer::random("b.bin", 6 << 20, 32),
            ],
        )
        .unwrap();
    let proxy = lab.slow_proxy(&lab.registry, 3 << 20).unwrap();
    let slow = img.reference.replace(&lab.registry.host(), &proxy.host());
    let cri = client(&lab).await;
    let store = kruise_cri::ContentStore::new(cri.channel());
    assert!(
        store.available().await,
        "containerd serves its content store"
    );
    let source = kruise_cri::progress::ImageSource {
        host: "127.0.0.1".into(),
        repository: "lab/progress".into(),
        digest: None,
    };
    let mut progress = kruise_cri::PullProgress::new(store, source);
    let pull = tokio::spawn({
        let cri = cri.clone();
        async move {
            cri.pull_image(pull(&slow), Some(Duration::from_secs(60)))
                .await
        }
    });
    let mut seen = Vec::new();
    while !pull.is_finished() {
        if let Some(p) = progress.sample().await.expect("sampling progress") {
            seen.push(p);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pull.await.unwrap().expect("pulled");
    eprintln!("progress samples: {seen:?}");
    assert!(
        seen.iter().any(|p| (5..=90).contains(p)),
        "an intermediate value was seen: {seen:?}"
    );
    assert!(seen.iter().all(|p| *p <= 99), "never 100 before the end");
    assert!(
        seen.windows(2).filter(|w| w[1] < w[0]).count() == 0,
        "it does not go backwards: {seen:?}"
    );
}
