//! NodeImage: one per Node, same name, cluster-scoped. The manager writes `spec` (which images
//! this node should hold, and for which jobs); the node's daemon writes `status`.
//!
//! Every write to a NodeImage costs the API server CPU in proportion to the stored object, so
//! entries omit empty and default-valued fields, and the schema sets no defaults here: an absent
//! `timeoutSeconds` means 600, an absent `imagePullPolicy` means `IfNotPresent`, and so on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ImagePullPolicy, SandboxConfig};
use crate::constants::{DEFAULT_BACKOFF_LIMIT, DEFAULT_TIMEOUT_SECONDS};
use crate::rules;

/// The images a node should hold, keyed by image name (`nginx`, `registry.example.com/team/app`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.kruise.io",
    version = "v1beta1",
    kind = "NodeImage",
    status = "NodeImageStatus",
    shortname = "ni",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct NodeImageSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 256,
        "x-kubernetes-validations" = [{
            "rule": rules::IMAGE_KEYS_NOT_EMPTY,
            "message": "image names (the keys of spec.images) must not be empty",
        }],
    ))]
    pub images: BTreeMap<String, ImageSpec>,
}

/// The tags of one image this node should hold, with the credentials and sandbox config to use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Secrets (in the daemon's namespace) with credentials for this image's registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<ReferenceObject>,
    /// Tags (or digests) to hold; each tag at most once.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["tag"]))]
    pub tags: Vec<ImageTagSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_config: Option<SandboxConfig>,
}

/// A reference to a Secret: `namespace/name`.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct ReferenceObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `batch` for a secret synced once per source secret and shared by jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// One tag of an image, the jobs that want it, and how to pull it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageTagSpec {
    /// A tag (`v1`), a digest (`sha256:…`) or both (`v1@sha256:…`).
    #[schemars(length(min = 1, max = 256))]
    pub tag: String,
    /// When this version of the tag was written; starts the response and deadline clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<ImageTagPullPolicy>,
    /// The ImagePullJobs that want this tag, matched by UID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<ObjectReference>,
    /// Bumped to ask for a new pull round; the daemon reports the version it processed.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub version: i64,
    /// Absent means `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// The digest the manager resolved the tag to (`sha256:…`): the daemon pulls exactly this
    /// and gives it the tag's name, so every node ends on one image even if the tag moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub digest: Option<String>,
    /// Pin the image in the runtime while this entry stays, so the kubelet's image garbage
    /// collection keeps it (a `Never` job's image, or a job that opted in).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pin: bool,
    /// Peers that hold this image and serve its blobs, tried in order before the registry; set by
    /// the manager so that the registry serves each image about once per cluster. A hint only:
    /// the daemon falls back to the registry. Not in OpenKruise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub sources: Vec<PeerSource>,
}

/// A node whose daemon serves the blobs of an image it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerSource {
    /// The peer's node name.
    #[schemars(length(min = 1, max = 253))]
    pub node: String,
    /// `host:port` its daemon serves blobs on (the Node's InternalIP and `--peer-port`).
    #[schemars(length(min = 1, max = 300))]
    pub address: String,
}

/// Limits of one tag's pull on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageTagPullPolicy {
    /// Seconds per attempt; absent means 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i32>,
    /// Retries; absent means 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backoff_limit: Option<i32>,
    /// Seconds after this tag finished at which the manager removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Seconds from `createdAt` after which the pull is given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
}

impl ImageTagPullPolicy {
    pub fn timeout_seconds(&self) -> i32 {
        self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
    }
    pub fn backoff_limit(&self) -> i32 {
        self.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT)
    }
}

/// What the node's daemon reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeImageStatus {
    /// Tags in the spec.
    #[serde(default)]
    pub desired: i32,
    #[serde(default)]
    pub succeeded: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default)]
    pub pulling: i32,
    #[serde(default)]
    pub waiting: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub image_statuses: BTreeMap<String, ImageStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sync_status: Option<SyncStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageStatus {
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["tag"]))]
    pub tags: Vec<ImageTagStatus>,
}

/// The result of one tag on this node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageTagStatus {
    pub tag: String,
    pub phase: TagPhase,
    /// 0–100.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub progress: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The spec version this result belongs to.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    /// The runtime's image ID (`name@sha256:…` of the config).
    #[serde(rename = "imageID", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Why the pull failed, in words a user can act on; or why a pulled image is not protected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The manifest digest the node holds for the tag (`sha256:…`), as the runtime reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The runtime reports the image pinned: the kubelet's image GC skips it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pinned: bool,
    /// Bytes of this pull that came from the registry (blobs containerd fetched itself).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub registry_bytes: i64,
    /// Bytes of this pull copied from peers, per peer node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub peer_bytes: Vec<PeerBytes>,
}

/// Bytes one pull copied from one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerBytes {
    pub node: String,
    pub bytes: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TagPhase {
    #[default]
    Waiting,
    Pulling,
    Succeeded,
    Failed,
}

/// When a new node's first pulls finished (OpenKruise field, kept for compatibility).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
