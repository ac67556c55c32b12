//! Jobs written by OpenKruise: its controller puts the finalizer
//! `apps.kruise.io/deletion-protection` on every job and removes it when the job is deleted.
//! Once this manager has taken over, nothing else would remove it, and deleting such a job
//! would hang; so the manager removes it from jobs being deleted (after which their tags are
//! withdrawn like any deleted job's).

use kruise_api::constants::DELETION_PROTECTION_FINALIZER;
use kruise_api::ImagePullJob;
use kube::ResourceExt;
use serde_json::json;

/// The merge patch removing OpenKruise's finalizer from `job`, if it is being deleted and has it.
/// It carries the job's resourceVersion, so a finalizer list changed meanwhile gets 409 (and the
/// next round looks again) instead of being overwritten.
pub fn finalizer_patch(job: &ImagePullJob) -> Option<serde_json::Value> {
    job.metadata.deletion_timestamp.as_ref()?;
    let finalizers = job.finalizers();
    if !finalizers
        .iter()
        .any(|f| f == DELETION_PROTECTION_FINALIZER)
    {
        return None;
    }
    let rest: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != DELETION_PROTECTION_FINALIZER)
        .collect();
    Some(json!({"metadata": {"resourceVersion": job.resource_version(), "finalizers": rest}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deleted_jobs_lose_the_finalizer() {
        let mut job: ImagePullJob = serde_json::from_value(json!({
            "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob",
            "metadata": {"name": "j", "namespace": "ns", "finalizers": ["other", DELETION_PROTECTION_FINALIZER]},
            "spec": {"image": "x"},
        }))
        .unwrap();
        assert!(finalizer_patch(&job).is_none(), "a live job keeps it");
        job.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(
            finalizer_patch(&job).unwrap()["metadata"]["finalizers"],
            json!(["other"])
        );
    }
}
