//! Each field where each OpenKruise version keeps it: CloneSet v1alpha1 against v1beta1
//! (`rollingUpdate`), Advanced StatefulSet v1alpha1 against v1beta1 (status counts), Advanced
//! DaemonSet v1alpha1 against v1beta1 (the update hash), and every path the adapters read
//! checked against OpenKruise's published CRDs (v1.9.0 and the main branch).

use serde_json::{json, Value};

use super::super::layout::{common_fields, layout};
use super::*;

/// OpenKruise's CRDs as published (the e2e tests install the same files).
fn crds() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (release, label) in [("v1.9.0", "v1.9.0"), ("master-07169cf", "master")] {
        for kind in ["clonesets", "statefulsets", "daemonsets"] {
            let file = format!("apps.kruise.io_{kind}.yaml");
            all.push((
                format!("{label} {kind}"),
                kruise_testlab::openkruise_crd(release, &file),
            ));
        }
    }
    all
}

/// Whether the structural schema keeps `path` (dotted, from the object's root).
fn schema_has(schema: &Value, path: &str) -> bool {
    path.split('.')
        .try_fold(schema, |s, key| s.get("properties")?.get(key))
        .is_some()
}

/// Every path an adapter reads from each served version is in that version's schema, in both
/// releases; the knob fields are in the main branch's (v1.9.0 has only the annotations).
#[test]
fn every_field_read_is_where_the_published_crds_keep_it() {
    let knob_names = [
        "imagePreDownloadParallelism",
        "imagePreDownloadTimeoutSeconds",
        "imagePreDownloadMinUpdatedReadyPods",
    ];
    for (name, yaml) in crds() {
        let crd: Value = serde_yaml::from_str(&yaml).expect(&name);
        let kind = match crd["spec"]["names"]["kind"].as_str().unwrap() {
            "CloneSet" => Kind::CloneSet,
            "StatefulSet" => Kind::AdvancedStatefulSet,
            _ => Kind::AdvancedDaemonSet,
        };
        for v in crd["spec"]["versions"].as_array().unwrap() {
            let version = v["name"].as_str().unwrap();
            let schema = &v["schema"]["openAPIV3Schema"];
            let at = layout(kind, version).unwrap_or_else(|| panic!("{name} {version}"));
            let mut paths = vec![at.partition, at.max_unavailable];
            paths.extend(at.policy);
            paths.extend(at.updated_ready);
            paths.extend(at.update_hash);
            paths.extend(common_fields(kind));
            for path in paths {
                assert!(schema_has(schema, path), "{name} {version}: {path}");
            }
            if let (Some(knobs), true) = (at.knobs, name.starts_with("master")) {
                for k in knob_names {
                    let path = format!("{knobs}.{k}");
                    assert!(schema_has(schema, &path), "{name} {version}: {path}");
                }
            }
        }
    }
}

/// v1beta1 reads partition, maxUnavailable, the policy and the knobs under `rollingUpdate`;
/// the same values at v1alpha1's places mean nothing there (a real API server prunes them).
#[test]
fn cloneset_v1beta1_reads_rolling_update() {
    let rolling = "spec.updateStrategy.rollingUpdate";
    let cs = with(
        cloneset_v1beta1(),
        &format!("{rolling}.maxUnavailable"),
        json!(2),
    );
    let cs = with(
        cs,
        &format!("{rolling}.inPlaceUpdateStrategy"),
        json!({"imagePreDownloadParallelism": 3, "imagePreDownloadMinUpdatedReadyPods": 1}),
    );
    let r = rollout(&cs, &revisions());
    assert_eq!((r.partition, r.max_unavailable, r.in_place), (1, 2, true));
    assert_eq!((r.parallelism, r.min_updated_ready), (Some(3), 1));
    // At v1alpha1's places: partition 0, 20% of 5 = 1, and ReCreate (the default).
    let misplaced = workload("apps.kruise.io/v1beta1", "CloneSet", &[("app", "nginx:2")]);
    let misplaced = with(
        misplaced,
        "spec.updateStrategy",
        json!({"type": "InPlaceIfPossible", "partition": 5, "maxUnavailable": 5}),
    );
    let r = rollout(&misplaced, &revisions());
    assert_eq!((r.partition, r.max_unavailable, r.in_place), (0, 1, false));
    // v1beta1 without rollingUpdate recreates pods, as OpenKruise decides.
    let none = with(
        cloneset_v1beta1(),
        "spec.updateStrategy",
        json!({"type": "RollingUpdate"}),
    );
    assert!(!rollout(&none, &revisions()).in_place);
}

/// One batch (partition 0, maxUnavailable covering every pod) is seen in both versions.
#[test]
fn cloneset_one_batch_in_both_versions() {
    let alpha = with(cloneset(), "spec.updateStrategy.partition", json!(0));
    let alpha = with(alpha, "spec.updateStrategy.maxUnavailable", json!("100%"));
    let rolling = "spec.updateStrategy.rollingUpdate";
    let beta = with(
        cloneset_v1beta1(),
        &format!("{rolling}.partition"),
        json!(0),
    );
    let beta = with(beta, &format!("{rolling}.maxUnavailable"), json!(5));
    for cs in [alpha, beta] {
        assert_eq!(
            run(&cs, &pods(0), &[]).outcome,
            Outcome::Ignored(Ignore::OneBatch)
        );
    }
}

/// Advanced StatefulSet v1alpha1's status does not count updated ready pods: they are counted
/// from the pods (reading the absent count as 0 would hold the gate shut for ever).
#[test]
fn advanced_statefulset_v1alpha1_counts_updated_ready_pods() {
    let policy = json!({"type": "RollingUpdate", "rollingUpdate":
        {"podUpdatePolicy": "InPlaceIfPossible", "partition": 1,
         "inPlaceUpdateStrategy": {"imagePreDownloadParallelism": 2}}});
    let beta = workload(
        "apps.kruise.io/v1beta1",
        "StatefulSet",
        &[("app", "nginx:2")],
    );
    let beta = with(beta, "spec.updateStrategy", policy);
    let beta = with(beta, "status.updatedReadyReplicas", json!(2));
    let alpha = with(beta.clone(), "apiVersion", json!("apps.kruise.io/v1alpha1"));
    let (rb, ra) = (rollout(&beta, &revisions()), rollout(&alpha, &revisions()));
    assert_eq!((rb.updated_ready, ra.updated_ready), (Some(2), None));
    assert_eq!((rb.parallelism, ra.parallelism), (Some(2), Some(2)));
}

/// The hash an Advanced DaemonSet rolls out: `status.daemonSetHash` (v1alpha1),
/// `status.updateRevision` (v1beta1). While it names an older revision the rollout is not
/// complete, whatever the counts say.
#[test]
fn advanced_daemonset_update_hash_per_version() {
    let ds = |version: &str, field: &str, hash: &str| {
        let ds = workload(
            &format!("apps.kruise.io/{version}"),
            "DaemonSet",
            &[("app", "nginx:2")],
        );
        let status = json!({"observedGeneration": 2, "desiredNumberScheduled": 5,
            "updatedNumberScheduled": 5});
        with(
            with(ds, "status", status),
            &format!("status.{field}"),
            json!(hash),
        )
    };
    for (version, field) in [("v1alpha1", "daemonSetHash"), ("v1beta1", "updateRevision")] {
        assert!(
            rollout(&ds(version, field, "v2"), &revisions()).complete,
            "{version}"
        );
        let stale = rollout(&ds(version, field, "v1"), &revisions());
        assert!(!stale.complete, "{version}: {field} names v1");
    }
    // The other version's field means nothing.
    assert!(rollout(&ds("v1beta1", "daemonSetHash", "v1"), &revisions()).complete);
}

/// The Advanced DaemonSet controller rounds a percent partition down (2.5 of 5 → 2).
#[test]
fn advanced_daemonset_percent_partition_rounds_down() {
    let ds = workload("apps.kruise.io/v1beta1", "DaemonSet", &[("app", "nginx:2")]);
    let ds = with(
        ds,
        "status",
        json!({"observedGeneration": 2, "desiredNumberScheduled": 5}),
    );
    let ds = with(
        ds,
        "spec.updateStrategy.rollingUpdate.partition",
        json!("50%"),
    );
    assert_eq!(rollout(&ds, &revisions()).partition, 2);
}

#[test]
fn an_unknown_openkruise_version_is_refused() {
    let cs = with(cloneset(), "apiVersion", json!("apps.kruise.io/v2"));
    assert_eq!(error(&cs).metric_label(), "unsupported_kind");
}
