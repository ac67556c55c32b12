//! Every default and every refusal of the CRDs, checked by an API server: the checked-in
//! `config/crd/*.yaml` as the test API server (or the cluster of `E2E_KUBECONFIG`) applies them,
//! each object sent as a dry-run create or update (see `common`). Each bad object must be refused
//! with a message naming the field, every CEL rule must fire on some bad object, and none may
//! fire on the examples.

mod common;
#[path = "crd_validation/node_images.rs"]
mod node_images;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::Env;
use kruise_crd_validate::{ErrorKind, FieldError};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crd(plural: &str) -> Value {
    let path = repo().join(format!("config/crd/apps.kruise.io_{plural}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).expect("CRD YAML parses")
}

fn job(spec: Value) -> Value {
    json!({"apiVersion": "apps.kruise.io/v1alpha1", "kind": "ImagePullJob", "metadata": {"name": "j"}, "spec": spec})
}

fn list_job(spec: Value) -> Value {
    json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "ImageListPullJob", "metadata": {"name": "l"}, "spec": spec})
}

fn node_image(spec: Value) -> Value {
    json!({"apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage", "metadata": {"name": "n"}, "spec": spec})
}

/// `obj` must be refused with an error on exactly `field`, whose text contains `needle`.
fn refused(
    env: &Env,
    obj: Value,
    old: Option<Value>,
    field: &str,
    needle: &str,
) -> Vec<FieldError> {
    let shown = obj.to_string();
    let errors = env
        .admit(obj, old)
        .expect_err(&format!("accepted, but should be refused: {shown}"));
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.to_string().contains(needle)),
        "expected an error on {field} containing {needle:?} for {shown}; got {:#?}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
    errors
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn examples_apply_unchanged_in_both_versions() {
    let env = Env::connect();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["examples", "examples/v1beta1"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() >= 6,
        "the mission's three jobs in both versions: {files:?}"
    );
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let obj: Value = serde::Deserialize::deserialize(doc).unwrap();
            if obj.is_null()
                || obj["apiVersion"]
                    .as_str()
                    .is_none_or(|a| !a.starts_with("apps.kruise.io/"))
            {
                continue;
            }
            // As the other version too: one schema serves both.
            let mut other = obj.clone();
            let flipped = if obj["apiVersion"] == "apps.kruise.io/v1alpha1" {
                "apps.kruise.io/v1beta1"
            } else {
                "apps.kruise.io/v1alpha1"
            };
            other["apiVersion"] = json!(flipped);
            for o in [obj, other] {
                if let Err(errors) = env.admit(o, None) {
                    panic!(
                        "{} refused: {:#?}",
                        path.display(),
                        errors.iter().map(ToString::to_string).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
    env.finish();
}

#[test]
fn an_image_pull_job_without_policies_is_defaulted() {
    let env = Env::connect();
    let stored = env
        .admit(job(json!({"image": "nginx"})), None)
        .expect("accepted");
    assert_eq!(
        stored["spec"]["completionPolicy"],
        json!({"type": "Always"})
    );
    assert_eq!(
        stored["spec"]["pullPolicy"],
        json!({"timeoutSeconds": 600, "backoffLimit": 3})
    );
    assert_eq!(stored["spec"]["imagePullPolicy"], json!("IfNotPresent"));
    // Partial policies keep what the user wrote and get the rest.
    let stored = env.admit(job(json!({"image": "nginx", "pullPolicy": {"timeoutSeconds": 30}, "completionPolicy": {"type": "Never"}})), None).unwrap();
    assert_eq!(
        stored["spec"]["pullPolicy"],
        json!({"timeoutSeconds": 30, "backoffLimit": 3})
    );
    assert_eq!(stored["spec"]["completionPolicy"], json!({"type": "Never"}));
    // An explicit null is pruned and then defaulted, as for built-in kinds.
    let stored = env
        .admit(job(json!({"image": "nginx", "pullPolicy": null})), None)
        .unwrap();
    assert_eq!(
        stored["spec"]["pullPolicy"],
        json!({"timeoutSeconds": 600, "backoffLimit": 3})
    );
    // Unknown fields are pruned.
    let stored = env
        .admit(job(json!({"image": "nginx", "colour": "blue"})), None)
        .unwrap();
    assert!(stored["spec"].get("colour").is_none());
    env.finish();
}

#[test]
fn image_pull_job_refusals_name_the_field() {
    let env = Env::connect();
    let image = "spec.image";
    refused(&env, job(json!({})), None, image, "Required value");
    refused(
        &env,
        job(json!({"image": ""})),
        None,
        image,
        "valid image reference",
    );
    refused(
        &env,
        job(json!({"image": "Nginx:1"})),
        None,
        image,
        "lower-case",
    );
    refused(
        &env,
        job(json!({"image": "nginx:1:2"})),
        None,
        image,
        "at most one tag",
    );
    refused(
        &env,
        job(json!({"image": "nginx@sha256:0123abcd"})),
        None,
        image,
        "64 lower-case hex",
    );
    refused(
        &env,
        job(json!({"image": "nginx: 1"})),
        None,
        image,
        "no spaces",
    );
    refused(
        &env,
        job(json!({"image": format!("a/{}", "b".repeat(600))})),
        None,
        image,
        "Too long",
    );

    refused(
        &env,
        job(json!({"image": "nginx", "parallelism": "10%"})),
        None,
        "spec.parallelism",
        "percentages are not supported",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "parallelism": -1})),
        None,
        "spec.parallelism",
        "non-negative",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "parallelism": "ten"})),
        None,
        "spec.parallelism",
        "non-negative",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "parallelism": [1]})),
        None,
        "spec.parallelism",
        "must be of type",
    );

    refused(
        &env,
        job(json!({"image": "nginx", "imagePullPolicy": "Never"})),
        None,
        "spec.imagePullPolicy",
        "supported values: \"Always\", \"IfNotPresent\"",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "completionPolicy": {"type": "Sometimes"}})),
        None,
        "spec.completionPolicy.type",
        "Unsupported value",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "pullPolicy": {"timeoutSeconds": -1}})),
        None,
        "spec.pullPolicy.timeoutSeconds",
        "greater than or equal to 1",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "pullPolicy": {"backoffLimit": -1}})),
        None,
        "spec.pullPolicy.backoffLimit",
        "greater than or equal to 0",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "completionPolicy": {"ttlSecondsAfterFinished": -5}})),
        None,
        "spec.completionPolicy.ttlSecondsAfterFinished",
        "greater than or equal to 0",
    );

    refused(
        &env,
        job(json!({"image": "nginx", "selector": {"names": ["n1"], "matchLabels": {"a": "b"}}})),
        None,
        "spec.selector",
        "cannot be combined with matchLabels",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "selector": {"names": ["n1", "n2", "n1"]}})),
        None,
        "spec.selector.names[2]",
        "Duplicate value: \"n1\"",
    );
    refused(
        &env,
        job(
            json!({"image": "nginx", "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        ),
        None,
        "spec.selector",
        "In or NotIn need values",
    );
    refused(
        &env,
        job(
            json!({"image": "nginx", "podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}),
        ),
        None,
        "spec.podSelector",
        "take none",
    );
    refused(
        &env,
        job(
            json!({"image": "nginx", "selector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}),
        ),
        None,
        "spec.selector.matchExpressions[0].operator",
        "Unsupported value",
    );
    refused(
        &env,
        job(
            json!({"image": "nginx", "selector": {"matchLabels": {"a": "b"}}, "podSelector": {"matchLabels": {"app": "x"}}}),
        ),
        None,
        "spec",
        "selector and podSelector cannot both be set",
    );
    refused(
        &env,
        job(
            json!({"image": "nginx", "completionPolicy": {"type": "Never", "activeDeadlineSeconds": 1800}}),
        ),
        None,
        "spec.completionPolicy",
        "must be unset when completionPolicy.type is Never",
    );
    refused(
        &env,
        job(
            json!({"image": "nginx", "completionPolicy": {"type": "Never", "ttlSecondsAfterFinished": 60}}),
        ),
        None,
        "spec.completionPolicy",
        "must be unset when completionPolicy.type is Never",
    );
    refused(
        &env,
        job(json!({"image": "nginx", "completionPolicy": {"activeDeadlineSeconds": 60}})),
        None,
        "spec.completionPolicy.activeDeadlineSeconds",
        "at least pullPolicy.timeoutSeconds (default 600)",
    );
    refused(
        &env,
        job(
            json!({"image": "nginx", "pullPolicy": {"timeoutSeconds": 120}, "completionPolicy": {"activeDeadlineSeconds": 60}}),
        ),
        None,
        "spec.completionPolicy.activeDeadlineSeconds",
        "at least pullPolicy.timeoutSeconds",
    );
    env.finish();
}

#[test]
fn good_image_pull_jobs_are_accepted() {
    let env = Env::connect();
    for spec in [
        json!({"image": "nginx", "parallelism": "10"}),
        json!({"image": "nginx", "parallelism": 0}),
        json!({"image": format!("nginx@{DIGEST}")}),
        json!({"image": format!("127.0.0.1:5000/lab/small:v1@{DIGEST}")}),
        json!({"image": "nginx", "selector": {"names": ["n1", "n2"]}}),
        json!({"image": "nginx", "selector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}, {"key": "b", "operator": "NotIn", "values": ["x"]}]}}),
        json!({"image": "nginx", "podSelector": {"matchLabels": {"app": "web"}}}),
        json!({"image": "nginx", "pullPolicy": {"timeoutSeconds": 60}, "completionPolicy": {"activeDeadlineSeconds": 60}}),
        json!({"image": "nginx", "sandboxConfig": {"labels": {"a": "b"}, "annotations": {"c": "d"}}}),
    ] {
        let shown = spec.to_string();
        env.admit(job(spec), None)
            .unwrap_or_else(|e| panic!("{shown} refused: {e:?}"));
    }
    env.finish();
}

#[test]
fn pull_secrets_cannot_change_after_creation() {
    let env = Env::connect();
    let with = |secrets: Value| job(json!({"image": "nginx", "pullSecrets": secrets}));
    let without = job(json!({"image": "nginx"}));
    // Creating with secrets is fine; so is an update that keeps them and changes other fields.
    env.admit(with(json!(["a"])), None).unwrap();
    let mut edited = with(json!(["a"]));
    edited["spec"]["parallelism"] = json!(5);
    env.admit(edited, Some(with(json!(["a"])))).unwrap();
    env.admit(job(json!({"image": "nginx:2"})), Some(without.clone()))
        .unwrap();

    let msg = "pullSecrets is immutable";
    refused(
        &env,
        with(json!(["b"])),
        Some(with(json!(["a"]))),
        "spec.pullSecrets",
        msg,
    );
    refused(
        &env,
        with(json!(["a", "b"])),
        Some(with(json!(["a"]))),
        "spec.pullSecrets",
        msg,
    );
    refused(
        &env,
        with(json!(["a"])),
        Some(without.clone()),
        "spec.pullSecrets",
        msg,
    );
    refused(
        &env,
        without,
        Some(with(json!(["a"]))),
        "spec.pullSecrets",
        msg,
    );
    env.finish();
}

#[test]
fn image_list_pull_job_refusals_name_the_field() {
    let env = Env::connect();
    let images = |n: usize| {
        (0..n)
            .map(|i| format!("registry.example.com/app-{i}:v1"))
            .collect::<Vec<_>>()
    };
    env.admit(list_job(json!({"images": images(255)})), None)
        .expect("255 images are accepted");
    refused(
        &env,
        list_job(json!({"images": images(256)})),
        None,
        "spec.images",
        "must have at most 255 items",
    );
    refused(
        &env,
        list_job(json!({"images": []})),
        None,
        "spec.images",
        "at least 1 items",
    );
    refused(
        &env,
        list_job(json!({})),
        None,
        "spec.images",
        "Required value",
    );
    refused(
        &env,
        list_job(json!({"images": ["nginx:1", "nginx:1"]})),
        None,
        "spec.images[1]",
        "Duplicate value",
    );
    refused(
        &env,
        list_job(json!({"images": ["nginx:1", "Bad Ref!!"]})),
        None,
        "spec.images[1]",
        "valid image reference",
    );
    refused(
        &env,
        list_job(json!({"images": ["nginx"], "completionPolicy": {"activeDeadlineSeconds": 60}})),
        None,
        "spec.completionPolicy.activeDeadlineSeconds",
        "at least pullPolicy.timeoutSeconds",
    );
    refused(
        &env,
        list_job(
            json!({"images": ["nginx"], "completionPolicy": {"type": "Never", "ttlSecondsAfterFinished": 6}}),
        ),
        None,
        "spec.completionPolicy",
        "must be unset",
    );
    refused(
        &env,
        list_job(json!({"images": ["nginx"], "parallelism": "50%"})),
        None,
        "spec.parallelism",
        "percentages are not supported",
    );
    let stored = env
        .admit(list_job(json!({"images": ["nginx"]})), None)
        .unwrap();
    assert_eq!(stored["spec"]["completionPolicy"]["type"], "Always");
    assert_eq!(stored["spec"]["pullPolicy"]["timeoutSeconds"], 600);
    env.finish();
}

fn tag(t: &str) -> Value {
    json!({"tag": t, "createdAt": "2026-11-26T08:00:00Z", "version": 1})
}

/// Each CEL rule of every CRD is seen to fire by the refusal tests above (by its message), so a
/// rule that can never fire fails here rather than in a cluster.
#[test]
fn every_cel_rule_fires_on_some_bad_object() {
    let env = Env::connect();
    let mut messages = BTreeSet::new();
    for plural in ["imagepulljobs", "imagelistpulljobs", "nodeimages"] {
        collect_rule_messages(&crd(plural), &mut messages);
    }
    let bad = [
        job(json!({"image": "Nginx"})),
        job(json!({"image": "nginx", "parallelism": "1%"})),
        job(json!({"image": "nginx", "selector": {"names": ["a"], "matchLabels": {"a": "b"}}})),
        job(
            json!({"image": "nginx", "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        ),
        job(
            json!({"image": "nginx", "podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
        ),
        job(json!({"image": "nginx", "selector": {}, "podSelector": {}})),
        job(
            json!({"image": "nginx", "completionPolicy": {"type": "Never", "activeDeadlineSeconds": 900}}),
        ),
        job(json!({"image": "nginx", "completionPolicy": {"activeDeadlineSeconds": 1}})),
        list_job(json!({"images": ["Nginx"]})),
        node_image(json!({"images": {"": {"tags": [tag("1")]}}})),
    ];
    let mut fired: BTreeSet<String> = BTreeSet::new();
    for obj in bad {
        for e in env.admit(obj, None).unwrap_err() {
            fired.insert(e.detail);
        }
    }
    for e in env
        .admit(
            job(json!({"image": "nginx", "pullSecrets": ["b"]})),
            Some(job(json!({"image": "nginx"}))),
        )
        .unwrap_err()
    {
        fired.insert(e.detail);
    }
    let never_fired: Vec<_> = messages.difference(&fired).collect();
    assert!(
        never_fired.is_empty(),
        "rules that no bad object triggered: {never_fired:#?}"
    );
    assert!(
        fired.iter().all(|d| !d.contains("rule evaluation error")),
        "{fired:#?}"
    );
    env.finish();
}

fn collect_rule_messages(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for r in rules {
                    out.insert(
                        r["message"]
                            .as_str()
                            .expect("every rule has a message")
                            .to_string(),
                    );
                }
            }
            map.values().for_each(|x| collect_rule_messages(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_rule_messages(x, out)),
        _ => {}
    }
}

#[test]
fn a_refused_object_reads_like_the_api_server() {
    let env = Env::connect();
    let errors = env
        .admit(
            job(json!({"image": "nginx", "imagePullPolicy": "Never"})),
            None,
        )
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::Unsupported);
    assert_eq!(
        kruise_crd_validate::invalid_message("ImagePullJob.apps.kruise.io", "j", &errors),
        "ImagePullJob.apps.kruise.io \"j\" is invalid: spec.imagePullPolicy: Unsupported value: \"Never\": supported values: \"Always\", \"IfNotPresent\""
    );
    env.finish();
}
