//! The checked-in `config/crd/*.yaml` are what `crdgen` writes from the Rust types today.

use std::path::Path;

#[test]
fn checked_in_crds_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
    let mut stale = Vec::new();
    for (file, crd) in kruise_api::crd::all() {
        let want = kruise_api::crd::to_yaml(&crd);
        let have = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
        if have != want {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale CRDs {stale:?}: run `cargo run -p kruise-api --bin crdgen` and commit config/crd/"
    );
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        kruise_api::crd::all().len(),
        "config/crd/ holds a file crdgen does not write"
    );
}

#[test]
fn typed_objects_round_trip_through_their_json() {
    let job: kruise_api::ImagePullJob = serde_yaml::from_str(
        "apiVersion: apps.kruise.io/v1alpha1\nkind: ImagePullJob\nmetadata: {name: a}\nspec:\n  image: nginx\n  parallelism: \"10\"\n  completionPolicy: {type: Never}\n",
    )
    .unwrap();
    assert_eq!(job.spec.template.parallelism(), Ok(10));
    assert_eq!(
        job.spec.template.completion_type(),
        kruise_api::CompletionPolicyType::Never
    );
    assert_eq!(job.spec.template.timeout_seconds(), 600);
    let back = serde_json::to_value(&job.spec).unwrap();
    assert_eq!(
        back,
        serde_json::json!({"image": "nginx", "parallelism": "10", "completionPolicy": {"type": "Never"}})
    );
}
