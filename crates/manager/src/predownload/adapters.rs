//! One adapter per workload kind, from the workload's JSON and its revisions (ControllerRevisions;
//! ReplicaSets for a Deployment), decoded by [`super::revisions`], to a [`Rollout`]. Every field that
//! cannot be read becomes an [`AdapterError`] naming the object, the field and the fix; no
//! value is guessed. Defaults and roundings are those of the kind's own controller, except
//! where OpenKruise's pre-download code decides otherwise (noted where it happens).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kruise_api::ImagePullJobPodSelector;
use serde_json::Value;

pub use super::fields::AdapterError;
use super::fields::{pct, text, Obj, Result};
use super::layout::{layout, Layout};
use super::model::{
    Kind, Rollout, CONTROLLER_REVISION_HASH, MIN_UPDATED_READY_ANNOTATION, OPT_IN_ANNOTATION,
    PARALLELISM_ANNOTATION, POD_TEMPLATE_HASH, TIMEOUT_ANNOTATION,
};
use super::revisions::{ParsedRevision, RevisionRecord};

/// The kind of a workload object from its `apiVersion` and `kind`, if pre-download knows it.
pub fn kind_of(workload: &Value) -> Option<Kind> {
    let api_version = workload.get("apiVersion")?.as_str()?;
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, workload.get("kind")?.as_str()?) {
        ("apps.kruise.io", "CloneSet") => Some(Kind::CloneSet),
        ("apps.kruise.io", "StatefulSet") => Some(Kind::AdvancedStatefulSet),
        ("apps.kruise.io", "DaemonSet") => Some(Kind::AdvancedDaemonSet),
        ("apps", "Deployment") if api_version == "apps/v1" => Some(Kind::Deployment),
        ("apps", "StatefulSet") if api_version == "apps/v1" => Some(Kind::StatefulSet),
        ("apps", "DaemonSet") if api_version == "apps/v1" => Some(Kind::DaemonSet),
        _ => None,
    }
}

/// The rollout of `workload` (a whole object, as JSON) given its `revisions`: the
/// ControllerRevisions it owns, or for a Deployment its ReplicaSets. Revisions controlled by
/// another object are skipped. `cluster_wide_opt_in` opts apps/v1 workloads in unless they
/// say `apps.kruise.io/image-predownload: "false"`.
pub fn adapt(workload: &Value, revisions: &[Value], cluster_wide_opt_in: bool) -> Result<Rollout> {
    let decode = match kind_of(workload) {
        Some(Kind::Deployment) => RevisionRecord::replica_set,
        _ => RevisionRecord::controller_revision,
    };
    let records: Vec<RevisionRecord> = revisions.iter().map(decode).collect();
    let records: Vec<&RevisionRecord> = records.iter().collect();
    adapt_decoded(workload, &records, cluster_wide_opt_in)
}

/// [`adapt`] with the revisions already decoded (as the controller keeps them).
pub fn adapt_decoded(
    workload: &Value,
    revisions: &[&RevisionRecord],
    cluster_wide_opt_in: bool,
) -> Result<Rollout> {
    let kind = kind_of(workload).ok_or_else(|| AdapterError::Unsupported {
        api_version: text(workload.get("apiVersion")),
        kind: text(workload.get("kind")),
    })?;
    let obj = Obj::new(kind.api_kind(), workload);
    let mut r = base(kind, &obj)?;
    match kind {
        Kind::CloneSet => cloneset(&obj, &mut r, revisions)?,
        Kind::AdvancedStatefulSet => advanced_statefulset(&obj, &mut r, revisions)?,
        Kind::AdvancedDaemonSet => daemonset(&obj, &mut r, revisions)?,
        Kind::Deployment => deployment(&obj, &mut r, revisions)?,
        Kind::StatefulSet => statefulset(&obj, &mut r, revisions)?,
        Kind::DaemonSet => daemonset(&obj, &mut r, revisions)?,
    }
    r.opted_in = kind.is_kruise()
        || match obj
            .annotations()?
            .get(OPT_IN_ANNOTATION)
            .map(String::as_str)
        {
            Some("true") => true,
            Some("false") => false,
            _ => cluster_wide_opt_in,
        };
    Ok(r)
}

/// What every kind shares: identity, selector, template metadata and pull secrets.
fn base(kind: Kind, obj: &Obj) -> Result<Rollout> {
    const FROM_SERVER: &str = "pass the object as read from the API server";
    let secrets: Vec<Value> = obj
        .read("spec.template.spec.imagePullSecrets")?
        .unwrap_or_default();
    let pull_secrets = secrets
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    Ok(Rollout {
        kind,
        api_version: obj.required_str("apiVersion", FROM_SERVER)?.to_string(),
        namespace: obj
            .required_str("metadata.namespace", FROM_SERVER)?
            .to_string(),
        name: obj.required_str("metadata.name", FROM_SERVER)?.to_string(),
        uid: obj.required_str("metadata.uid", FROM_SERVER)?.to_string(),
        selector: selector(obj)?,
        in_place: true,
        status_current: true,
        max_unavailable: 1,
        template_labels: obj
            .read("spec.template.metadata.labels")?
            .unwrap_or_default(),
        template_annotations: obj
            .read("spec.template.metadata.annotations")?
            .unwrap_or_default(),
        pull_secrets,
        revision_key: match kind {
            Kind::Deployment => POD_TEMPLATE_HASH,
            _ => CONTROLLER_REVISION_HASH,
        }
        .to_string(),
        ..Rollout::default()
    })
}

/// The layout of the OpenKruise workload `r`'s own apiVersion; an unknown version is refused.
fn kruise_layout(r: &Rollout) -> Result<Layout> {
    let version = r.api_version.rsplit_once('/').map_or("", |(_, v)| v);
    layout(r.kind, version).ok_or_else(|| AdapterError::Unsupported {
        api_version: r.api_version.clone(),
        kind: r.kind.api_kind().to_string(),
    })
}

/// CloneSet: v1alpha1 keeps partition, maxUnavailable and the knobs directly under
/// `updateStrategy` (policy in `type`), v1beta1 under `updateStrategy.rollingUpdate` (policy in
/// `podUpdatePolicy`); the knob annotations apply where the fields are unset.
fn cloneset(obj: &Obj, r: &mut Rollout, revisions: &[&RevisionRecord]) -> Result<()> {
    let at = kruise_layout(r)?;
    r.replicas = obj.i32_or("spec.replicas", 1)?;
    r.partition = obj.percent(at.partition, IntOrString::Int(0), r.replicas, true)?;
    // OpenKruise's pre-download rounds maxUnavailable down.
    r.max_unavailable = obj.percent(at.max_unavailable, pct("20%"), r.replicas, false)?;
    let policy = obj.pod_update_policy(at.policy.as_slice())?;
    knobs(obj, r, at.knobs.as_slice())?;
    set_like(obj, r, revisions, at.updated_ready)?;
    r.in_place = policy && r.in_place;
    Ok(())
}

/// Advanced StatefulSet (apps.kruise.io StatefulSet): the same layout in both versions; only
/// v1beta1's status counts updated ready pods.
fn advanced_statefulset(obj: &Obj, r: &mut Rollout, revisions: &[&RevisionRecord]) -> Result<()> {
    let at = kruise_layout(r)?;
    r.replicas = obj.i32_or("spec.replicas", 1)?;
    let on_delete = obj.str("spec.updateStrategy.type")? == Some("OnDelete");
    let has_rolling = obj.get("spec.updateStrategy.rollingUpdate").is_some();
    r.partition = obj.percent(at.partition, IntOrString::Int(0), r.replicas, true)?;
    // OpenKruise's pre-download rounds maxUnavailable down, default 1.
    let one = IntOrString::Int(1);
    r.max_unavailable = obj
        .percent(at.max_unavailable, one, r.replicas, false)?
        .max(1);
    let policy = obj.pod_update_policy(at.policy.as_slice())?;
    knobs(obj, r, at.knobs.as_slice())?;
    set_like(obj, r, revisions, at.updated_ready)?;
    r.in_place = !on_delete && has_rolling && policy && r.in_place;
    Ok(())
}

/// apps/v1 StatefulSet. OnDelete still pre-downloads: its pods are updated when deleted.
fn statefulset(obj: &Obj, r: &mut Rollout, revisions: &[&RevisionRecord]) -> Result<()> {
    r.replicas = obj.i32_or("spec.replicas", 1)?;
    let rolling = "spec.updateStrategy.rollingUpdate";
    r.partition = obj.percent(
        &format!("{rolling}.partition"),
        IntOrString::Int(0),
        r.replicas,
        true,
    )?;
    // Kubernetes rounds a StatefulSet's maxUnavailable up (at least 1).
    let field = format!("{rolling}.maxUnavailable");
    r.max_unavailable = obj
        .percent(&field, IntOrString::Int(1), r.replicas, true)?
        .max(1);
    knobs(obj, r, &[])?;
    set_like(obj, r, revisions, None)?;
    r.in_place = true;
    Ok(())
}

/// Advanced DaemonSet and apps/v1 DaemonSet: one pod per node, `desiredNumberScheduled` of them.
/// OpenKruise ignores the min-updated-ready annotation for Advanced DaemonSets; this reads it.
fn daemonset(obj: &Obj, r: &mut Rollout, revisions: &[&RevisionRecord]) -> Result<()> {
    r.replicas = obj.i32_or("status.desiredNumberScheduled", 0)?;
    // apps/v1 has no partition and no layout of OpenKruise's.
    let at = match r.kind {
        Kind::AdvancedDaemonSet => Some(kruise_layout(r)?),
        _ => None,
    };
    let rolling = "spec.updateStrategy.rollingUpdate";
    // The Advanced DaemonSet controller rounds a percent partition down.
    let field = format!("{rolling}.partition");
    r.partition = obj.percent(&field, IntOrString::Int(0), r.replicas, false)?;
    // Both DaemonSet controllers round maxUnavailable up.
    let field = format!("{rolling}.maxUnavailable");
    r.max_unavailable = obj
        .percent(&field, IntOrString::Int(1), r.replicas, true)?
        .max(1);
    knobs(obj, r, &[])?;
    let parsed = parse_all(obj, revisions)?;
    let generation_seen = observed(obj)?;
    let (update, olds) = split_newest(parsed);
    r.current_revision = olds
        .iter()
        .max_by_key(|p| p.rev.number)
        .map(|p| p.rev.name.clone());
    // Advanced DaemonSet only: the hash its controller rolls out.
    let hash = match at.and_then(|at| at.update_hash) {
        Some(field) => obj.str(field)?,
        None => None,
    };
    let hash_current = hash.is_none_or(|h| update.as_ref().is_some_and(|u| u.rev.owns(h)));
    r.complete = generation_seen
        && hash_current
        && obj.i32_or("status.updatedNumberScheduled", 0)? >= r.replicas;
    // Until the controller has seen the spec, the newest revision may be the old template.
    install(r, update.filter(|_| generation_seen), olds);
    Ok(())
}

/// apps/v1 Deployment: the newest ReplicaSet is the update revision, the others are old.
fn deployment(obj: &Obj, r: &mut Rollout, revisions: &[&RevisionRecord]) -> Result<()> {
    r.replicas = obj.i32_or("spec.replicas", 1)?;
    r.max_unavailable = if obj.str("spec.strategy.type")? == Some("Recreate") {
        r.replicas // every pod goes at once
    } else {
        let rolling = "spec.strategy.rollingUpdate";
        let field = format!("{rolling}.maxUnavailable");
        let unavailable = obj.percent(&field, pct("25%"), r.replicas, false)?;
        let field = format!("{rolling}.maxSurge");
        let surge = obj.percent(&field, pct("25%"), r.replicas, true)?;
        // Kubernetes: both zero would deadlock, so maxUnavailable becomes 1.
        unavailable.max(i32::from(surge == 0))
    };
    knobs(obj, r, &[])?;
    let parsed = parse_all(obj, revisions)?;
    let generation_seen = observed(obj)?;
    let (update, olds) = split_newest(parsed);
    let scaled_up = olds.iter().filter(|p| p.replicas > 0);
    r.current_revision = scaled_up
        .max_by_key(|p| p.rev.number)
        .map(|p| p.rev.name.clone());
    let updated = obj.i32_or("status.updatedReplicas", 0)?;
    r.complete =
        generation_seen && updated >= r.replicas && obj.i32_or("status.replicas", 0)? <= updated;
    install(r, update.filter(|_| generation_seen), olds);
    Ok(())
}

/// Revisions and status of the kinds with `status.updateRevision` and `currentRevision`
/// (CloneSet, both StatefulSets). As OpenKruise does, the update revision is the newest
/// ControllerRevision, and a status naming another one is stale: its updated-ready count is 0.
/// `updated_ready` is where the status counts updated ready pods (`None`: counted from pods).
fn set_like(
    obj: &Obj,
    r: &mut Rollout,
    revisions: &[&RevisionRecord],
    updated_ready: Option<&str>,
) -> Result<()> {
    let parsed = parse_all(obj, revisions)?;
    let status_update = obj.str("status.updateRevision")?.map(str::to_string);
    r.current_revision = obj.str("status.currentRevision")?.map(str::to_string);
    let generation_seen = observed(obj)?;
    let (update, olds) = split_newest(parsed);
    let fresh = update
        .as_ref()
        .is_some_and(|u| status_update.as_deref() == Some(u.rev.name.as_str()));
    r.status_current = fresh;
    r.updated_ready = match (updated_ready, fresh) {
        (_, false) => Some(0),
        (Some(field), true) => Some(obj.i32_or(field, 0)?),
        (None, true) => None, // counted from the pods
    };
    let updated = obj.i32_or("status.updatedReplicas", 0)?;
    let all_updated = updated >= r.replicas && obj.i32_or("status.replicas", 0)? <= updated;
    r.complete = generation_seen && fresh && (r.current_revision == status_update || all_updated);
    if let Some(u) = &update {
        r.in_place = only_images_differ(r.current_revision.as_deref(), u, &olds);
    }
    install(r, update, olds);
    Ok(())
}

fn install(r: &mut Rollout, update: Option<Parsed>, olds: Vec<Parsed>) {
    r.update_revision = update.map(|p| p.rev);
    r.old_revisions = olds.into_iter().map(|p| p.rev).collect();
}

/// Whether the update template differs from the current one (or, if that is not listed,
/// from every other revision) only in container images, labels and annotations: what an
/// in-place update can change.
fn only_images_differ(current: Option<&str>, update: &Parsed, olds: &[Parsed]) -> bool {
    let new = update.shape;
    let mut against = olds
        .iter()
        .filter(|p| Some(p.rev.name.as_str()) == current)
        .peekable();
    if against.peek().is_some() {
        return against.all(|p| p.shape == new);
    }
    olds.iter().all(|p| p.shape == new)
}

/// The three pre-download knobs: a field under one of `field_prefixes` if set, otherwise
/// OpenKruise's annotation.
fn knobs(obj: &Obj, r: &mut Rollout, field_prefixes: &[&str]) -> Result<()> {
    let knob = |field: &str, annotation: &str| -> Result<Option<(String, IntOrString)>> {
        for prefix in field_prefixes {
            let path = format!("{prefix}.{field}");
            if let Some(v) = obj.int_or_string(&path)? {
                return Ok(Some((path, v)));
            }
        }
        let value = obj.annotations()?.remove(annotation);
        Ok(value.map(|v| {
            (
                format!("metadata.annotations[{annotation}]"),
                IntOrString::String(v),
            )
        }))
    };
    if let Some((field, v)) = knob(
        "imagePreDownloadMinUpdatedReadyPods",
        MIN_UPDATED_READY_ANNOTATION,
    )? {
        r.min_updated_ready = obj.scaled(&field, v, r.replicas, true)?;
    }
    if let Some((field, v)) = knob("imagePreDownloadParallelism", PARALLELISM_ANNOTATION)? {
        r.parallelism =
            Some(obj.plain_int(&field, &v, 0, "a non-negative integer (no percent)")?);
    }
    if let Some((field, v)) = knob("imagePreDownloadTimeoutSeconds", TIMEOUT_ANNOTATION)? {
        r.timeout_seconds = Some(obj.plain_int(&field, &v, 1, "a positive number of seconds")?);
    }
    Ok(())
}

/// `status.observedGeneration` has caught up with `metadata.generation`.
fn observed(obj: &Obj) -> Result<bool> {
    let generation: i64 = obj.read("metadata.generation")?.unwrap_or(0);
    Ok(obj.read::<i64>("status.observedGeneration")?.unwrap_or(0) >= generation)
}

type Parsed = ParsedRevision;

/// The owner's revisions that could be read; the first that could not is the error.
fn parse_all(owner: &Obj, revisions: &[&RevisionRecord]) -> Result<Vec<Parsed>> {
    let owner_uid = owner.str("metadata.uid")?;
    let mut out = Vec::new();
    for r in revisions {
        if r.controller
            .as_deref()
            .is_some_and(|c| Some(c) != owner_uid)
        {
            continue; // another workload's revision
        }
        out.push(r.parsed.clone()?);
    }
    Ok(out)
}

/// The newest revision (highest number) and the rest.
fn split_newest(mut parsed: Vec<Parsed>) -> (Option<Parsed>, Vec<Parsed>) {
    let newest =
        (0..parsed.len()).max_by_key(|&i| (parsed[i].rev.number, parsed[i].rev.name.clone()));
    let update = newest.map(|i| parsed.remove(i));
    (update, parsed)
}

/// `spec.selector` as the job's pod selector; an empty one would match the whole namespace.
fn selector(obj: &Obj) -> Result<ImagePullJobPodSelector> {
    let fix = "set spec.selector to a label selector matching spec.template.metadata.labels";
    let sel: ImagePullJobPodSelector = obj
        .read("spec.selector")?
        .ok_or_else(|| obj.missing("spec.selector", fix))?;
    let empty = |o: &Option<_>| o.as_ref().is_none_or(|m: &Vec<_>| m.is_empty());
    if sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty) && empty(&sel.match_expressions) {
        return Err(obj.invalid("spec.selector", "{}", &format!("labels to match; {fix}")));
    }
    Ok(sel)
}
