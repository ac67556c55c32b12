//! The test API server through kube-rs, as the binaries will use it: what it accepts, what it
//! refuses (as kube-apiserver refuses it), and the semantics controllers depend on. Every test
//! but those of the test server's own controls runs unchanged on the cluster of `E2E_KUBECONFIG`
//! (see `common`), so what it asserts is what kube-apiserver does.

mod common;
#[path = "api/dry_run.rs"]
mod dry_run;
#[path = "api/events.rs"]
mod events;
#[path = "api/field_validation.rs"]
mod field_validation;
#[path = "api/kubectl.rs"]
mod kubectl;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/tokens.rs"]
mod tokens;
#[path = "api/watches.rs"]
mod watches;

use common::{api_error, wait_for, Env};

use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::api::events::v1::Event;
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::Api;
use serde_json::json;

fn job(name: &str, spec: serde_json::Value) -> ImagePullJob {
    serde_json::from_value(json!({"apiVersion": "apps.kruise.io/v1alpha1", "kind": "ImagePullJob", "metadata": {"name": name}, "spec": spec})).unwrap()
}

/// A Node object labelled for this test (no kubelet behind it).
fn node(env: &Env, name: &str, labels: serde_json::Value) -> Node {
    let mut all = env.labels();
    for (k, v) in labels.as_object().into_iter().flatten() {
        all[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name, "labels": all}})).unwrap()
}

/// A NodeImage labelled for this test.
fn node_image(env: &Env, name: &str) -> NodeImage {
    let mut ni = NodeImage::new(name, Default::default());
    ni.metadata.labels = serde_json::from_value(env.labels()).unwrap();
    ni
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).unwrap()
}

#[tokio::test]
async fn jobs_are_defaulted_validated_and_served_in_both_versions() {
    let env = Env::connect().await;
    let ns = env.namespace.clone();
    let jobs: Api<ImagePullJob> = Api::namespaced(env.client.clone(), &ns);
    let created = jobs
        .create(
            &PostParams::default(),
            &job("j1", json!({"image": "nginx:1.25"})),
        )
        .await
        .unwrap();
    assert_eq!(created.spec.template.timeout_seconds(), 600);
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    // The same object through the other served version.
    let raw = env
        .client
        .request_text(http_get(&format!(
            "/apis/apps.kruise.io/v1alpha1/namespaces/{ns}/imagepulljobs/j1"
        )))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["apiVersion"], "apps.kruise.io/v1alpha1");
    assert_eq!(v["spec"]["pullPolicy"]["backoffLimit"], 3);

    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &ns,
        &ApiResource::erase::<ImagePullJob>(&()),
    );
    let raw_job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps.kruise.io/v1beta1", "kind": "ImagePullJob", "metadata": {"name": "j2"},
        "spec": {"image": "nginx", "imagePullPolicy": "Never"},
    }))
    .unwrap();
    let bad = dynamic
        .create(&PostParams::default(), &raw_job)
        .await
        .unwrap_err();
    let status = api_error(bad);
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("spec.imagePullPolicy: Unsupported value: \"Never\""),
        "{}",
        status.message
    );
    assert_eq!(status.reason, "Invalid");

    let exists = jobs
        .create(
            &PostParams::default(),
            &job("j1", json!({"image": "nginx"})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(exists).code, 409);
    env.finish().await;
}

#[tokio::test]
async fn stale_writes_conflict_and_generation_follows_the_spec() {
    let env = Env::connect().await;
    let jobs: Api<ImagePullJob> = Api::namespaced(env.client.clone(), &env.namespace);
    let first = jobs
        .create(&PostParams::default(), &job("j", json!({"image": "nginx"})))
        .await
        .unwrap();
    let mut edited = first.clone();
    edited.spec.image = "nginx:2".into();
    let second = jobs
        .replace("j", &PostParams::default(), &edited)
        .await
        .unwrap();
    assert_eq!(second.metadata.generation, Some(2));
    // Writing from the first read again is stale.
    let mut stale = first.clone();
    stale.spec.image = "nginx:3".into();
    let conflict = api_error(
        jobs.replace("j", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(conflict.code, 409);
    assert!(
        conflict.message.contains("the object has been modified"),
        "{}",
        conflict.message
    );
    // A merge patch carrying a stale resourceVersion conflicts too.
    let patch = json!({"metadata": {"resourceVersion": first.metadata.resource_version}, "spec": {"parallelism": 3}});
    assert_eq!(
        api_error(
            jobs.patch("j", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_err()
        )
        .code,
        409
    );

    // Status goes through /status only, and does not bump the generation.
    let st = jobs
        .patch_status(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"desired": 5, "active": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().unwrap().desired, 5);
    assert_eq!(st.metadata.generation, Some(2));
    let ignored = jobs
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"desired": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(
        ignored.status.unwrap().desired,
        5,
        "the main resource cannot write status"
    );
    // A patch that changes nothing writes nothing.
    let same = jobs
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "nginx:2"}})),
        )
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, st.metadata.resource_version);
    // Strategic merge is refused for custom resources, as kube-apiserver refuses it.
    let smp = jobs
        .patch(
            "j",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"parallelism": 2}})),
        )
        .await
        .unwrap_err();
    let smp = api_error(smp);
    assert_eq!(smp.code, 415);
    assert_eq!(
        smp.message,
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    env.finish().await;
}

#[tokio::test]
async fn list_pages_and_selectors() {
    let env = Env::connect().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let names: Vec<String> = (0..7).map(|i| env.name(&format!("n{i}"))).collect();
    for (i, name) in names.iter().enumerate() {
        let pool = if i % 2 == 0 { "gpu" } else { "cpu" };
        nodes
            .create(
                &PostParams::default(),
                &node(&env, name, json!({"pool": pool})),
            )
            .await
            .unwrap();
    }
    // Other users' Nodes may be listed too: only this test's label is asked for.
    let mut listed = Vec::new();
    let mut params = ListParams::default().labels(&env.selector()).limit(3);
    loop {
        let page = nodes.list(&params).await.unwrap();
        assert!(page.items.len() <= 3);
        listed.extend(page.items.iter().map(|n| n.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(listed, names);
    let gpu = nodes
        .list(&ListParams::default().labels(&format!("pool in (gpu),pool!=cpu,{}", env.selector())))
        .await
        .unwrap();
    assert_eq!(gpu.items.len(), 4);
    let one = nodes
        .list(&ListParams::default().fields(&format!("metadata.name={}", names[3])))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let unsupported = nodes
        .list(&ListParams::default().fields("spec.podCIDR=x"))
        .await
        .unwrap_err();
    assert_eq!(api_error(unsupported).code, 400);
    env.finish().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_dependents_with_them() {
    let env = Env::connect().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let images: Api<NodeImage> = Api::all(env.client.clone());
    let name = env.name("n1");
    let n = nodes
        .create(&PostParams::default(), &node(&env, &name, json!({})))
        .await
        .unwrap();
    let mut ni = node_image(&env, &name);
    ni.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: name.clone(),
            uid: n.metadata.uid.clone().unwrap(),
            ..Default::default()
        },
    ]);
    ni.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    images.create(&PostParams::default(), &ni).await.unwrap();
    nodes.delete(&name, &DeleteParams::default()).await.unwrap();
    // Garbage collection marks the NodeImage deleted; its finalizer holds it.
    let held = wait_for(|| async {
        images
            .get(&name)
            .await
            .ok()
            .filter(|o| o.metadata.deletion_timestamp.is_some())
    })
    .await;
    let added = images
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
            ),
        )
        .await;
    assert_eq!(
        api_error(added.unwrap_err()).code,
        403,
        "no new finalizers once deleting"
    );
    images
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}]))
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    wait_for(|| async { images.get_opt(&name).await.unwrap().is_none().then_some(()) }).await;
    env.finish().await;
}

#[tokio::test]
async fn namespaces_must_exist_and_take_their_objects_along() {
    let env = Env::connect().await;
    let missing: Api<Secret> = Api::namespaced(env.client.clone(), &env.name("nowhere"));
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}}))
            .unwrap();
    assert_eq!(
        api_error(
            missing
                .create(&PostParams::default(), &secret)
                .await
                .unwrap_err()
        )
        .code,
        404
    );

    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let team = env.name("team");
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": team, "labels": env.labels()}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let jobs: Api<ImagePullJob> = Api::namespaced(env.client.clone(), &team);
    let mut held = job("held", json!({"image": "nginx"}));
    held.metadata.finalizers = Some(vec!["apps.kruise.io/deletion-protection".into()]);
    jobs.create(&PostParams::default(), &held).await.unwrap();
    namespaces
        .delete(&team, &DeleteParams::default())
        .await
        .unwrap();
    let refused = jobs
        .create(
            &PostParams::default(),
            &job("late", json!({"image": "nginx"})),
        )
        .await
        .unwrap_err();
    let status = api_error(refused);
    assert_eq!(status.code, 403);
    assert!(
        status.message.contains("being terminated"),
        "{}",
        status.message
    );
    // The namespace waits for the job's finalizer (a real cluster's namespace controller only
    // gets to the job after a moment: wait until it is marked).
    wait_for(|| async {
        jobs.get("held")
            .await
            .ok()
            .filter(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(
        namespaces.get_opt(&team).await.unwrap().is_some(),
        "waits for the finalizer"
    );
    jobs.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for(|| async {
        namespaces
            .get_opt(&team)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    env.finish().await;
}

#[tokio::test]
async fn built_in_kinds_are_checked_like_the_real_server() {
    let env = Env::connect().await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let bad: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}
    }))
    .unwrap();
    let status = api_error(
        secrets
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("data[.dockerconfigjson]"),
        "{}",
        status.message
    );

    // An event about a cluster-scoped object (no regarding.namespace) belongs in `default` (or
    // `kube-system`), not in another namespace; the rule names the internal field.
    let name = env.name("e1");
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": env.labels()}, "eventTime": "2026-11-26T08:00:00.000000Z",
        "reportingController": "kruise-daemon", "reportingInstance": "n1", "action": "Pull",
        "reason": "PullImageSucceed", "type": "Normal",
        "regarding": {"apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage", "name": "n1"}
    }))
    .unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let status = api_error(
        events
            .create(&PostParams::default(), &ev)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        status.message,
        format!("Event.events.k8s.io \"{name}\" is invalid: involvedObject.namespace: Invalid value: \"\": does not match event.namespace")
    );
    let in_default: Api<Event> = Api::namespaced(env.client.clone(), "default");
    in_default
        .create(&PostParams::default(), &ev)
        .await
        .expect("events about cluster-scoped objects live in default");
    in_default
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();

    let nodes: Api<Node> = Api::all(env.client.clone());
    let bad_name = api_error(
        nodes
            .create(&PostParams::default(), &node(&env, "Node_1", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad_name.code, 422);
    assert!(
        bad_name.message.contains("metadata.name"),
        "{}",
        bad_name.message
    );
    env.finish().await;
}

#[tokio::test]
async fn faults_fail_writes_and_requests_are_counted() {
    // Injected failures and request records are test server controls: always a local server.
    let env = Env::local().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let failed = env
        .test_control(
            "POST",
            "/_test/faults",
            Some(json!({"failWrites": 1, "failCode": 500})),
        )
        .await;
    assert_eq!(failed["ok"], true);
    let failed = api_error(
        nodes
            .create(&PostParams::default(), &node(&env, "n", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    // kube-rs retries 429 (with the Retry-After the server sends); the third attempt succeeds.
    env.test_control(
        "POST",
        "/_test/faults",
        Some(json!({"failWrites": 2, "failCode": 429})),
    )
    .await;
    nodes
        .create(&PostParams::default(), &node(&env, "n", json!({})))
        .await
        .unwrap();
    nodes.get("n").await.unwrap();
    let counts = env.test_control("GET", "/_test/requests", None).await;
    let count = |verb: &str| {
        counts["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["verb"] == verb && r["resource"] == "nodes")
            .map(|r| r["count"].as_u64().unwrap())
    };
    assert_eq!(count("create"), Some(4), "one 500, two 429s, one success");
    assert_eq!(count("get"), Some(1));
    env.finish().await;
}
