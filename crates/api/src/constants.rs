//! Names other components and users depend on: keep them stable and in one place.

/// API group of all three kinds.
pub const GROUP: &str = "apps.kruise.io";
/// The stored version of every kind, and the only one NodeImage serves.
pub const STORAGE_VERSION: &str = "v1beta1";
/// Served for OpenKruise YAML written before v1beta1; same schema, no conversion.
pub const LEGACY_VERSION: &str = "v1alpha1";

/// Field manager of every write by kruise-manager.
pub const MANAGER_FIELD_MANAGER: &str = "kruise-manager";
/// Field manager of every status write by kruise-daemon.
pub const DAEMON_FIELD_MANAGER: &str = "kruise-daemon";

/// Namespace into which the manager copies pull secrets; the only one the daemon reads.
pub const DAEMON_CONFIG_NAMESPACE: &str = "kruise-daemon-config";

/// Sandbox annotation on every CRI pull, so runtimes and P2P agents can tell pre-pulls apart.
pub const PULLING_IMAGE_BY_ANNOTATION: &str = "apps.kruise.io/pulling-image-by";
pub const PULLING_IMAGE_BY_VALUE: &str = "kruise-daemon";

/// Finalizer OpenKruise puts on active jobs so synced secrets are released.
pub const DELETION_PROTECTION_FINALIZER: &str = "apps.kruise.io/deletion-protection";
/// Nodes carrying this label (any value) get a NodeImage that no daemon serves (OpenKruise e2e).
pub const FAKE_NODEIMAGE_LABEL: &str = "apps.kruise.io/fake-nodeimage";
/// Nodes labelled `type=virtual-kubelet` get no NodeImage.
pub const VIRTUAL_KUBELET_LABEL: (&str, &str) = ("type", "virtual-kubelet");

/// Annotations on a synced secret in the daemon namespace (OpenKruise names).
pub const SECRET_SOURCE_KEY_ANNOTATION: &str = "imagepulljobs.kruise.io/source-key";
pub const SECRET_REFERENCES_ANNOTATION: &str = "imagepulljobs.kruise.io/references";
pub const SECRET_MODE_ANNOTATION: &str = "imagepulljobs.kruise.io/mode";
/// `ReferenceObject.mode` of a secret synced once per source secret.
pub const SECRET_MODE_BATCH: &str = "batch";

/// Event reasons (OpenKruise's).
pub const REASON_PULL_IMAGE_SUCCEED: &str = "PullImageSucceed";
pub const REASON_PULL_IMAGE_FAILED: &str = "PullImageFailed";

/// Defaults shared by the CRD schema and the code that reads objects written without them.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 600;
pub const DEFAULT_BACKOFF_LIMIT: i32 = 3;
/// The most images a NodeImage may hold (OpenKruise's limit).
pub const MAX_IMAGES_PER_NODEIMAGE: usize = 256;
/// The most images an ImageListPullJob may list (OpenKruise refuses 256 and more).
pub const MAX_IMAGES_PER_LIST_JOB: usize = 255;
/// Longest accepted image reference; distribution caps the name at 255 characters.
pub const MAX_IMAGE_REFERENCE_LENGTH: usize = 512;
