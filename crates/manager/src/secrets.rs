//! Pull secrets for the daemons: each Secret a live job names is copied once into
//! `kruise-daemon-config` (the only namespace daemons may read), shared by every job naming it,
//! refreshed when the source changes, and deleted when no live job names it any more. Copies are
//! named after their source deterministically, so a restarted manager finds its own copies.
//! Sources are known by their metadata (the watch carries no data); a source's data is read
//! only when its copy is written, and the copy records the source's resourceVersion.

use std::collections::{BTreeMap, BTreeSet};

use crate::writer::timed;
use k8s_openapi::api::core::v1::Secret;
use kruise_api::constants::{
    DAEMON_CONFIG_NAMESPACE, SECRET_MODE_ANNOTATION, SECRET_MODE_BATCH,
    SECRET_REFERENCES_ANNOTATION, SECRET_SOURCE_KEY_ANNOTATION, SECRET_SOURCE_VERSION_ANNOTATION,
};
use kruise_api::{ImagePullJob, ReferenceObject};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};

const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kruise-manager");

/// FNV-1a, for stable short names.
pub fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// The copy's name for source `namespace/name`.
pub fn synced_name(source: &str) -> String {
    let name = source.split('/').nth(1).unwrap_or(source);
    let head: String = name.chars().take(200).collect();
    format!("{head}-{}", &short_hash(source)[..6])
}

/// The copies there should be, keyed by copy name, from live jobs and the source secrets.
pub fn desired(
    jobs: &[std::sync::Arc<ImagePullJob>],
    sources: &BTreeMap<String, Secret>,
) -> BTreeMap<String, Secret> {
    let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for job in jobs
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
    {
        let ns = job.namespace().unwrap_or_default();
        for name in job.spec.template.pull_secrets.iter().flatten() {
            refs.entry(format!("{ns}/{name}"))
                .or_default()
                .insert(format!("{ns}/{}", job.name_any()));
        }
    }
    let mut out = BTreeMap::new();
    for (source, jobs) in refs {
        let Some(src) = sources.get(&source) else {
            continue;
        };
        let name = synced_name(&source);
        let mut annotations = BTreeMap::from([
            (SECRET_SOURCE_KEY_ANNOTATION.to_string(), source.clone()),
            (
                SECRET_REFERENCES_ANNOTATION.to_string(),
                jobs.into_iter().collect::<Vec<_>>().join(","),
            ),
            (
                SECRET_MODE_ANNOTATION.to_string(),
                SECRET_MODE_BATCH.to_string(),
            ),
            (
                SECRET_SOURCE_VERSION_ANNOTATION.to_string(),
                src.metadata.resource_version.clone().unwrap_or_default(),
            ),
        ]);
        annotations.extend(
            src.metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !k.starts_with("kubectl.kubernetes.io/")),
        );
        let mut copy = Secret {
            type_: src.type_.clone(),
            data: src.data.clone(),
            ..Default::default()
        };
        copy.metadata.name = Some(name.clone());
        copy.metadata.namespace = Some(DAEMON_CONFIG_NAMESPACE.into());
        copy.metadata.annotations = Some(annotations);
        copy.metadata.labels = Some(BTreeMap::from([(
            MANAGED_BY.0.to_string(),
            MANAGED_BY.1.to_string(),
        )]));
        out.insert(name, copy);
    }
    out
}

/// Source `namespace/name` → reference to its copy, for copies that exist.
pub fn references(synced: &[Secret]) -> BTreeMap<String, ReferenceObject> {
    synced
        .iter()
        .filter_map(|s| {
            let source = s.annotations().get(SECRET_SOURCE_KEY_ANNOTATION)?;
            Some((
                source.clone(),
                ReferenceObject {
                    namespace: Some(DAEMON_CONFIG_NAMESPACE.into()),
                    name: Some(s.name_any()),
                    mode: Some(SECRET_MODE_BATCH.into()),
                },
            ))
        })
        .collect()
}

/// Whether copy `have` is what `want` asks for: the same source version (so the same data), type
/// and annotations.
fn same(have: &Secret, want: &Secret) -> bool {
    have.type_ == want.type_ && have.metadata.annotations == want.metadata.annotations
}

/// `copy` with its source's data, read now; the copy records the version it read.
async fn with_source_data(client: &Client, mut copy: Secret) -> Result<Secret, kube::Error> {
    let source = copy
        .annotations()
        .get(SECRET_SOURCE_KEY_ANNOTATION)
        .cloned();
    let (ns, name) = source
        .as_deref()
        .and_then(|s| s.split_once('/'))
        .unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let src = timed(api.get(name)).await?;
    copy.data = src.data;
    copy.type_ = src.type_;
    let version = src.metadata.resource_version.unwrap_or_default();
    copy.annotations_mut()
        .insert(SECRET_SOURCE_VERSION_ANNOTATION.into(), version);
    Ok(copy)
}

/// Creates, refreshes and deletes this installation's copies; returns how many of those writes
/// failed (the round plans again soon when any did).
/// This installation's copies by name: made by a manager, for a source in `job_namespace` (all
/// when empty). Another installation's copies are not ours to delete.
fn ours<'a>(job_namespace: &str, have: &'a [Secret]) -> BTreeMap<String, &'a Secret> {
    have.iter()
        .filter(|s| s.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1))
        .filter(|s| {
            s.annotations()
                .get(SECRET_SOURCE_KEY_ANNOTATION)
                .is_some_and(|src| {
                    job_namespace.is_empty() || src.split('/').next() == Some(job_namespace)
                })
        })
        .map(|s| (s.name_any(), s))
        .collect()
}

/// Whether [`apply`] has anything to do.
pub fn differs(job_namespace: &str, want: &BTreeMap<String, Secret>, have: &[Secret]) -> bool {
    let have = ours(job_namespace, have);
    want.iter()
        .any(|(name, s)| !have.get(name).is_some_and(|h| same(h, s)))
        || have.keys().any(|n| !want.contains_key(n))
}

/// Creates or replaces one copy (a changed type cannot be replaced: deleted and made again).
async fn write_copy(
    api: &Api<Secret>,
    current: Option<&Secret>,
    secret: &Secret,
) -> Result<(), kube::Error> {
    let name = secret.name_any();
    match current {
        Some(current) if current.type_ != secret.type_ => {
            let _ = timed(api.delete(&name, &DeleteParams::default())).await;
            timed(api.create(&PostParams::default(), secret)).await?;
        }
        Some(current) => {
            let mut updated = secret.clone();
            updated.metadata.resource_version = current.resource_version();
            timed(api.replace(&name, &PostParams::default(), &updated)).await?;
        }
        None => {
            timed(api.create(&PostParams::default(), secret)).await?;
        }
    }
    Ok(())
}

/// Brings the copies in line with `want`, each request under the writer's timeout; the number
/// of copies that could not be written.
pub async fn apply(
    client: &Client,
    job_namespace: &str,
    want: &BTreeMap<String, Secret>,
    have: &[Secret],
) -> usize {
    let api: Api<Secret> = Api::namespaced(client.clone(), DAEMON_CONFIG_NAMESPACE);
    let have = ours(job_namespace, have);
    let mut failed = 0;
    for (name, secret) in want {
        if have.get(name).is_some_and(|current| same(current, secret)) {
            continue;
        }
        let secret = &match with_source_data(client, secret.clone()).await {
            Ok(s) => s,
            Err(e) => {
                failed += 1;
                tracing::warn!(secret = %name, error = %e, "reading the source of a pull secret failed");
                continue;
            }
        };
        let result = write_copy(&api, have.get(name).copied(), secret).await;
        match result {
            Ok(()) => tracing::info!(secret = %name, "synced pull secret"),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                failed += 1;
                tracing::warn!(namespace = DAEMON_CONFIG_NAMESPACE, "the daemon namespace does not exist; create it (the Helm chart does) so pull secrets can be synced")
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(secret = %name, error = %e, "syncing pull secret failed")
            }
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        match timed(api.delete(name, &DeleteParams::default())).await {
            Ok(_) => tracing::info!(secret = %name, "removed pull secret no job uses"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                failed += 1;
                tracing::warn!(secret = %name, error = %e, "removing pull secret failed")
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ns: &str, name: &str, secrets: &[&str]) -> ImagePullJob {
        serde_json::from_value(json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "metadata": {"name": name, "namespace": ns}, "spec": {"image": "x", "pullSecrets": secrets}})).unwrap()
    }

    #[test]
    fn one_copy_per_source_shared_by_jobs() {
        let src: Secret = serde_json::from_value(json!({"metadata": {"name": "reg", "namespace": "a"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}})).unwrap();
        let sources = BTreeMap::from([("a/reg".to_string(), src)]);
        let jobs = [
            job("a", "j2", &["reg"]),
            job("a", "j1", &["reg", "absent"]),
            job("b", "j3", &["reg"]),
        ]
        .map(std::sync::Arc::new);
        let want = desired(&jobs, &sources);
        assert_eq!(
            want.len(),
            1,
            "b/reg and a/absent do not exist; a/reg is copied once"
        );
        let (name, copy) = want.iter().next().unwrap();
        assert_eq!(name, &synced_name("a/reg"));
        assert!(name.starts_with("reg-") && name.len() == 10);
        let a = copy.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[SECRET_REFERENCES_ANNOTATION], "a/j1,a/j2");
        assert_eq!(a[SECRET_SOURCE_KEY_ANNOTATION], "a/reg");
        assert_eq!(
            references(std::slice::from_ref(copy))["a/reg"]
                .name
                .as_deref(),
            Some(name.as_str())
        );
        assert!(desired(&[], &sources).is_empty(), "no job, no copy");
    }
}
