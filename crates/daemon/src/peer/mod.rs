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

/// What one tag's status makes the node hold: its manifest digest once Succeeded.
pub fn held(tag: &ImageTagStatus) -> Option<&String> {
    (tag.phase == TagPhase::Succeeded)
        .then_some(tag.digest.as_ref())
        .flatten()
}

/// The holdings in `tags` (the status the daemon writes).
pub fn holdings<'a>(tags: impl IntoIterator<Item = &'a ImageTagStatus>) -> BTreeSet<String> {
    tags.into_iter().filter_map(held).cloned().collect()
}
