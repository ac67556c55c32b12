//! NodeImage specs and statuses as the engine holds them. Names, owner references, pull policies,
//! sandbox configs and secret references are shared (interned) across the fleet, so 150,000
//! placed tags take tens of MiB instead of the hundreds the API types would; a status keeps only
//! what decisions read (per tag: its version, whether the daemon answered, succeeded or failed,
//! the digest it holds, and the bytes it took from the registry and from peers), so a progress
//! report changes nothing. Converted back to the API types only for the images a patch carries.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kruise_api::{
    ImagePullPolicy, ImageSpec, ImageTagPullPolicy, ImageTagSpec, NodeImageSpec, NodeImageStatus,
    PeerSource, ReferenceObject, SandboxConfig, TagPhase,
};
use serde_json::Value;

/// An interned string: node, job, image and tag names.
pub type Name = Arc<str>;

/// An owner reference of a tag (an ImagePullJob, or whatever else wrote one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub api_version: Option<Name>,
    pub kind: Option<Name>,
    pub name: Option<Name>,
    pub namespace: Option<Name>,
    pub uid: Option<Name>,
    pub resource_version: Option<Name>,
    pub field_path: Option<Name>,
}

impl Owner {
    /// An ImagePullJob of `apps.kruise.io`, any version (OpenKruise writes v1beta1, once v1alpha1).
    pub fn is_job(&self) -> bool {
        self.kind.as_deref() == Some("ImagePullJob")
            && self
                .api_version
                .as_deref()
                .is_some_and(|a| a.starts_with("apps.kruise.io/"))
    }

    pub fn to_api(&self) -> ObjectReference {
        let s = |v: &Option<Name>| v.as_deref().map(str::to_string);
        ObjectReference {
            api_version: s(&self.api_version),
            kind: s(&self.kind),
            name: s(&self.name),
            namespace: s(&self.namespace),
            uid: s(&self.uid),
            resource_version: s(&self.resource_version),
            field_path: s(&self.field_path),
        }
    }
}

/// Shared copies of values many tags repeat. Entries nobody else holds are dropped by
/// [`Interner::collect`].
#[derive(Default)]
pub struct Interner {
    names: HashSet<Name>,
    owners: HashSet<Arc<Owner>>,
    policies: HashSet<Arc<ImageTagPullPolicy>>,
    sandboxes: HashSet<Arc<SandboxConfig>>,
    secrets: HashSet<Arc<ReferenceObject>>,
    sources: HashSet<Arc<Source>>,
}

fn intern<T: Eq + Hash + ?Sized>(
    set: &mut HashSet<Arc<T>>,
    value: &T,
    make: impl FnOnce() -> Arc<T>,
) -> Arc<T> {
    if let Some(v) = set.get(value) {
        return v.clone();
    }
    let v = make();
    set.insert(v.clone());
    v
}

impl Interner {
    pub fn name(&mut self, s: &str) -> Name {
        intern(&mut self.names, s, || Arc::from(s))
    }

    fn opt(&mut self, s: &Option<String>) -> Option<Name> {
        s.as_deref().map(|s| self.name(s))
    }

    pub fn owner(&mut self, r: &ObjectReference) -> Arc<Owner> {
        let o = Owner {
            api_version: self.opt(&r.api_version),
            kind: self.opt(&r.kind),
            name: self.opt(&r.name),
            namespace: self.opt(&r.namespace),
            uid: self.opt(&r.uid),
            resource_version: self.opt(&r.resource_version),
            field_path: self.opt(&r.field_path),
        };
        intern(&mut self.owners, &o, || Arc::new(o.clone()))
    }

    pub fn policy(&mut self, p: &ImageTagPullPolicy) -> Arc<ImageTagPullPolicy> {
        intern(&mut self.policies, p, || Arc::new(p.clone()))
    }

    pub fn sandbox(&mut self, s: &SandboxConfig) -> Arc<SandboxConfig> {
        intern(&mut self.sandboxes, s, || Arc::new(s.clone()))
    }

    pub fn secret(&mut self, r: &ReferenceObject) -> Arc<ReferenceObject> {
        intern(&mut self.secrets, r, || Arc::new(r.clone()))
    }

    /// A peer as entries name it: one shared copy per seed and address, however many entries
    /// copy from it.
    pub fn source(&mut self, node: &str, address: &str) -> Arc<Source> {
        let s = Source {
            node: self.name(node),
            address: self.name(address),
        };
        intern(&mut self.sources, &s, || Arc::new(s.clone()))
    }

    /// Forgets values only the interner still holds (a deleted job's owner reference).
    pub fn collect(&mut self) {
        // Owners and sources hold names: they go first.
        self.owners.retain(|v| Arc::strong_count(v) > 1);
        self.sources.retain(|v| Arc::strong_count(v) > 1);
        self.names.retain(|v| Arc::strong_count(v) > 1);
        self.policies.retain(|v| Arc::strong_count(v) > 1);
        self.sandboxes.retain(|v| Arc::strong_count(v) > 1);
        self.secrets.retain(|v| Arc::strong_count(v) > 1);
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.names.len()
            + self.owners.len()
            + self.policies.len()
            + self.sandboxes.len()
            + self.secrets.len()
            + self.sources.len()
    }
}

/// A peer an entry copies from: its node, and the address its daemon serves blobs on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub node: Name,
    pub address: Name,
}

/// The peers an entry names, the primary first. `None` for a registry pull, which is most
/// entries: a thin pointer, so an entry without peers costs 8 bytes for it and no allocation.
pub type Sources = Option<Box<smallvec::SmallVec<[Arc<Source>; 3]>>>;

/// A tag's owner references.
pub type Owners = smallvec::SmallVec<[Arc<Owner>; 1]>;

/// One tag entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Tag {
    pub tag: Name,
    pub created_at: Option<Timestamp>,
    pub pull_policy: Option<Arc<ImageTagPullPolicy>>,
    /// Almost always one: kept inline, which saves an allocation per placed tag.
    pub owners: Owners,
    pub version: i64,
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// The digest the owning job resolved the tag to.
    pub digest: Option<Name>,
    /// Some owner wants the image pinned.
    pub pin: bool,
    /// The peers to copy from, written when the entry's pull round starts (created or version
    /// bumped) and left as they are after it (see `peers`).
    pub sources: Sources,
}

impl Tag {
    pub fn owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|o| o.uid.as_deref() == Some(uid))
    }

    /// The peers to copy from, the primary first; empty for a registry pull.
    pub fn sources(&self) -> &[Arc<Source>] {
        self.sources.as_deref().map_or(&[], |s| s.as_slice())
    }

    /// Names `sources` (none: `None`, no allocation).
    pub fn set_sources(&mut self, sources: &[Arc<Source>]) {
        self.sources = (!sources.is_empty()).then(|| Box::new(sources.iter().cloned().collect()));
    }
}

/// The tags of one image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub pull_secrets: Vec<Arc<ReferenceObject>>,
    /// Almost always one: kept inline, which saves an allocation per image.
    pub tags: smallvec::SmallVec<[Tag; 1]>,
    pub sandbox_config: Option<Arc<SandboxConfig>>,
}

impl Image {
    pub fn tag(&self, tag: &str) -> Option<&Tag> {
        self.tags.iter().find(|t| &*t.tag == tag)
    }

    pub fn tag_mut(&mut self, tag: &str) -> Option<&mut Tag> {
        self.tags.iter_mut().find(|t| &*t.tag == tag)
    }

    pub fn to_api(&self) -> ImageSpec {
        ImageSpec {
            pull_secrets: self.pull_secrets.iter().map(|r| (**r).clone()).collect(),
            tags: self
                .tags
                .iter()
                .map(|t| ImageTagSpec {
                    tag: t.tag.to_string(),
                    created_at: t.created_at.map(Time),
                    pull_policy: t.pull_policy.as_deref().cloned(),
                    owner_references: t.owners.iter().map(|o| o.to_api()).collect(),
                    version: t.version,
                    image_pull_policy: t.image_pull_policy,
                    digest: t.digest.as_deref().map(str::to_string),
                    pin: t.pin,
                    sources: t
                        .sources()
                        .iter()
                        .map(|s| PeerSource {
                            node: s.node.to_string(),
                            address: s.address.to_string(),
                        })
                        .collect(),
                })
                .collect(),
            sandbox_config: self.sandbox_config.as_deref().cloned(),
        }
    }
}

/// A NodeImage spec: images sorted by key, in one allocation per node (a B-tree's nodes cost
/// a third more at the few dozen images a node holds).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spec(Vec<(Name, Image)>);

impl Spec {
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Image> {
        self.find(key).ok().map(|n| &self.0[n].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Image> {
        self.find(key).ok().map(|n| &mut self.0[n].1)
    }

    /// The image at `key`, added empty if absent.
    pub fn image_mut(&mut self, key: &Name) -> &mut Image {
        let n = self.find(key).unwrap_or_else(|n| {
            self.0.insert(n, (key.clone(), Image::default()));
            n
        });
        &mut self.0[n].1
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Image)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Name, &mut Image)> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Name> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Image> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Image> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    /// Drops the images that lost their last tag.
    pub fn drop_empty(&mut self) {
        self.0.retain(|(_, i)| !i.tags.is_empty());
    }
}

impl FromIterator<(Name, Image)> for Spec {
    /// Images in any order; of two with one key, the last counts.
    fn from_iter<I: IntoIterator<Item = (Name, Image)>>(images: I) -> Self {
        let mut images: Vec<_> = images.into_iter().collect();
        images.reverse();
        images.sort_by(|a, b| a.0.cmp(&b.0));
        images.dedup_by(|a, b| a.0 == b.0);
        Self(images)
    }
}

impl std::ops::Index<&str> for Spec {
    type Output = Image;

    fn index(&self, key: &str) -> &Image {
        self.get(key).expect("an image of the spec")
    }
}

pub fn spec_from_api(spec: &NodeImageSpec, i: &mut Interner) -> Spec {
    spec.images
        .iter()
        .map(|(key, image)| {
            let tags = image
                .tags
                .iter()
                .map(|t| Tag {
                    sources: (!t.sources.is_empty()).then(|| {
                        let list = t.sources.iter().map(|s| i.source(&s.node, &s.address));
                        Box::new(list.collect())
                    }),
                    tag: i.name(&t.tag),
                    created_at: t.created_at.as_ref().map(|c| c.0),
                    pull_policy: t.pull_policy.as_ref().map(|p| i.policy(p)),
                    owners: t.owner_references.iter().map(|r| i.owner(r)).collect(),
                    version: t.version,
                    image_pull_policy: t.image_pull_policy,
                    digest: t.digest.as_deref().map(|d| i.name(d)),
                    pin: t.pin,
                })
                .collect();
            let image = Image {
                pull_secrets: image.pull_secrets.iter().map(|r| i.secret(r)).collect(),
                tags,
                sandbox_config: image.sandbox_config.as_ref().map(|s| i.sandbox(s)),
            };
            (i.name(key), image)
        })
        .collect()
}

/// What the daemon said about one tag, as far as decisions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Waiting or pulling: the daemon answered, no result yet.
    Answered,
    Succeeded,
    Failed,
}

/// A tag's last report: the spec version it is about, and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub version: i64,
    pub outcome: Outcome,
    /// The manifest digest the node reports holding (after a success).
    pub digest: Option<Name>,
    /// What the pull took from the registry and from peers (the job status sums them over the
    /// nodes that succeeded). Not a decision: a change of bytes alone replans nothing.
    pub bytes: Bytes,
}

impl Report {
    /// The same as far as decisions go (the bytes aside).
    fn same_result(&self, other: &Report) -> bool {
        self.version == other.version
            && self.outcome == other.outcome
            && self.digest == other.digest
    }
}

/// Bytes of one pull, or their sum over a job's nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub registry: u64,
    pub peer: u64,
}

impl Bytes {
    pub fn is_zero(self) -> bool {
        self == Bytes::default()
    }

    pub fn add(&mut self, other: Bytes) {
        self.registry = self.registry.saturating_add(other.registry);
        self.peer = self.peer.saturating_add(other.peer);
    }

    pub fn sub(&mut self, other: Bytes) {
        self.registry = self.registry.saturating_sub(other.registry);
        self.peer = self.peer.saturating_sub(other.peer);
    }
}

/// The daemon's reports by `(image key, tag)`, sorted: a node's few dozen reports take one
/// allocation of 80 bytes each (a hash map took twice that), found by binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status(Box<[(Name, Name, Report)]>);

impl Status {
    pub fn get(&self, key: &str, tag: &str) -> Option<Report> {
        self.get_ref(key, tag).cloned()
    }

    pub fn get_ref(&self, key: &str, tag: &str) -> Option<&Report> {
        self.0
            .binary_search_by(|(k, t, _)| (&**k, &**t).cmp(&(key, tag)))
            .ok()
            .map(|n| &self.0[n].2)
    }

    /// The same reports as far as decisions go: only bytes may differ.
    pub fn same_results(&self, other: &Status) -> bool {
        self.0.len() == other.0.len()
            && (self.0.iter().zip(other.0.iter()))
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && a.2.same_result(&b.2))
    }

    /// From reports in any order; of two about one tag, the last counts.
    fn from_reports(mut reports: Vec<(Name, Name, Report)>) -> Self {
        reports.reverse();
        reports.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        reports.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        Self(reports.into_boxed_slice())
    }
}

pub fn status_from_api(status: Option<&NodeImageStatus>, i: &mut Interner) -> Status {
    let mut reports = Vec::new();
    for (key, image) in status.map(|s| &s.image_statuses).into_iter().flatten() {
        for t in &image.tags {
            let outcome = match t.phase {
                TagPhase::Succeeded => Outcome::Succeeded,
                TagPhase::Failed => Outcome::Failed,
                TagPhase::Waiting | TagPhase::Pulling => Outcome::Answered,
            };
            let peer = t.peer_bytes.iter().map(|p| p.bytes.max(0) as u64);
            let report = Report {
                version: t.version,
                outcome,
                digest: t.digest.as_deref().map(|d| i.name(d)),
                bytes: Bytes {
                    registry: t.registry_bytes.max(0) as u64,
                    peer: peer.fold(0u64, u64::saturating_add),
                },
            };
            reports.push((i.name(key), i.name(&t.tag), report));
        }
    }
    Status::from_reports(reports)
}

/// A merge patch of `spec.images` from `old` to `new`: changed images in full, removed ones null.
pub fn images_patch(old: &Spec, new: &Spec) -> Value {
    let mut images = serde_json::Map::new();
    for (k, v) in new.iter() {
        if old.get(k) != Some(v) {
            images.insert(
                k.to_string(),
                serde_json::to_value(v.to_api()).expect("an image spec serialises"),
            );
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(k)) {
        images.insert(k.to_string(), Value::Null);
    }
    Value::Object(images)
}

/// The whole spec in API form (a NodeImage created with tags already planned).
pub fn spec_to_api(spec: &Spec) -> NodeImageSpec {
    NodeImageSpec {
        images: spec
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_api()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_round_trip_and_share_what_repeats() {
        let api: NodeImageSpec = serde_json::from_value(json!({"images": {
            "nginx": {"pullSecrets": [{"namespace": "kruise-daemon-config", "name": "s", "mode": "batch"}],
                "sandboxConfig": {"labels": {"a": "b"}},
                "tags": [{"tag": "1", "createdAt": "2026-11-26T10:00:00Z", "version": 2, "imagePullPolicy": "Always",
                    "sources": [{"node": "n1", "address": "10.0.0.1:9000"}, {"node": "n2", "address": "[fd00::2]:9000"}],
                    "pullPolicy": {"timeoutSeconds": 30, "ttlSecondsAfterFinished": 86400},
                    "ownerReferences": [{"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "name": "j", "namespace": "ns", "uid": "u"}]}]},
        }}))
        .unwrap();
        let mut i = Interner::default();
        let a = spec_from_api(&api, &mut i);
        let b = spec_from_api(&api, &mut i);
        assert_eq!(
            spec_to_api(&a),
            api,
            "nothing lost, unknown OpenKruise fields included"
        );
        assert!(Arc::ptr_eq(
            &a["nginx"].tags[0].owners[0],
            &b["nginx"].tags[0].owners[0]
        ));
        assert!(a["nginx"].tags[0].owners[0].is_job());
        drop((a, b));
        i.collect();
        assert_eq!(i.len(), 0, "nothing is held once no spec uses it");
    }

    #[test]
    fn what_every_tag_pays_stays_small() {
        // An entry without peers pays a null pointer for them; a report, its two byte counts.
        assert_eq!(std::mem::size_of::<Sources>(), 8);
        assert_eq!(std::mem::size_of::<(Name, Name, Report)>(), 80);
    }

    #[test]
    fn patches_carry_only_changed_images() {
        let mut i = Interner::default();
        let mut spec = |v: Value| spec_from_api(&serde_json::from_value(v).unwrap(), &mut i);
        let old =
            spec(json!({"images": {"a": {"tags": [{"tag": "1"}]}, "b": {"tags": [{"tag": "1"}]}}}));
        let new =
            spec(json!({"images": {"a": {"tags": [{"tag": "1"}]}, "c": {"tags": [{"tag": "2"}]}}}));
        assert_eq!(
            images_patch(&old, &new),
            json!({"b": null, "c": {"tags": [{"tag": "2"}]}})
        );
    }
}
