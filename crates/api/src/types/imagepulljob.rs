//! ImagePullJob: pull one image on a set of nodes (namespaced, what users write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ImagePullJobTemplate;
use crate::rules;

/// Pull `image` on the nodes the template selects, `parallelism` nodes at a time.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.kruise.io",
    version = "v1beta1",
    kind = "ImagePullJob",
    namespaced,
    status = "ImagePullJobStatus",
    shortname = "ipj",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::image_pull_job_spec_rules()))]
pub struct ImagePullJobSpec {
    /// The image to pull: `name`, `name:tag`, `name@sha256:…` or `name:tag@sha256:…`.
    #[schemars(schema_with = "rules::image_schema")]
    pub image: String,
    #[serde(flatten)]
    pub template: ImagePullJobTemplate,
}

/// Progress of an ImagePullJob, summed from the NodeImage statuses of the nodes it targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Nodes the job targets.
    pub desired: i32,
    /// Nodes pulling now.
    #[serde(default)]
    pub active: i32,
    #[serde(default)]
    pub succeeded: i32,
    #[serde(default)]
    pub failed: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_nodes: Vec<String>,
    /// The digest the image's tag was resolved to once for the whole job (`sha256:…`); every node
    /// pulls exactly this. Not in OpenKruise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The `spec.image` that `digest` (or `digestMessage`) is about: an edited image is resolved
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_image: Option<String>,
    /// `digest` cut to 12 hex digits, as `docker images` shows it: the `DIGEST` column of
    /// `kubectl get imagepulljobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_digest: Option<String>,
    /// Why the digest could not be resolved by the manager, when it could not (the nodes then
    /// resolve it, and the first node's digest is used for the rest). Not in OpenKruise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_message: Option<String>,
    /// Bytes the job's nodes pulled from the registry, summed over the nodes that finished. Not in
    /// OpenKruise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_bytes: Option<i64>,
    /// Bytes the job's nodes copied from peers instead of the registry. Not in OpenKruise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_bytes: Option<i64>,
}

/// `sha256:41f5c2a9b0e1…` cut to `sha256:41f5c2a9b0e1` (12 hex digits).
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", hex.chars().take(12).collect::<String>()),
        None => digest.chars().take(19).collect(),
    }
}
