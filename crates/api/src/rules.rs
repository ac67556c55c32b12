//! The CEL rules (`x-kubernetes-validations`) the CRDs carry, so that kube-apiserver itself refuses
//! what OpenKruise's validating webhooks refuse, and what they forget. Each rule is tested against
//! good and bad objects in `tests/crd_validation.rs`.
//!
//! Rules stay within the functions every supported kube-apiserver has (`has`, `size`, `all`,
//! `matches`, `type`), and the lists they walk are bounded in the schema so the API server's cost
//! estimate stays far under its limits.

use crate::constants::{MAX_IMAGES_PER_LIST_JOB, MAX_IMAGE_REFERENCE_LENGTH};
use crate::imageref::IMAGE_REFERENCE_PATTERN;

/// `parallelism` is an int ≥ 0 or a string of digits (no percentages, unlike workload strategies).
pub const PARALLELISM: &str = "type(self) == int ? self >= 0 : self.matches('^[0-9]+$')";

/// `selector.names` and a label selector are alternatives.
pub const NAMES_XOR_LABELS: &str = "!has(self.names) || size(self.names) == 0 || \
    ((!has(self.matchLabels) || size(self.matchLabels) == 0) && \
    (!has(self.matchExpressions) || size(self.matchExpressions) == 0))";

/// `In`/`NotIn` need values, `Exists`/`DoesNotExist` take none (metav1 label selector rules).
pub const MATCH_EXPRESSIONS: &str = "!has(self.matchExpressions) || self.matchExpressions.all(e, \
    (e.operator == 'In' || e.operator == 'NotIn') ? (has(e.values) && size(e.values) > 0) \
    : (!has(e.values) || size(e.values) == 0))";

/// `selector` and `podSelector` are alternatives.
pub const SELECTOR_XOR_POD_SELECTOR: &str = "!has(self.selector) || !has(self.podSelector)";

/// A `Never` job has no deadline and no TTL.
pub const NEVER_HAS_NO_DEADLINE_OR_TTL: &str = "!has(self.completionPolicy) || \
    !has(self.completionPolicy.type) || self.completionPolicy.type != 'Never' || \
    (!has(self.completionPolicy.activeDeadlineSeconds) && \
    !has(self.completionPolicy.ttlSecondsAfterFinished))";

/// The job deadline leaves room for at least one whole pull attempt.
pub const DEADLINE_COVERS_TIMEOUT: &str = "!has(self.completionPolicy) || \
    !has(self.completionPolicy.activeDeadlineSeconds) || \
    ((has(self.pullPolicy) && has(self.pullPolicy.timeoutSeconds)) ? self.pullPolicy.timeoutSeconds : 600) \
    <= self.completionPolicy.activeDeadlineSeconds";

/// `pullSecrets` cannot change after creation (a transition rule: evaluated on update only).
pub const PULL_SECRETS_IMMUTABLE: &str = "(has(self.pullSecrets) ? self.pullSecrets : []) == \
    (has(oldSelf.pullSecrets) ? oldSelf.pullSecrets : [])";

/// Every NodeImage image key is a non-empty name.
pub const IMAGE_KEYS_NOT_EMPTY: &str = "self.all(k, size(k) > 0)";

/// An image string is a valid distribution reference.
pub fn image_reference() -> String {
    format!("self.matches('{IMAGE_REFERENCE_PATTERN}')")
}

pub const IMAGE_REFERENCE_MESSAGE: &str = "must be a valid image reference: \
    [registry[:port]/]name[:tag][@sha256:<64 lower-case hex>], with a lower-case repository name, \
    at most one tag and no spaces (for example registry.example.com/team/app:v1)";

/// Schema of an image reference string.
pub fn image_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "maxLength": MAX_IMAGE_REFERENCE_LENGTH,
        "x-kubernetes-validations": [{ "rule": image_reference(), "message": IMAGE_REFERENCE_MESSAGE }],
    })
}

/// Schema of ImageListPullJob `images`: 1 to 255 distinct image references.
pub fn image_list_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_IMAGES_PER_LIST_JOB,
        "x-kubernetes-list-type": "set",
        "items": image_schema(generator),
    })
}

/// Rules on an ImagePullJob spec: the job rules plus immutable pull secrets.
pub fn image_pull_job_spec_rules() -> serde_json::Value {
    let mut rules = job_spec_rules();
    if let Some(list) = rules.as_array_mut() {
        list.push(serde_json::json!({
            "rule": PULL_SECRETS_IMMUTABLE,
            "message": "pullSecrets is immutable; delete and re-create the job to change its pull secrets",
            "fieldPath": ".pullSecrets",
        }));
    }
    rules
}

/// Rules on a job spec (ImagePullJob and ImageListPullJob alike).
pub fn job_spec_rules() -> serde_json::Value {
    serde_json::json!([
        {
            "rule": SELECTOR_XOR_POD_SELECTOR,
            "message": "selector and podSelector cannot both be set; choose nodes by selector or by the pods of podSelector",
        },
        {
            "rule": NEVER_HAS_NO_DEADLINE_OR_TTL,
            "message": "completionPolicy.activeDeadlineSeconds and completionPolicy.ttlSecondsAfterFinished must be unset when completionPolicy.type is Never",
            "fieldPath": ".completionPolicy",
        },
        {
            "rule": DEADLINE_COVERS_TIMEOUT,
            "message": "completionPolicy.activeDeadlineSeconds must be at least pullPolicy.timeoutSeconds (default 600); raise the deadline or lower the timeout",
            "fieldPath": ".completionPolicy.activeDeadlineSeconds",
        },
    ])
}
