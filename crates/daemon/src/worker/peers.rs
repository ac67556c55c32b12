//! A pull round's peer copy: the blobs the node lacks copied from the peers the tag's entry
//! names before CRI's pull, and where the pulled bytes came from, in the tag's status and the
//! daemon's metrics.

use std::time::Duration;

use super::guard::pull_ref;
use super::pull::Round;
use crate::peer::copy::PeerCopy;
use crate::runtime::ImageRuntime;

impl<R: ImageRuntime> Round<'_, R> {
    /// The blobs the node lacks, copied from the peers the entry names (within the attempt's
    /// timeout; whatever is left, the registry gives the pull). A quiet round holds the image
    /// already and copies nothing.
    pub(super) async fn copy_from_peers(&self, timeout: Duration) -> PeerCopy {
        if self.quiet() {
            return PeerCopy::default();
        }
        let ctx = self.ctx;
        let reference = pull_ref(ctx, &self.task);
        let copy =
            ctx.runtime
                .copy_from_peers(reference, &self.keyring, &self.task.sources, &ctx.metrics);
        tokio::time::timeout(timeout, copy).await.unwrap_or_else(|_| {
            tracing::warn!("copying from peers took the attempt's whole timeout; pulling from the registry");
            PeerCopy::default()
        })
    }

    /// Where the pulled bytes came from, in the tag's status and the daemon's metrics.
    pub(super) fn record_sources(&mut self, copy: &PeerCopy) {
        let ctx = self.ctx;
        // Unknown (no size or content store to tell): left unset rather than reported as 0.
        if let Some(registry) = copy.registry_bytes {
            ctx.metrics.pulled_from("registry", registry);
            self.st.registry_bytes = registry as i64;
        }
        self.st.peer_bytes = (copy.from_peers.iter())
            .map(|(node, bytes)| {
                ctx.metrics.pulled_from("peer", *bytes);
                kruise_api::PeerBytes {
                    node: node.clone(),
                    bytes: *bytes as i64,
                }
            })
            .collect();
        if !copy.from_peers.is_empty() {
            let copied: u64 = copy.from_peers.values().sum();
            tracing::info!(from_peers = copied, from_registry = ?copy.registry_bytes, peers = ?copy.from_peers.keys().collect::<Vec<_>>(), "copied from peers");
        }
    }
}
