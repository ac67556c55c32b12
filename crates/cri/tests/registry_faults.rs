//! What containerd 1.6 says when the registry misbehaves, through the lab's fault-injecting
//! proxy, and the cause the client reads from it. Needs what `tests/containerd.rs` needs.

use std::path::Path;
use std::time::Duration;

use kruise_cri::{detect, CriError, CriErrorKind, PullRequest};
use kruise_testlab::{Fault, Lab, Lasting, Layer, SlowProxy, Target};

/// Pulls a fresh image through `proxy` while `fault` hits `target`; the error and the requests
/// the proxy saw for it.
async fn pull_under(
    lab: &Lab,
    proxy: &SlowProxy,
    repo: &str,
    fault: Fault,
    target: Target,
) -> (CriError, Vec<String>) {
    let cri = detect(Some(&lab.cri_endpoint()), Path::new("/nonexistent"))
        .await
        .expect("containerd answers")
        .client;
    let seed = repo.bytes().map(u64::from).sum();
    let img = lab
        .push(
            &lab.registry,
            repo,
            "v1",
            &[Layer::random("a", 1 << 20, seed)],
        )
        .unwrap();
    let image = img.reference.replace(&lab.registry.host(), &proxy.host());
    proxy.inject(fault, target, Lasting::UntilCleared);
    let before = proxy.requests();
    let request = PullRequest {
        image,
        ..Default::default()
    };
    let result = cri.pull_image(request, Some(Duration::from_secs(30))).await;
    proxy.clear_fault();
    let error = result.expect_err("the fault fails the pull");
    (error, proxy.request_lines()[before..].to_vec())
}

const LIMIT: Fault = Fault::TooManyRequests {
    retry_after_secs: 30,
};

/// containerd 1.6.20 keeps neither the header nor `Retry-After`; its message has the status
/// line (manifest) or the status line and the registry's error code (blob). It retries a 429
/// itself at once: 12 requests per PullImage here.
#[tokio::test]
async fn a_429_on_the_manifest_or_a_blob_is_a_rate_limit() {
    let lab = Lab::start().expect("lab");
    let proxy = lab.slow_proxy(&lab.registry, 0).unwrap();
    let (e, requests) = pull_under(&lab, &proxy, "lab/limited-m", LIMIT, Target::Manifests).await;
    let host = proxy.host();
    assert_eq!(e.kind, CriErrorKind::RateLimited, "{e:?}");
    assert!(
        e.message.ends_with(&format!(
            "pulling from host {host} failed with status code [manifests v1]: 429 Too Many Requests"
        )),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("rate-limited by the registry: "));
    assert!(!e.message.to_ascii_lowercase().contains("retry"), "{e:?}");
    eprintln!("a 429 on the manifest: {} requests", requests.len());
    assert!(requests.iter().all(|r| r.contains("/manifests/")));

    let (e, requests) = pull_under(&lab, &proxy, "lab/limited-b", LIMIT, Target::Blobs).await;
    assert_eq!(e.kind, CriErrorKind::RateLimited, "{e:?}");
    assert!(
        e.message.contains(&format!("unexpected status code http://{host}/v2/lab/limited-b/blobs/sha256:"))
            && e.message.ends_with(
                ": 429 Too Many Requests - Server message: toomanyrequests: injected by the lab's proxy"
            ),
        "{e:?}"
    );
    eprintln!("a 429 on a blob: {} requests", requests.len());
}

#[tokio::test]
async fn server_errors_and_a_cut_response_are_transient() {
    let lab = Lab::start().expect("lab");
    let proxy = lab.slow_proxy(&lab.registry, 0).unwrap();
    let (e, _) = pull_under(
        &lab,
        &proxy,
        "lab/e503",
        Fault::Status(503),
        Target::Manifests,
    )
    .await;
    assert_eq!(e.kind, CriErrorKind::RegistryError, "{e:?}");
    assert!(
        e.message
            .ends_with("[manifests v1]: 503 Service Unavailable"),
        "{e:?}"
    );
    let (e, _) = pull_under(&lab, &proxy, "lab/e502", Fault::Status(502), Target::Blobs).await;
    assert_eq!(e.kind, CriErrorKind::RegistryError, "{e:?}");
    assert!(
        e.message
            .contains(": 502 Bad Gateway - Server message: unavailable:"),
        "{e:?}"
    );
    // Cut inside the response head, every time: no byte of the layer arrives.
    let cut = Fault::CutBlobAfter(200);
    let (e, _) = pull_under(&lab, &proxy, "lab/cut", cut, Target::Blobs).await;
    assert_eq!(e.kind, CriErrorKind::RegistryUnreachable, "{e:?}");
    assert!(
        e.message
            .ends_with("net/http: HTTP/1.x transport connection broken: unexpected EOF"),
        "{e:?}"
    );
    assert!(e.kind.is_transient());
}
