//! The API of image pre-warming: `ImagePullJob`, `ImageListPullJob` and `NodeImage` in group
//! `apps.kruise.io`, their CRDs (defaults and validation live in the schema, no webhook), the
//! names users and tools see (labels, annotations, event reasons, field managers), and image
//! references.

pub mod constants;
pub mod crd;
pub mod imageref;
pub mod rules;
pub mod types;
pub mod units;

pub use types::common::{
    CompletionPolicy, CompletionPolicyType, ImagePullJobNodeSelector, ImagePullJobPodSelector,
    ImagePullJobTemplate, ImagePullPolicy, LabelSelectorOperator, LabelSelectorRequirement,
    PullPolicy, SandboxConfig,
};
pub use types::imagelistpulljob::{
    FailedImageStatus, ImageListPullJob, ImageListPullJobSpec, ImageListPullJobStatus,
};
pub use types::imagepulljob::{short_digest, ImagePullJob, ImagePullJobSpec, ImagePullJobStatus};
pub use types::nodeimage::{
    ImageSpec, ImageStatus, ImageTagPullPolicy, ImageTagSpec, ImageTagStatus, NodeImage,
    NodeImageSpec, NodeImageStatus, PeerBytes, PeerSource, ReferenceObject, TagPhase,
};
