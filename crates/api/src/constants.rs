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
/// On a copy: the resourceVersion of the source it was copied from (the manager reads sources'
/// data only when it copies them, so this is how it knows a copy is current).
pub const SECRET_SOURCE_VERSION_ANNOTATION: &str =
    "imagepulljobs.kruise.io/source-resource-version";
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

/// Rollout pre-download (the manager's `predownload` controller), OpenKruise's names where it
/// has them.
/// On the update revision: its jobs were all created (OpenKruise's spelling, typo included, so
/// a revision OpenKruise marked is recognised).
pub const CREATED_MARK: &str = "apps.kruise.io/pre-predownload-created";
/// On the update revision: pre-download was decided against for it.
pub const IGNORED_MARK: &str = "apps.kruise.io/image-predownload-ignored";
/// Next to a mark we write: the current revision when it was written. A mark is only valid
/// for the rollout it was written for; a rollback to a marked revision starts a new one
/// (OpenKruise #1419). OpenKruise never writes it, so its marks are respected as they are.
pub const MARK_FROM_ANNOTATION: &str = "apps.kruise.io/image-predownload-from";
/// On our jobs: the update revision they pull for (see the manager's `revision_label_value`).
pub const JOB_REVISION_LABEL: &str = "apps.kruise.io/image-predownload-revision";
/// On our jobs: the nodes in the order the workload will update their pods.
pub const NODE_ORDER_ANNOTATION: &str = "apps.kruise.io/image-predownload-node-order";
/// On an apps/v1 workload: `"true"` opts in, `"false"` opts out of the cluster-wide switch.
pub const OPT_IN_ANNOTATION: &str = "apps.kruise.io/image-predownload";
/// OpenKruise's knobs as annotations (all kinds; CloneSet v1beta1 also has fields).
pub const MIN_UPDATED_READY_ANNOTATION: &str =
    "apps.kruise.io/image-predownload-min-updated-ready-pods";
pub const PARALLELISM_ANNOTATION: &str = "apps.kruise.io/image-predownload-parallelism";
pub const TIMEOUT_ANNOTATION: &str = "apps.kruise.io/image-predownload-timeout-seconds";

/// Node guarantees (pinning, disk space, one digest per job).
/// On an ImagePullJob: `"false"` keeps a `Never` job's image unpinned, `"true"` pins an `Always`
/// job's image until its TTL removes the tag.
pub const PIN_ANNOTATION: &str = "imagepulljobs.kruise.io/pin";
/// The containerd image label its CRI plugin reads as "pinned" (kubelet GC skips the image).
pub const CONTAINERD_PINNED_LABEL: &str = "io.cri-containerd.pinned";
pub const CONTAINERD_PINNED_VALUE: &str = "pinned";
/// Next to the pinned label, on images kruise-daemon pinned: a restarted daemon unpins only these.
pub const PINNED_BY_LABEL: &str = "imagepulljobs.kruise.io/pinned-by";
/// Event reasons of the node guarantees.
pub const REASON_IMAGE_FS_FULL: &str = "ImageFsSpaceInsufficient";
pub const REASON_DIGEST_MOVED: &str = "DigestMoved";
pub const REASON_DIGEST_RESOLVED: &str = "DigestResolved";
