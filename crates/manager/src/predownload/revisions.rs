//! A workload's revisions (ControllerRevisions; a Deployment's ReplicaSets) decoded, at the
//! watch, into the little the adapters read: name, hash, number, the containers' images, the
//! pre-download marks, the replica count, and a fingerprint of the pod template without what
//! an in-place update may change. The controller holds these instead of the objects: a
//! revision's template is most of its size, and a cluster keeps up to ten revisions per
//! workload. A revision that cannot be read keeps its error, reported for its workload.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::fields::{text, AdapterError, Obj, Result};
use super::model::{
    Revision, CREATED_MARK, DEPLOYMENT_REVISION_ANNOTATION, IGNORED_MARK, MARK_FROM_ANNOTATION,
    POD_TEMPLATE_HASH, REVISION_HASH_LABEL,
};

/// One revision as the controller keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionRecord {
    /// The uid of the object controlling it (of any kind): another workload's is skipped.
    pub controller: Option<String>,
    pub parsed: Result<ParsedRevision, AdapterError>,
}

/// What the adapters read of a revision that could be read.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedRevision {
    /// Labels and annotations hold only the marks [`super::decide`] reads.
    pub rev: Revision,
    /// A fingerprint of the pod template without labels, annotations and container images:
    /// equal for two revisions an in-place update can move between. (64 bits: a collision
    /// would take an unequal pair for equal once in 2^64 comparisons.)
    pub shape: u64,
    /// ReplicaSets: the larger of `spec.replicas` and `status.replicas`; otherwise 0.
    pub replicas: i64,
}

impl RevisionRecord {
    /// A ControllerRevision as JSON: the template is `data.spec.template`.
    pub fn controller_revision(v: &Value) -> Self {
        Self::decode(v, controller_revision)
    }

    /// A Deployment's ReplicaSet as JSON.
    pub fn replica_set(v: &Value) -> Self {
        Self::decode(v, replica_set)
    }

    fn decode(v: &Value, parse: fn(&Obj) -> Result<ParsedRevision>) -> Self {
        let controller = v
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("controller") == Some(&Value::Bool(true)))
            })
            .map(|c| text(c.get("uid")));
        let kind = text(v.get("kind"));
        let kind = if kind.is_empty() { "revision" } else { &kind };
        Self {
            controller,
            parsed: parse(&Obj::new(kind, v)),
        }
    }
}

/// Only the marks: a revision's other labels and annotations are never read.
fn marks(
    mut labels: BTreeMap<String, String>,
    mut annotations: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    labels.retain(|k, _| k == CREATED_MARK || k == IGNORED_MARK);
    annotations.retain(|k, _| k == MARK_FROM_ANNOTATION);
    (labels, annotations)
}

fn controller_revision(obj: &Obj) -> Result<ParsedRevision> {
    let name = obj.required_str(
        "metadata.name",
        "pass revisions as read from the API server",
    )?;
    let labels: BTreeMap<String, String> = obj.read("metadata.labels")?.unwrap_or_default();
    // Older revisions lack the hash label; their name ends in the hash.
    let hash = labels.get(REVISION_HASH_LABEL).cloned();
    let hash = hash.unwrap_or_else(|| name.rsplit_once('-').map_or("", |(_, h)| h).to_string());
    let fix = "pass the revisions written by the workload's controller";
    let at = "data.spec.template";
    let template = obj.get(at).ok_or_else(|| obj.missing(at, fix))?;
    let (labels, annotations) = marks(labels, obj.annotations()?);
    let rev = Revision {
        name: name.to_string(),
        hash,
        number: obj.read("revision")?.unwrap_or(0),
        containers: containers(obj, template, at)?,
        labels,
        annotations,
    };
    Ok(ParsedRevision {
        rev,
        shape: in_place_shape(template),
        replicas: 0,
    })
}

/// A Deployment's ReplicaSet: hash from `pod-template-hash`, number from its annotation.
fn replica_set(obj: &Obj) -> Result<ParsedRevision> {
    let name = obj.required_str(
        "metadata.name",
        "pass ReplicaSets as read from the API server",
    )?;
    let labels: BTreeMap<String, String> = obj.read("metadata.labels")?.unwrap_or_default();
    let hash = labels.get(POD_TEMPLATE_HASH).cloned().ok_or_else(|| {
        let fix = "pass only ReplicaSets created by the Deployment controller";
        obj.missing(&format!("metadata.labels[{POD_TEMPLATE_HASH}]"), fix)
    })?;
    let annotations = obj.annotations()?;
    let number = match annotations.get(DEPLOYMENT_REVISION_ANNOTATION) {
        None => 0,
        Some(s) => s.parse().map_err(|_| {
            let field = format!("metadata.annotations[{DEPLOYMENT_REVISION_ANNOTATION}]");
            obj.invalid(&field, s, "an integer")
        })?,
    };
    let at = "spec.template";
    let template = obj
        .get(at)
        .ok_or_else(|| obj.missing(at, "a ReplicaSet has one"))?;
    let spec: i64 = obj.read("spec.replicas")?.unwrap_or(0);
    let status: i64 = obj.read("status.replicas")?.unwrap_or(0);
    let (labels, annotations) = marks(labels, annotations);
    let rev = Revision {
        name: name.to_string(),
        hash,
        number,
        containers: containers(obj, template, at)?,
        labels,
        annotations,
    };
    Ok(ParsedRevision {
        rev,
        shape: in_place_shape(template),
        replicas: spec.max(status),
    })
}

/// `(name, image)` of a template's `spec.containers`.
fn containers(obj: &Obj, template: &Value, at: &str) -> Result<Vec<(String, String)>> {
    let list = template
        .pointer("/spec/containers")
        .and_then(Value::as_array);
    let mut out = Vec::new();
    for (i, c) in list.into_iter().flatten().enumerate() {
        let field = |f: &str| format!("{at}.spec.containers[{i}].{f}");
        let get = |f: &str| c.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
        let fix = "every container of a revision has a name and an image";
        let name = get("name").ok_or_else(|| obj.missing(&field("name"), fix))?;
        let image = get("image").ok_or_else(|| obj.missing(&field("image"), fix))?;
        out.push((name.to_string(), image.to_string()));
    }
    Ok(out)
}

/// The fingerprint of a template with everything an in-place update may change removed (and
/// the `$patch` marker of a ControllerRevision).
fn in_place_shape(template: &Value) -> u64 {
    let mut t = template.clone();
    if let Some(t) = t.as_object_mut() {
        t.remove("$patch");
    }
    if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
        meta.remove("annotations");
    }
    let containers = t
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut);
    for c in containers.into_iter().flatten() {
        if let Some(c) = c.as_object_mut() {
            c.remove("image");
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_value(&t, &mut h);
    h.finish()
}

/// Hashes JSON with object keys in sorted order, so that equal values hash alike whatever
/// order their keys came in.
fn hash_value(v: &Value, h: &mut impl Hasher) {
    std::mem::discriminant(v).hash(h);
    match v {
        Value::Null => {}
        Value::Bool(b) => b.hash(h),
        Value::Number(n) => n.to_string().hash(h),
        Value::String(s) => s.hash(h),
        Value::Array(a) => {
            a.len().hash(h);
            a.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.len().hash(h);
            for k in keys {
                k.hash(h);
                hash_value(&m[k], h);
            }
        }
    }
}
