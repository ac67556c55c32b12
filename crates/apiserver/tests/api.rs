//! The test API server through kube-rs, as the binaries will use it: what it accepts, what it
//! refuses (as kube-apiserver refuses it), and the semantics controllers depend on.

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::api::events::v1::Event;
use kruise_api::{ImagePullJob, NodeImage};
use kruise_test_apiserver::TestApiServer;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchParams,
};
use kube::core::WatchEvent;
use kube::{Api, Client};
use serde_json::json;

async fn server() -> (TestApiServer, Client) {
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
    let server = TestApiServer::start("127.0.0.1:0".parse().unwrap(), &[&crds], None)
        .await
        .unwrap();
    let config = kube::Config::new(server.url().parse().unwrap());
    (server, Client::try_from(config).unwrap())
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn job(name: &str, spec: serde_json::Value) -> ImagePullJob {
    serde_json::from_value(json!({"apiVersion": "apps.kruise.io/v1alpha1", "kind": "ImagePullJob", "metadata": {"name": name}, "spec": spec})).unwrap()
}

fn node(name: &str, labels: serde_json::Value) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

#[tokio::test]
async fn jobs_are_defaulted_validated_and_served_in_both_versions() {
    let (_s, client) = server().await;
    let jobs: Api<ImagePullJob> = Api::namespaced(client.clone(), "default");
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
    let raw = client
        .request_text(http_get(
            "/apis/apps.kruise.io/v1alpha1/namespaces/default/imagepulljobs/j1",
        ))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["apiVersion"], "apps.kruise.io/v1alpha1");
    assert_eq!(v["spec"]["pullPolicy"]["backoffLimit"], 3);

    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
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
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).unwrap()
}

#[tokio::test]
async fn stale_writes_conflict_and_generation_follows_the_spec() {
    let (_s, client) = server().await;
    let jobs: Api<ImagePullJob> = Api::namespaced(client, "default");
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
    assert_eq!(api_error(smp).code, 415);
}

#[tokio::test]
async fn list_pages_and_selectors() {
    let (_s, client) = server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..7 {
        let pool = if i % 2 == 0 { "gpu" } else { "cpu" };
        nodes
            .create(
                &PostParams::default(),
                &node(&format!("n{i}"), json!({"pool": pool})),
            )
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = nodes.list(&params).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|n| n.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
    let gpu = nodes
        .list(&ListParams::default().labels("pool in (gpu),pool!=cpu"))
        .await
        .unwrap();
    assert_eq!(gpu.items.len(), 4);
    let one = nodes
        .list(&ListParams::default().fields("metadata.name=n3"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let unsupported = nodes
        .list(&ListParams::default().fields("spec.podCIDR=x"))
        .await
        .unwrap_err();
    assert_eq!(api_error(unsupported).code, 400);
}

#[tokio::test]
async fn watches_resume_from_a_resource_version_and_expire() {
    let (s, client) = server().await;
    let images: Api<NodeImage> = Api::all(client.clone());
    let a = images
        .create(
            &PostParams::default(),
            &NodeImage::new("a", Default::default()),
        )
        .await
        .unwrap();
    let rv = a.metadata.resource_version.clone().unwrap();
    images
        .create(
            &PostParams::default(),
            &NodeImage::new("b", Default::default()),
        )
        .await
        .unwrap();
    images.delete("a", &DeleteParams::default()).await.unwrap();

    let mut stream = images
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().expect("event") {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED b", "DELETED a"]);

    // After the history is compacted, the same resourceVersion is too old.
    reqwest_post(&s, "/_test/faults", json!({"compact": true})).await;
    let mut stream = images
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().expect("event") {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn a_kube_watcher_recovers_from_dropped_watches() {
    let (s, client) = server().await;
    let images: Api<NodeImage> = Api::all(client.clone());
    let stream = kube::runtime::watcher(images.clone(), Default::default());
    let mut objects = kube::runtime::WatchStreamExt::applied_objects(stream).boxed();
    images
        .create(
            &PostParams::default(),
            &NodeImage::new("x", Default::default()),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), objects.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("x"));
    reqwest_post(&s, "/_test/faults", json!({"dropWatches": true})).await;
    images
        .create(
            &PostParams::default(),
            &NodeImage::new("y", Default::default()),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, objects.try_next())
            .await
            .expect("y seen after the watch was dropped")
            .unwrap()
            .unwrap();
        if next.metadata.name.as_deref() == Some("y") {
            break;
        }
    }
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_dependents_with_them() {
    let (_s, client) = server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let images: Api<NodeImage> = Api::all(client.clone());
    let n = nodes
        .create(&PostParams::default(), &node("n1", json!({})))
        .await
        .unwrap();
    let mut ni = NodeImage::new("n1", Default::default());
    ni.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: "n1".into(),
            uid: n.metadata.uid.clone().unwrap(),
            ..Default::default()
        },
    ]);
    ni.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    images.create(&PostParams::default(), &ni).await.unwrap();
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    // Garbage collection marks the NodeImage deleted; its finalizer holds it.
    let held = wait_for(|| async {
        images
            .get("n1")
            .await
            .ok()
            .filter(|o| o.metadata.deletion_timestamp.is_some())
    })
    .await;
    let added = images
        .patch(
            "n1",
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
            "n1",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}]))
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    wait_for(|| async { images.get_opt("n1").await.unwrap().is_none().then_some(()) }).await;
}

#[tokio::test]
async fn namespaces_must_exist_and_take_their_objects_along() {
    let (_s, client) = server().await;
    let missing: Api<Secret> = Api::namespaced(client.clone(), "nowhere");
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

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    let jobs: Api<ImagePullJob> = Api::namespaced(client.clone(), "team");
    let mut held = job("held", json!({"image": "nginx"}));
    held.metadata.finalizers = Some(vec!["apps.kruise.io/deletion-protection".into()]);
    jobs.create(&PostParams::default(), &held).await.unwrap();
    namespaces
        .delete("team", &DeleteParams::default())
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
    assert!(
        namespaces.get_opt("team").await.unwrap().is_some(),
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
            .get_opt("team")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn built_in_kinds_are_checked_like_the_real_server() {
    let (_s, client) = server().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
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

    let events: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"}, "eventTime": "2026-11-26T08:00:00.000000Z", "reportingController": "kruise-daemon",
        "reportingInstance": "n1", "action": "Pull", "reason": "PullImageSucceed", "type": "Normal",
        "regarding": {"apiVersion": "apps.kruise.io/v1beta1", "kind": "NodeImage", "name": "n1"}
    }))
    .unwrap();
    let status = api_error(
        events
            .create(&PostParams::default(), &ev)
            .await
            .unwrap_err(),
    );
    assert!(
        status.message.contains("regarding.namespace")
            && status.message.contains("does not match event.namespace"),
        "{}",
        status.message
    );
    let in_default: Api<Event> = Api::namespaced(client.clone(), "default");
    in_default
        .create(&PostParams::default(), &ev)
        .await
        .expect("events about cluster-scoped objects live in default");

    let nodes: Api<Node> = Api::all(client.clone());
    let bad_name = api_error(
        nodes
            .create(&PostParams::default(), &node("Node_1", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad_name.code, 422);
    assert!(
        bad_name.message.contains("metadata.name"),
        "{}",
        bad_name.message
    );
}

#[tokio::test]
async fn faults_fail_writes_and_requests_are_counted() {
    let (s, client) = server().await;
    let nodes: Api<Node> = Api::all(client.clone());
    reqwest_post(
        &s,
        "/_test/faults",
        json!({"failWrites": 1, "failCode": 500}),
    )
    .await;
    let failed = api_error(
        nodes
            .create(&PostParams::default(), &node("n", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    // kube-rs retries 429 (with the Retry-After the server sends); the third attempt succeeds.
    reqwest_post(
        &s,
        "/_test/faults",
        json!({"failWrites": 2, "failCode": 429}),
    )
    .await;
    nodes
        .create(&PostParams::default(), &node("n", json!({})))
        .await
        .unwrap();
    nodes.get("n").await.unwrap();
    let counts: serde_json::Value =
        serde_json::from_str(&get_text(&s, "/_test/requests").await).unwrap();
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
}

async fn wait_for<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reqwest_post(s: &TestApiServer, path: &str, body: serde_json::Value) {
    raw_http(s, "POST", path, Some(body)).await;
}

async fn get_text(s: &TestApiServer, path: &str) -> String {
    raw_http(s, "GET", path, None).await
}

/// A plain HTTP/1.0 request to the server's `/_test/` endpoints.
async fn raw_http(
    s: &TestApiServer,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
