//! ImageListPullJob: one child ImagePullJob per image (named after the list job and the image,
//! owned by it), the shared template applied to each; editing the list adds, updates and removes
//! children. Children carry no TTL of their own, so they live exactly as long as the list job
//! (OpenKruise lets children expire first and re-creates them).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kruise_api::{
    CompletionPolicyType, FailedImageStatus, ImageListPullJob, ImageListPullJobStatus,
    ImagePullJob, ImagePullJobSpec,
};
use kube::{Resource, ResourceExt};

use crate::secrets::short_hash;

/// Label on children naming their list job.
pub const LIST_JOB_LABEL: &str = "imagelistpulljobs.kruise.io/name";

#[derive(Debug, Default, PartialEq)]
pub struct ListPlan {
    pub create: Vec<ImagePullJob>,
    /// Children whose spec changed (image list order or template edits).
    pub update: Vec<ImagePullJob>,
    /// Children to delete: images no longer listed, or a changed `pullSecrets` (immutable).
    pub delete: Vec<String>,
    pub status: ImageListPullJobStatus,
    pub delete_self: bool,
    pub requeue_secs: Option<i64>,
}

pub fn child_name(list: &str, image: &str) -> String {
    let head: String = list.chars().take(200).collect();
    format!("{head}-{}", short_hash(image))
}

fn child(list: &ImageListPullJob, image: &str) -> ImagePullJob {
    let mut template = list.spec.template.clone();
    template.completion_policy.ttl_seconds_after_finished = None;
    let mut job = ImagePullJob::new(
        &child_name(&list.name_any(), image),
        ImagePullJobSpec {
            image: image.to_string(),
            template,
        },
    );
    job.metadata.namespace = list.namespace();
    job.metadata.labels = Some(BTreeMap::from([(
        LIST_JOB_LABEL.to_string(),
        label_value(&list.name_any()),
    )]));
    job.metadata.owner_references = Some(vec![OwnerReference {
        api_version: ImageListPullJob::api_version(&()).to_string(),
        kind: ImageListPullJob::kind(&()).to_string(),
        name: list.name_any(),
        uid: list.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    job
}

/// What to do for `list`, given its current `children`.
pub fn plan(list: &ImageListPullJob, children: &[&ImagePullJob], now: Timestamp) -> ListPlan {
    let mut p = ListPlan::default();
    let old = list.status.clone().unwrap_or_default();
    if let Some(done) = &old.completion_time {
        if let Some(ttl) = list
            .spec
            .template
            .completion_policy
            .ttl_seconds_after_finished
        {
            let left = ttl as i64 - (now.as_second() - done.0.as_second());
            if left <= 0 {
                p.delete_self = true;
            } else {
                p.requeue_secs = Some(left);
            }
        }
        p.status = old;
        return p;
    }
    let by_name: BTreeMap<String, &ImagePullJob> =
        children.iter().map(|c| (c.name_any(), *c)).collect();
    let mut wanted = BTreeMap::new();
    for image in &list.spec.images {
        let want = child(list, image);
        let name = want.name_any();
        match by_name.get(&name) {
            None => p.create.push(want.clone()),
            Some(have) if have.spec.template.pull_secrets != want.spec.template.pull_secrets => {
                p.delete.push(name.clone())
            }
            Some(have) if have.spec != want.spec => {
                let mut updated = (*have).clone();
                updated.spec = want.spec.clone();
                p.update.push(updated);
            }
            Some(_) => {}
        }
        wanted.insert(name, image.clone());
    }
    p.delete
        .extend(by_name.keys().filter(|n| !wanted.contains_key(*n)).cloned());

    let mut st = ImageListPullJobStatus {
        start_time: old.start_time.or(Some(Time(now))),
        desired: list.spec.images.len() as i32,
        ..Default::default()
    };
    for (name, image) in &wanted {
        let Some(s) = by_name.get(name).and_then(|c| c.status.as_ref()) else {
            continue;
        };
        if s.active > 0 {
            st.active += 1;
        }
        let done =
            s.desired > 0 && s.desired == s.succeeded + s.failed || s.completion_time.is_some();
        if done {
            st.completed += 1;
        }
        if s.desired > 0 && s.desired == s.succeeded {
            st.succeeded += 1;
        }
        if s.failed > 0 {
            st.failed_image_statuses.push(FailedImageStatus {
                image_pull_job: Some(name.clone()),
                name: Some(image.clone()),
                message: Some(failed_on(s.failed, &s.failed_nodes)),
            });
        }
    }
    if list.spec.template.completion_type() == CompletionPolicyType::Always
        && st.desired > 0
        && st.completed == st.desired
    {
        st.completion_time = Some(Time(now));
    }
    p.status = st;
    p
}

/// A label value (at most 63 characters) naming `name`: itself, or a prefix and a hash.
fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let head: String = name.chars().take(54).collect();
    format!("{}-{}", head.trim_end_matches(['-', '.']), short_hash(name))
}

/// Failed node names a list job's status repeats per image; the child job lists them all. A
/// registry outage at 5,000 nodes must not grow the list job past what etcd accepts.
const NAMED_FAILED_NODES: usize = 10;

fn failed_on(failed: i32, nodes: &[String]) -> String {
    let named = nodes.len().min(NAMED_FAILED_NODES);
    let mut msg = format!("failed on {failed} node(s): {}", nodes[..named].join(", "));
    if nodes.len() > named {
        msg.push_str(&format!(
            " and {} more (see the ImagePullJob's failedNodes)",
            nodes.len() - named
        ));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(images: &[&str]) -> ImageListPullJob {
        serde_json::from_value(json!({
            "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImageListPullJob",
            "metadata": {"name": "l", "namespace": "ns", "uid": "uid-l"},
            "spec": {"images": images, "parallelism": 2, "completionPolicy": {"type": "Always", "ttlSecondsAfterFinished": 60}},
        }))
        .unwrap()
    }

    #[test]
    fn long_list_names_give_valid_label_values() {
        let long = "l".repeat(80);
        let v = label_value(&long);
        assert!(v.len() <= 63 && v.ends_with(&short_hash(&long)), "{v}");
        assert_eq!(label_value("short"), "short");
    }

    #[test]
    fn one_child_per_image_and_edits_follow() {
        let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let l = list(&["a:1", "b:1"]);
        let p = plan(&l, &[], now);
        assert_eq!(p.create.len(), 2);
        let c = &p.create[0];
        assert_eq!(
            c.spec.template.completion_policy.ttl_seconds_after_finished, None,
            "children have no TTL of their own"
        );
        assert_eq!(c.owner_references()[0].uid, "uid-l");
        assert_eq!(p.status.desired, 2);

        // b removed, c added, a unchanged.
        let mut children = p.create.clone();
        children[0].status =
            Some(serde_json::from_value(json!({"desired": 3, "succeeded": 3})).unwrap());
        let l2 = list(&["a:1", "c:1"]);
        let refs: Vec<&ImagePullJob> = children.iter().collect();
        let p = plan(&l2, &refs, now);
        assert_eq!(
            p.create
                .iter()
                .map(|c| c.spec.image.clone())
                .collect::<Vec<_>>(),
            ["c:1"]
        );
        assert_eq!(p.delete, [child_name("l", "b:1")]);
        assert_eq!((p.status.completed, p.status.succeeded), (1, 1));
    }

    #[test]
    fn completes_when_every_child_is_done_and_reports_failures() {
        let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let l = list(&["a:1", "b:1"]);
        let mut children = plan(&l, &[], now).create;
        children[0].status =
            Some(serde_json::from_value(json!({"desired": 2, "succeeded": 2})).unwrap());
        children[1].status = Some(
            serde_json::from_value(
                json!({"desired": 2, "succeeded": 1, "failed": 1, "failedNodes": ["n9"]}),
            )
            .unwrap(),
        );
        let refs: Vec<&ImagePullJob> = children.iter().collect();
        let p = plan(&l, &refs, now);
        assert_eq!((p.status.completed, p.status.succeeded), (2, 1));
        assert!(p.status.completion_time.is_some());
        assert_eq!(p.status.failed_image_statuses.len(), 1);
        assert!(p.status.failed_image_statuses[0]
            .message
            .as_deref()
            .unwrap()
            .contains("n9"));
    }

    #[test]
    fn a_mass_failure_names_a_few_nodes_and_counts_the_rest() {
        let nodes: Vec<String> = (0..5000).map(|i| format!("node-{i:04}")).collect();
        let msg = failed_on(5000, &nodes);
        assert!(msg.starts_with("failed on 5000 node(s): node-0000, node-0001"));
        assert!(msg.ends_with("and 4990 more (see the ImagePullJob's failedNodes)"));
        assert!(msg.len() < 300, "{} bytes", msg.len());
    }
}
