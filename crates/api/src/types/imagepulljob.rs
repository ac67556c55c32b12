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
}
