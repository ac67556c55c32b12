//! Where each served version of OpenKruise's workloads keeps the fields pre-download reads, as
//! OpenKruise's published CRDs define them (v1.9.0 and the main branch). CloneSet moved its
//! rollout fields under `spec.updateStrategy.rollingUpdate` in `v1beta1`, and the Advanced
//! DaemonSet renamed `status.daemonSetHash` to `status.updateRevision`: a field read at another
//! version's place reads as absent, so every read goes through the object's own [`Layout`].

use super::model::Kind;

/// The paths (dotted, from the object's root) one version keeps its rollout fields at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub partition: &'static str,
    pub max_unavailable: &'static str,
    /// The pod update policy; `None`: the kind has no in-place policy (Advanced DaemonSet).
    pub policy: Option<&'static str>,
    /// The object holding the `imagePreDownload*` fields, where the version has them;
    /// otherwise (and when a field is unset) the annotations are read.
    pub knobs: Option<&'static str>,
    /// `status.updatedReadyReplicas`, where the version's status counts them.
    pub updated_ready: Option<&'static str>,
    /// The hash of the revision an Advanced DaemonSet rolls out.
    pub update_hash: Option<&'static str>,
}

/// Advanced StatefulSet and Advanced DaemonSet keep their rollout fields under `rollingUpdate`
/// in every version.
const ROLLING_UPDATE: Layout = Layout {
    partition: "spec.updateStrategy.rollingUpdate.partition",
    max_unavailable: "spec.updateStrategy.rollingUpdate.maxUnavailable",
    policy: Some("spec.updateStrategy.rollingUpdate.podUpdatePolicy"),
    knobs: Some("spec.updateStrategy.rollingUpdate.inPlaceUpdateStrategy"),
    updated_ready: Some("status.updatedReadyReplicas"),
    update_hash: None,
};

/// The layout of OpenKruise's `kind` served at `version` (`v1alpha1`, `v1beta1`); `None` for
/// the apps/v1 kinds and unknown versions.
pub fn layout(kind: Kind, version: &str) -> Option<Layout> {
    let layout = match (kind, version) {
        // v1alpha1 keeps the policy in `type` and the rest directly under updateStrategy.
        (Kind::CloneSet, "v1alpha1") => Layout {
            partition: "spec.updateStrategy.partition",
            max_unavailable: "spec.updateStrategy.maxUnavailable",
            policy: Some("spec.updateStrategy.type"),
            knobs: Some("spec.updateStrategy.inPlaceUpdateStrategy"),
            ..ROLLING_UPDATE
        },
        (Kind::CloneSet, "v1beta1") => ROLLING_UPDATE,
        // v1alpha1's status does not count updated ready pods: they are counted from pods.
        (Kind::AdvancedStatefulSet, "v1alpha1") => Layout {
            updated_ready: None,
            ..ROLLING_UPDATE
        },
        (Kind::AdvancedStatefulSet, "v1beta1") => ROLLING_UPDATE,
        (Kind::AdvancedDaemonSet, "v1alpha1" | "v1beta1") => Layout {
            policy: None,
            knobs: None,
            updated_ready: None,
            update_hash: Some(if version == "v1alpha1" {
                "status.daemonSetHash"
            } else {
                "status.updateRevision"
            }),
            ..ROLLING_UPDATE
        },
        _ => return None,
    };
    Some(layout)
}

/// Every field path the adapters read from `kind` at `version` besides the layout's: the
/// common spec and status fields (the CRD test checks each exists in the published schema).
pub fn common_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::CloneSet => &[
            "spec.replicas",
            "spec.selector",
            "spec.template",
            "status.observedGeneration",
            "status.updateRevision",
            "status.currentRevision",
            "status.updatedReplicas",
            "status.replicas",
        ],
        Kind::AdvancedStatefulSet => &[
            "spec.replicas",
            "spec.selector",
            "spec.template",
            "spec.updateStrategy.type",
            "spec.updateStrategy.rollingUpdate",
            "status.observedGeneration",
            "status.updateRevision",
            "status.currentRevision",
            "status.updatedReplicas",
            "status.replicas",
        ],
        Kind::AdvancedDaemonSet => &[
            "spec.selector",
            "spec.template",
            "status.observedGeneration",
            "status.desiredNumberScheduled",
            "status.updatedNumberScheduled",
        ],
        _ => &[],
    }
}
