//! Peer copies into a real containerd's content store (issue #18): a blob is committed only when
//! its bytes match its digest and size, under a lease, with the labels given; wrong bytes leave
//! neither a blob nor a partial write behind; a stored blob is not written again; what is
//! stored reads back whole. Needs root and the lab's Debian packages, like tests/containerd.rs.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kruise_cri::feed::Written;
use kruise_cri::{detect, BlobFeed, FeedError};
use kruise_testlab::Lab;
use sha2::{Digest, Sha256};

fn digest_of(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// `data` as a peer's body would come: in 64 KiB chunks.
fn body(data: &[u8]) -> impl futures::Stream<Item = Result<Bytes, String>> + Send + 'static {
    let chunks: Vec<Result<Bytes, String>> = data
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks)
}

fn ctr(lab: &Lab, args: &[&str]) -> String {
    let out = lab
        .containerd
        .ctr()
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .expect("running ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn only_verified_bytes_are_committed_and_wrong_ones_leave_nothing_behind() {
    let lab = Lab::start().expect("lab");
    let cri = detect(Some(&lab.cri_endpoint()), Path::new("/nonexistent"))
        .await
        .expect("containerd answers")
        .client;
    let feed = BlobFeed::new(cri.channel());
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|_| fastrand::u8(..))
        .collect();
    let digest = digest_of(&data);
    let size = data.len() as u64;
    let lease = feed.lease(Duration::from_secs(600)).await.expect("a lease");
    let labels = HashMap::from([(
        "containerd.io/distribution.source.registry.example".to_string(),
        "team/app".to_string(),
    )]);

    // Other bytes of the same length: refused, nothing stored, no ingest left.
    let mut wrong = data.clone();
    wrong[size as usize / 2] ^= 0xff;
    let refused = feed
        .write(&lease, &digest, size, labels.clone(), body(&wrong))
        .await
        .expect_err("corrupt bytes are refused");
    assert!(
        matches!(refused, FeedError::DigestMismatch { .. }),
        "{refused}"
    );
    assert!(
        !feed.has(&digest).await.unwrap(),
        "a corrupt blob must not be committed"
    );
    let active = ctr(&lab, &["content", "active"]);
    assert!(
        !active.contains("kruise-peer"),
        "the aborted write is gone: {active}"
    );

    // Too many bytes: refused as well.
    let mut long = data.clone();
    long.push(0);
    let refused = feed
        .write(&lease, &digest, size, labels.clone(), body(&long))
        .await
        .expect_err("a longer body is refused");
    assert!(matches!(refused, FeedError::Size { .. }), "{refused}");

    // A source that breaks mid-way.
    let mut broken: Vec<Result<Bytes, String>> = vec![Ok(Bytes::copy_from_slice(&data[..1000]))];
    broken.push(Err("connection reset".into()));
    let refused = feed
        .write(
            &lease,
            &digest,
            size,
            labels.clone(),
            futures::stream::iter(broken),
        )
        .await
        .expect_err("a broken source is refused");
    assert!(matches!(refused, FeedError::Source(_)), "{refused}");
    assert!(!feed.has(&digest).await.unwrap());

    // The right bytes: committed with the labels, and readable whole.
    let written = feed
        .write(&lease, &digest, size, labels.clone(), body(&data))
        .await
        .expect("the right bytes are committed");
    assert_eq!(written, Written::Committed);
    assert!(feed.has(&digest).await.unwrap());
    let listed = ctr(&lab, &["content", "ls"]);
    let line = listed
        .lines()
        .find(|l| l.contains(&digest))
        .unwrap_or_else(|| panic!("{digest} listed: {listed}"));
    assert!(
        line.contains("containerd.io/distribution.source.registry.example=team/app"),
        "the source label is set: {line}"
    );
    let mut read = Vec::new();
    let mut stream = Box::pin(feed.read(&digest).await.expect("readable"));
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(read == data, "the blob reads back as written");

    // Stored already: nothing is read from the source.
    let untouched = futures::stream::iter(vec![Err::<Bytes, _>("must not be read".to_string())]);
    let again = feed
        .write(&lease, &digest, size, labels, untouched)
        .await
        .expect("a stored blob is not written again");
    assert_eq!(again, Written::AlreadyPresent);
    feed.release(&lease).await.expect("the lease is released");
}
