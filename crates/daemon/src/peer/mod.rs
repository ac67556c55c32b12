//! Peer-to-peer copies between the daemons of one installation. Each daemon serves the blobs of
//! the images its NodeImage lists as Succeeded (`serve`), only to callers that prove with a
//! projected service-account token that they are a daemon of this installation (`auth`). A tag
//! whose entry names peers (`sources`, planned by the manager) has its missing blobs copied from
//! them into containerd's content store before CRI's pull (`copy`), which then finds them there and
//! asks the registry only for the manifest. Peers are a hint: whatever they do not deliver, the
//! registry does.

pub mod auth;
pub mod copy;
pub mod serve;

use std::collections::BTreeSet;
use std::sync::Arc;

use kruise_api::{ImageTagStatus, TagPhase};

/// The manifest digests (index or image manifest, `sha256:…`) of the tags this node's status
/// reports Succeeded: what it may serve, and nothing else.
pub type Holdings = Arc<BTreeSet<String>>;

/// The holdings in `tags` (the status the daemon writes).
pub fn holdings<'a>(tags: impl IntoIterator<Item = &'a ImageTagStatus>) -> BTreeSet<String> {
    tags.into_iter()
        .filter(|t| t.phase == TagPhase::Succeeded)
        .filter_map(|t| t.digest.clone())
        .collect()
}
