//! Peer-to-peer pre-warming (issue #18) with the real binaries: nodes with a containerd each copy
//! the image from nodes that hold it, as the manager plans, and the registry serves it about
//! once; peers serve only daemons of the installation and only what their node holds;
//! misbehaving peers are dropped and the registry serves what they could not; and once the
//! first node holds the image, the rest complete from peers while the registry serves no blob.

use std::sync::Arc;

use e2e::fake_peer::{blobs_of, FakePeer, Misbehaviour};
use e2e::peers::PeerSetup;
use e2e::{manifest, Cluster, System, DEADLINE};
use kruise_api::{ImageTagStatus, TagPhase};
use kruise_testlab::{Fault, Lasting, Layer, PushedImage, SlowProxy, Target};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Three layers of incompressible bytes (about 3 MiB): every byte a registry pull moves counts.
fn push_layered(sys: &System, repo: &str, seed: u64) -> PushedImage {
    let layers: Vec<Layer> = (0..3)
        .map(|i| Layer::random(&format!("layer-{i}"), 1 << 20, seed * 10 + i))
        .collect();
    sys.lab
        .push(&sys.lab.registry, repo, "v1", &layers)
        .expect("image pushed")
}

/// The manager with peer planning on, and a proxy in front of the registry that counts bytes.
async fn start(budget: u32) -> (System, PeerSetup, SlowProxy) {
    let mut sys = System::without_manager(Cluster::start().await).await;
    let setup = sys.peer_setup().await;
    let proxy = sys.lab.slow_proxy(&sys.lab.registry, 0).expect("proxy");
    let args = setup.manager_args(budget, 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut m = sys.manager_process("manager", &args);
    m.wait_ready(DEADLINE).await;
    sys.manager = Some(m);
    (sys, setup, proxy)
}

/// The value of the sample `name{labels}` in a scrape; a sample that is not there fails.
fn counter(scrape: &str, sample: &str) -> f64 {
    let line = scrape
        .lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("{sample} not in the scrape: {scrape}"));
    line[sample.len()..].trim().parse().expect("a number")
}

fn via(proxy: &SlowProxy, image: &PushedImage) -> String {
    image.reference.replacen(
        &image.reference[..image.reference.find('/').unwrap()],
        &proxy.host(),
        1,
    )
}

async fn statuses(
    sys: &System,
    nodes: &[String],
    reference: &str,
) -> Vec<(String, ImageTagStatus)> {
    let mut out = Vec::new();
    for n in nodes {
        let st = sys
            .images
            .tag_status(n, reference)
            .await
            .expect("tag status");
        out.push((n.clone(), st));
    }
    out
}

#[tokio::test]
async fn nodes_copy_from_peers_and_the_registry_serves_the_image_once() {
    let (mut sys, mut setup, proxy) = start(1).await;
    let image = push_layered(&sys, "p2p/fleet", 1);
    let reference = via(&proxy, &image);
    let ports = [sys.lab.registry.port(), proxy.port()];
    let mut nodes = Vec::new();
    for i in 0..4 {
        let n = sys
            .add_peer_node(&mut setup, &format!("n{i}"), json!({}), &ports, &[])
            .await;
        nodes.push(n.name);
    }
    sys.apply_job(manifest(
        "v1beta1",
        "fleet",
        &reference,
        json!({
            "parallelism": 4, "completionPolicy": {"type": "Always"},
        }),
    ))
    .await;
    let job = sys
        .wait_job("fleet", "4 of 4 nodes succeeded", |s| s.succeeded == 4)
        .await;
    let blob_bytes: i64 = blobs_of(&sys.lab.registry.host(), "p2p/fleet", "v1")
        .await
        .values()
        .map(|b| b.len() as i64)
        .sum();
    let all = statuses(&sys, &nodes, &reference).await;
    let from_registry: Vec<_> = all.iter().filter(|(_, s)| s.registry_bytes > 0).collect();
    assert_eq!(
        from_registry.len(),
        1,
        "one node pulled from the registry (--registry-budget 1): {all:#?}"
    );
    assert_eq!(from_registry[0].1.registry_bytes, blob_bytes);
    for (node, st) in all.iter().filter(|(_, s)| s.registry_bytes == 0) {
        let copied: i64 = st.peer_bytes.iter().map(|p| p.bytes).sum();
        assert_eq!(
            copied, blob_bytes,
            "{node} copied the whole image from peers: {st:#?}"
        );
        assert!(
            st.peer_bytes
                .iter()
                .all(|p| nodes.contains(&p.node) && &p.node != node),
            "{node} copied from the test's other nodes: {:?}",
            st.peer_bytes
        );
    }
    assert_eq!(job.registry_bytes, Some(blob_bytes), "{job:#?}");
    assert_eq!(job.peer_bytes, Some(3 * blob_bytes), "{job:#?}");
    let served = proxy.bytes_sent();
    assert!(
        served < (blob_bytes as u64) * 13 / 10,
        "the registry served {served} bytes for an image of {blob_bytes} pulled by 4 nodes"
    );
}

#[tokio::test]
async fn peers_serve_only_daemons_and_only_what_their_node_holds() {
    let mut sys = System::without_manager(Cluster::start().await).await;
    let mut setup = sys.peer_setup().await;
    let image = push_layered(&sys, "p2p/guarded", 2);
    let ports = [sys.lab.registry.port()];
    let a = sys
        .add_peer_node(&mut setup, "a", json!({}), &ports, &[])
        .await;
    let images = &sys.images;
    images.want(&a.name, &image.reference, 1, json!({})).await;
    images
        .wait_phase(&a.name, &image.reference, TagPhase::Succeeded, 1, DEADLINE)
        .await;
    let blobs = blobs_of(&sys.lab.registry.host(), "p2p/guarded", "v1").await;
    let (layer, data) = blobs.iter().max_by_key(|(_, d)| d.len()).unwrap();
    let http = reqwest::Client::new();
    let url = |d: &str| format!("http://{}:{}/blobs/{d}", a.ip, setup.port);
    let get = |d: String, token: Option<String>| {
        let mut r = http.get(url(&d));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.expect("the peer answers") }
    };
    let daemon_sa = setup.account.split(':').nth(1).unwrap().to_string();
    let daemon_token = sys.token_for(&daemon_sa, &setup.audience).await;

    assert_eq!(get(layer.clone(), None).await.status(), 401, "no token");
    let other_audience = sys.token_for(&daemon_sa, "some-other-audience").await;
    assert_eq!(
        get(layer.clone(), Some(other_audience)).await.status(),
        401,
        "another audience"
    );
    let intruder = sys.cluster.name("intruder");
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": intruder}})).unwrap();
    kube::Api::namespaced(sys.cluster.client.clone(), &sys.ns)
        .create(&Default::default(), &sa)
        .await
        .expect("another ServiceAccount");
    let intruder_token = sys.token_for(&intruder, &setup.audience).await;
    assert_eq!(
        get(layer.clone(), Some(intruder_token)).await.status(),
        403,
        "not a daemon"
    );

    // Not listed: a digest nobody has, and a blob the node's containerd holds but no Succeeded
    // tag lists (pulled by hand): the same 404 and the same words.
    let other = sys
        .lab
        .push(
            &sys.lab.registry,
            "p2p/unlisted",
            "v1",
            &[Layer::random("x", 4096, 9)],
        )
        .unwrap();
    let node_ctr = sys.runtimes[a.runtime]
        .ctr()
        .args([
            "-n",
            "k8s.io",
            "images",
            "pull",
            "--plain-http",
            &other.reference,
        ])
        .output()
        .unwrap();
    assert!(
        node_ctr.status.success(),
        "{}",
        String::from_utf8_lossy(&node_ctr.stderr)
    );
    let unlisted = blobs_of(&sys.lab.registry.host(), "p2p/unlisted", "v1").await;
    let unlisted_layer = unlisted.keys().next().unwrap().clone();
    let nobody = format!("sha256:{}", "ab".repeat(32));
    let mut answers = Vec::new();
    for d in [nobody.clone(), unlisted_layer.clone()] {
        let r = get(d.clone(), Some(daemon_token.clone())).await;
        assert_eq!(r.status(), 404, "{d} is not served");
        answers.push(r.text().await.unwrap().replace(&d, "<digest>"));
    }
    assert_eq!(
        answers[0], answers[1],
        "a 404 says nothing about what the node holds"
    );

    let served = get(layer.clone(), Some(daemon_token)).await;
    assert_eq!(served.status(), 200);
    let bytes = served.bytes().await.unwrap();
    assert_eq!(bytes.len(), data.len());
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(format!("sha256:{hex}"), *layer, "the blob's bytes");
    let metrics = sys.daemons[0].metrics().await;
    for (answer, at_least) in [
        ("served", 1.0),
        ("unauthenticated", 2.0),
        ("forbidden", 1.0),
        ("not_found", 2.0),
    ] {
        let n = counter(
            &metrics,
            &format!("kruise_daemon_peer_requests_total{{result=\"{answer}\"}}"),
        );
        assert!(
            n >= at_least,
            "{answer}: {n} counted, {at_least} expected: {metrics}"
        );
    }
}

#[tokio::test]
async fn misbehaving_peers_are_dropped_and_the_registry_serves_what_they_could_not() {
    let mut sys = System::without_manager(Cluster::start().await).await;
    let mut setup = sys.peer_setup().await;
    let image = push_layered(&sys, "p2p/faults", 3);
    let blobs = Arc::new(blobs_of(&sys.lab.registry.host(), "p2p/faults", "v1").await);
    let total: i64 = blobs.values().map(|b| b.len() as i64).sum();
    let cut = FakePeer::start(Misbehaviour::CutHalfway, blobs.clone()).await;
    let corrupt = FakePeer::start(Misbehaviour::Corrupt, blobs.clone()).await;
    let slow = FakePeer::start(Misbehaviour::Trickle(64), blobs.clone()).await;
    let b = sys
        .add_peer_node(&mut setup, "b", json!({}), &[sys.lab.registry.port()], &[])
        .await;
    let images = &sys.images;
    let sources: Vec<_> = [("killed", &cut), ("corrupt", &corrupt), ("slow", &slow)]
        .iter()
        .map(|(n, p)| json!({"node": n, "address": p.address}))
        .collect();
    images
        .want(&b.name, &image.reference, 1, json!({"sources": sources}))
        .await;
    let st = images
        .wait_phase(&b.name, &image.reference, TagPhase::Succeeded, 1, DEADLINE)
        .await;
    let id = st.image_id.clone().unwrap_or_default();
    assert!(id.ends_with(&image.config_digest), "the right image: {id}");
    assert!(
        st.peer_bytes.is_empty(),
        "nothing came from the bad peers: {st:#?}"
    );
    assert_eq!(st.registry_bytes, total, "the registry served every blob");
    for (name, p) in [("killed", &cut), ("corrupt", &corrupt), ("slow", &slow)] {
        let asked = p.requests.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            asked >= blobs.len(),
            "the {name} peer was asked for every blob ({asked})"
        );
    }
    let metrics = sys.daemons[0].metrics().await;
    for result in ["failed", "corrupt"] {
        let n = counter(
            &metrics,
            &format!("kruise_daemon_peer_copies_total{{result=\"{result}\"}}"),
        );
        assert!(
            n >= blobs.len() as f64,
            "{result}: {n} counted for {} blobs",
            blobs.len()
        );
    }
    let copied = counter(
        &metrics,
        "kruise_daemon_peer_copies_total{result=\"copied\"}",
    );
    assert_eq!(copied, 0.0, "nothing was copied from the bad peers");
    let log = sys.daemons[0].log_text();
    assert!(
        log.contains("too slow"),
        "the slow peer is dropped for its rate"
    );
    assert!(
        log.contains("do not match the digest"),
        "the corrupt peer for its bytes"
    );
}

#[tokio::test]
async fn once_a_node_holds_the_image_the_rest_complete_from_peers_without_registry_blobs() {
    let (mut sys, mut setup, proxy) = start(1).await;
    let image = push_layered(&sys, "p2p/outage", 4);
    let reference = via(&proxy, &image);
    let ports = [sys.lab.registry.port(), proxy.port()];
    let first = sys
        .add_peer_node(&mut setup, "first", json!({"wave": "yes"}), &ports, &[])
        .await;
    sys.apply_job(manifest(
        "v1beta1",
        "outage",
        &reference,
        json!({
            "parallelism": 4, "completionPolicy": {"type": "Never"},
            "selector": {"matchLabels": {"wave": "yes"}},
        }),
    ))
    .await;
    sys.wait_job("outage", "the first node succeeded", |s| s.succeeded == 1)
        .await;
    // The registry now answers every blob request with 503; manifests still come through.
    proxy.inject(Fault::Status(503), Target::Blobs, Lasting::UntilCleared);
    let mut later = Vec::new();
    for i in 0..2 {
        let n = sys
            .add_peer_node(
                &mut setup,
                &format!("later{i}"),
                json!({"wave": "yes"}),
                &ports,
                &[],
            )
            .await;
        later.push(n.name);
    }
    sys.wait_job("outage", "3 of 3 nodes succeeded", |s| {
        s.desired == 3 && s.succeeded == 3
    })
    .await;
    for (node, st) in statuses(&sys, &later, &reference).await {
        assert_eq!(
            st.registry_bytes, 0,
            "{node} needed no blob from the registry"
        );
        assert!(!st.peer_bytes.is_empty(), "{node} copied from a peer");
    }
    assert_eq!(
        proxy.faults_injected(),
        0,
        "no node asked the registry for a blob after the outage"
    );
    let st = sys
        .images
        .tag_status(&first.name, &reference)
        .await
        .unwrap();
    assert!(
        st.registry_bytes > 0,
        "the first node pulled from the registry: {st:#?}"
    );
}
