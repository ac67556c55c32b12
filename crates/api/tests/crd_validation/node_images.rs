//! NodeImages (one served version, no defaults written) and the versions each CRD serves.

use serde_json::{json, Value};

use super::{crd, node_image, refused, tag, Env, DIGEST};

#[test]
fn node_image_refusals_name_the_field() {
    let env = Env::connect();
    let ok = node_image(
        json!({"images": {"nginx": {"tags": [tag("1.25"), tag(DIGEST), tag(&format!("1.25@{DIGEST}"))]}}}),
    );
    let stored = env
        .admit(ok, None)
        .expect("a NodeImage with tag, digest and tag@digest is accepted");
    // No defaults are written into NodeImages: every stored byte costs the API server.
    assert_eq!(stored["spec"]["images"]["nginx"]["tags"][0], tag("1.25"));

    refused(
        &env,
        node_image(json!({"images": {"nginx": {"tags": [tag("")]}}})),
        None,
        "spec.images[nginx].tags[0].tag",
        "at least 1 chars",
    );
    refused(
        &env,
        node_image(json!({"images": {"nginx": {"tags": [tag("1"), tag("2"), tag("1")]}}})),
        None,
        "spec.images[nginx].tags[2]",
        "Duplicate value",
    );
    refused(
        &env,
        node_image(json!({"images": {"": {"tags": [tag("1")]}}})),
        None,
        "spec.images",
        "must not be empty",
    );
    refused(
        &env,
        node_image(json!({"images": {"nginx": {}}})),
        None,
        "spec.images[nginx].tags",
        "Required value",
    );
    let mut bad_version = tag("1");
    bad_version["version"] = json!(-1);
    refused(
        &env,
        node_image(json!({"images": {"nginx": {"tags": [bad_version]}}})),
        None,
        "spec.images[nginx].tags[0].version",
        "greater than or equal to 0",
    );

    let many = |n: usize| -> Value {
        (0..n)
            .map(|i| {
                (
                    format!("registry.example.com/app-{i}"),
                    json!({"tags": [tag("v1")]}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    env.admit(node_image(json!({"images": many(256)})), None)
        .expect("256 images are accepted");
    refused(
        &env,
        node_image(json!({"images": many(257)})),
        None,
        "spec.images",
        "must have at most 256 items",
    );
    env.finish();
}

#[test]
fn node_image_serves_one_version_and_jobs_serve_two() {
    let versions = |plural: &str| -> Vec<(String, bool, bool)> {
        crd(plural)["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["served"].as_bool().unwrap(),
                    v["storage"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        versions("nodeimages"),
        vec![("v1beta1".to_string(), true, true)]
    );
    for plural in ["imagepulljobs", "imagelistpulljobs"] {
        assert_eq!(
            versions(plural),
            vec![
                ("v1alpha1".to_string(), true, false),
                ("v1beta1".to_string(), true, true)
            ]
        );
        let c = crd(plural);
        let schemas: Vec<&Value> = c["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &v["schema"])
            .collect();
        assert_eq!(
            schemas[0], schemas[1],
            "{plural}: both versions share one schema"
        );
        assert!(c["spec"]
            .get("conversion")
            .is_none_or(|c| c["strategy"] == "None"));
    }
    assert_eq!(crd("nodeimages")["spec"]["scope"], "Cluster");
    assert_eq!(crd("imagepulljobs")["spec"]["scope"], "Namespaced");
}
