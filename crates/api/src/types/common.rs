//! Types shared by ImagePullJob and ImageListPullJob: the job template and its policies.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constants::{DEFAULT_BACKOFF_LIMIT, DEFAULT_TIMEOUT_SECONDS};
use crate::rules;

/// Everything an ImagePullJob says besides its image; ImageListPullJob applies it to every image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullJobTemplate {
    /// Names of Secrets in the job's namespace holding registry credentials. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub pull_secrets: Option<Vec<String>>,

    /// Nodes to pull on: by name, or by label selector over node labels. Unset means all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<ImagePullJobNodeSelector>,

    /// Pull on the nodes running the active, scheduled pods in the job's namespace matched by
    /// this selector. Cannot be combined with `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<ImagePullJobPodSelector>,

    /// How many nodes may be pulling this image at the same time: an integer or a numeric
    /// string, default 1; 0 pauses the job. Percentages are not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": rules::PARALLELISM,
        "message": "parallelism must be a non-negative integer or a string of digits such as \"10\"; percentages are not supported",
    }]))]
    pub parallelism: Option<IntOrString>,

    /// Per-node timeout and retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub pull_policy: Option<PullPolicy>,

    /// When the job is done: `Always` (after every node finished, or the deadline) or `Never`.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub completion_policy: CompletionPolicy,

    /// Labels and annotations passed to the runtime as the CRI pod sandbox config of each pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_config: Option<SandboxConfig>,

    /// `IfNotPresent` (default) skips nodes that already have the image; `Always` pulls again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "IfNotPresent"))]
    pub image_pull_policy: Option<ImagePullPolicy>,
}

/// `names` or a label selector over node labels (mirrored on NodeImages), not both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": rules::NAMES_XOR_LABELS,
        "message": "selector.names cannot be combined with matchLabels or matchExpressions; use one or the other",
    },
    {
        "rule": rules::MATCH_EXPRESSIONS,
        "message": "matchExpressions with operator In or NotIn need values; Exists and DoesNotExist take none",
    },
]))]
pub struct ImagePullJobNodeSelector {
    /// Node names; each at most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// A label selector over pods in the job's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": rules::MATCH_EXPRESSIONS,
    "message": "matchExpressions with operator In or NotIn need values; Exists and DoesNotExist take none",
}]))]
pub struct ImagePullJobPodSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One `matchExpressions` entry, as in `metav1.LabelSelectorRequirement`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    #[schemars(length(max = 317))]
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub values: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Per-node pull limits of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullPolicy {
    /// Seconds one pull attempt may take; default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = DEFAULT_TIMEOUT_SECONDS))]
    pub timeout_seconds: Option<i32>,
    /// Retries after a failed attempt; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = DEFAULT_BACKOFF_LIMIT))]
    pub backoff_limit: Option<i32>,
}

impl Default for PullPolicy {
    fn default() -> Self {
        Self {
            timeout_seconds: Some(DEFAULT_TIMEOUT_SECONDS),
            backoff_limit: Some(DEFAULT_BACKOFF_LIMIT),
        }
    }
}

/// When a job counts as finished (OpenKruise's BroadcastJob CompletionPolicy).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletionPolicy {
    /// `Always` (default): finish once every node is done. `Never`: keep covering new nodes.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Always"))]
    pub type_: Option<CompletionPolicyType>,
    /// Seconds after the start at which an `Always` job gives up on the nodes not yet done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds after completion at which an `Always` job deletes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CompletionPolicyType {
    #[default]
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    #[default]
    IfNotPresent,
}

/// Labels and annotations for the CRI `PodSandboxConfig` of a pull.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SandboxConfig {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImagePullJobTemplate {
    /// `parallelism` as a node count: default 1, numeric strings accepted.
    pub fn parallelism(&self) -> Result<u32, String> {
        match &self.parallelism {
            None => Ok(1),
            Some(IntOrString::Int(n)) => {
                u32::try_from(*n).map_err(|_| format!("parallelism {n} is negative"))
            }
            Some(IntOrString::String(s)) => s
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("parallelism {s:?} is not a non-negative integer")),
        }
    }

    pub fn timeout_seconds(&self) -> i32 {
        self.pull_policy
            .as_ref()
            .and_then(|p| p.timeout_seconds)
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
    }

    pub fn backoff_limit(&self) -> i32 {
        self.pull_policy
            .as_ref()
            .and_then(|p| p.backoff_limit)
            .unwrap_or(DEFAULT_BACKOFF_LIMIT)
    }

    pub fn completion_type(&self) -> CompletionPolicyType {
        self.completion_policy.type_.unwrap_or_default()
    }

    pub fn image_pull_policy(&self) -> ImagePullPolicy {
        self.image_pull_policy.unwrap_or_default()
    }
}
