//! ImageListPullJob: one ImagePullJob per listed image, sharing one template.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ImagePullJobTemplate;
use crate::rules;

/// Pull every image of `images` with the same template.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "apps.kruise.io",
    version = "v1beta1",
    kind = "ImageListPullJob",
    namespaced,
    status = "ImageListPullJobStatus",
    shortname = "ilpj",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::job_spec_rules()))]
pub struct ImageListPullJobSpec {
    /// Images to pull, each at most once, fewer than 256.
    #[schemars(schema_with = "rules::image_list_schema")]
    pub images: Vec<String>,
    #[serde(flatten)]
    pub template: ImagePullJobTemplate,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageListPullJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Number of images (child jobs).
    pub desired: i32,
    /// Child jobs with nodes pulling.
    #[serde(default)]
    pub active: i32,
    /// Child jobs whose every node is done.
    #[serde(default)]
    pub completed: i32,
    /// Child jobs whose every node succeeded.
    #[serde(default)]
    pub succeeded: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_image_statuses: Vec<FailedImageStatus>,
}

/// An image that failed on some node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedImageStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
