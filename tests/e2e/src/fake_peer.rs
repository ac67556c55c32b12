//! Peers that misbehave, for the fault tests: each serves `GET /blobs/<digest>` from the blobs it
//! was given, badly in its own way (cut mid-blob, wrong bytes, a trickle), and counts requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a fake peer misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Announces the whole blob, sends half, closes: a peer killed mid-transfer.
    CutHalfway,
    /// The whole length, one byte flipped in the middle.
    Corrupt,
    /// The right bytes at this many bytes per second.
    Trickle(u64),
}

pub struct FakePeer {
    pub address: String,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakePeer {
    pub async fn start(how: Misbehaviour, blobs: Arc<HashMap<String, Vec<u8>>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(conn, how, blobs.clone()));
            }
        });
        Self {
            address,
            requests,
            task,
        }
    }
}

async fn answer(
    mut conn: tokio::net::TcpStream,
    how: Misbehaviour,
    blobs: Arc<HashMap<String, Vec<u8>>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    let digest = path.strip_prefix("/blobs/").unwrap_or_default();
    let Some(blob) = blobs.get(digest) else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    };
    let header = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        blob.len()
    );
    if conn.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    match how {
        Misbehaviour::CutHalfway => {
            let _ = conn.write_all(&blob[..blob.len() / 2]).await;
        }
        Misbehaviour::Corrupt => {
            let mut wrong = blob.clone();
            let mid = wrong.len() / 2;
            wrong[mid] ^= 0xff;
            let _ = conn.write_all(&wrong).await;
        }
        Misbehaviour::Trickle(rate) => {
            for chunk in blob.chunks(rate.max(1) as usize) {
                if conn.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let _ = conn.shutdown().await;
}

/// The config and layers of `repo:tag` in the registry at `registry` (`host:port`), by digest.
pub async fn blobs_of(registry: &str, repo: &str, tag: &str) -> HashMap<String, Vec<u8>> {
    let http = reqwest::Client::new();
    let manifest: serde_json::Value = http
        .get(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("the registry answers")
        .json()
        .await
        .expect("a manifest");
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for l in manifest["layers"].as_array().expect("an image manifest") {
        digests.push(l["digest"].as_str().unwrap().to_string());
    }
    let mut out = HashMap::new();
    for d in digests {
        let data = http
            .get(format!("http://{registry}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .expect("blob")
            .bytes()
            .await
            .expect("blob bytes");
        out.insert(d, data.to_vec());
    }
    out
}
