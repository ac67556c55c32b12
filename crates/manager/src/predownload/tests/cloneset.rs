//! OpenKruise's CloneSet rules: the job's shape, the knobs, the min-updated-ready gate and the
//! reasons to ignore a revision.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kruise_api::{CompletionPolicyType, ImagePullPolicy, LabelSelectorOperator};
use serde_json::json;

use super::*;

#[test]
fn openkruise_e2e_cloneset_creates_one_job_shaped_like_openkruise() {
    let cs = with(
        cloneset_v1beta1(),
        "spec.updateStrategy.rollingUpdate.inPlaceUpdateStrategy",
        json!({"imagePreDownloadParallelism": 2}),
    );
    let d = run(&cs, &pods(0), &[]);
    assert_eq!(d.outcome, Outcome::Creating(1));
    assert_eq!((d.mark, d.delete.len()), (None, 0));
    let job = &d.create[0];
    assert_eq!(job.metadata.name.as_deref(), Some("web-v2-app"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(job.spec.image, "nginx:2");
    let t = &job.spec.template;
    assert_eq!(t.parallelism, Some(IntOrString::Int(2)));
    let policy = t.pull_policy.as_ref().unwrap();
    assert_eq!(
        (policy.timeout_seconds, policy.backoff_limit),
        (Some(300), Some(1))
    );
    assert_eq!(
        t.completion_policy.type_,
        Some(CompletionPolicyType::Always)
    );
    assert_eq!(t.completion_policy.ttl_seconds_after_finished, Some(600));
    assert_eq!(t.completion_policy.active_deadline_seconds, None);
    assert_eq!(t.image_pull_policy, Some(ImagePullPolicy::IfNotPresent));
    assert_eq!(t.pull_secrets, Some(vec!["regcred".to_string()]));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels[REVISION_HASH_LABEL], "v2", "OpenKruise's hash label");
    assert!(!labels.contains_key(CONTROLLER_REVISION_HASH));
    assert_eq!(labels[JOB_REVISION_LABEL], "web-v2");
    let sandbox = t.sandbox_config.as_ref().unwrap();
    assert_eq!(
        (&sandbox.labels, &sandbox.annotations["team"]),
        (labels, &"a".to_string())
    );
    let sel = t.pod_selector.as_ref().unwrap();
    assert_eq!(sel.match_labels.as_ref().unwrap()["app"], "web");
    let e = &sel.match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (e.key.as_str(), e.operator),
        (CONTROLLER_REVISION_HASH, LabelSelectorOperator::NotIn)
    );
    assert_eq!(e.values, Some(vec!["web-v2".to_string(), "v2".to_string()]));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("CloneSet", "web", "uid-1")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(owner.api_version, "apps.kruise.io/v1beta1");
    assert_eq!(
        job.metadata.annotations.as_ref().unwrap()[NODE_ORDER_ANNOTATION],
        "n0,n1,n2,n3,n4"
    );
}

#[test]
fn v1alpha1_annotations_are_the_knobs() {
    let cs = with(cloneset(), "apiVersion", json!("apps.kruise.io/v1alpha1"));
    let cs = with(
        cs,
        "metadata.annotations",
        json!({PARALLELISM_ANNOTATION: "2", TIMEOUT_ANNOTATION: "120"}),
    );
    let d = run(&cs, &pods(0), &[]);
    assert_eq!(images(&d), ["nginx:2"]);
    let t = &d.create[0].spec.template;
    assert_eq!(t.parallelism, Some(IntOrString::Int(2)));
    assert_eq!(t.pull_policy.as_ref().unwrap().timeout_seconds, Some(120));
}

#[test]
fn min_updated_ready_gate_as_an_integer() {
    let cs = with(
        cloneset(),
        "metadata.annotations",
        json!({MIN_UPDATED_READY_ANNOTATION: "2"}),
    );
    let cs = with(cs, "status.updatedReadyReplicas", json!(1));
    let d = run(&cs, &pods(1), &[]);
    assert_eq!(
        d.outcome,
        Outcome::Waiting {
            updated_ready: 1,
            threshold: 2
        }
    );
    assert!(d.create.is_empty() && d.mark.is_none());
    let cs = with(cs, "status.updatedReadyReplicas", json!(2));
    assert_eq!(run(&cs, &pods(2), &[]).outcome, Outcome::Creating(1));
}

#[test]
fn min_updated_ready_percent_rounds_up() {
    let annotation = json!({MIN_UPDATED_READY_ANNOTATION: "50%"}); // 2.5 of 5 -> 3
    let cs = with(cloneset(), "metadata.annotations", annotation);
    assert_eq!(rollout(&cs, &revisions()).min_updated_ready, 3);
    let cs = with(cs, "status.updatedReadyReplicas", json!(2));
    assert!(matches!(
        run(&cs, &pods(2), &[]).outcome,
        Outcome::Waiting { threshold: 3, .. }
    ));
    let cs = with(cs, "status.updatedReadyReplicas", json!(3));
    assert_eq!(run(&cs, &pods(3), &[]).outcome, Outcome::Creating(1));
}

#[test]
fn stale_status_counts_no_updated_ready_pods() {
    let cs = with(
        cloneset(),
        "metadata.annotations",
        json!({MIN_UPDATED_READY_ANNOTATION: "1"}),
    );
    let cs = with(cs, "status.updatedReadyReplicas", json!(4));
    let cs = with(cs, "status.updateRevision", json!("web-v1")); // web-v2 is newer
    assert_eq!(rollout(&cs, &revisions()).updated_ready, Some(0));
    assert!(matches!(
        run(&cs, &pods(0), &[]).outcome,
        Outcome::Waiting {
            updated_ready: 0,
            ..
        }
    ));
}

#[test]
fn openkruise_reasons_to_ignore() {
    assert_eq!(
        ignored(&with(cloneset(), "spec.replicas", json!(3))),
        Ignore::FewReplicas
    );
    let one_batch = with(cloneset(), "spec.updateStrategy.partition", json!(0));
    let one_batch = with(
        one_batch,
        "spec.updateStrategy.maxUnavailable",
        json!("100%"),
    );
    assert_eq!(ignored(&one_batch), Ignore::OneBatch);
    assert_eq!(
        ignored(&with(
            cloneset(),
            "spec.updateStrategy.type",
            json!("ReCreate")
        )),
        Ignore::NotInPlace
    );
    let mut unset = cloneset();
    unset["spec"]["updateStrategy"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    assert_eq!(
        ignored(&unset),
        Ignore::NotInPlace,
        "ReCreate is the default"
    );
}
