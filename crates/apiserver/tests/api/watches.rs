//! Watches as controllers use them: resumed from a resourceVersion, bookmarks (periodic, and the
//! one that ends a streaming list's initial events), `410 Expired` from a version older than the
//! server's window (forced by compaction, or "1", older than any server's), a kube-rs watcher
//! riding out dropped watches, and lists at a given resourceVersion.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, VersionMatch, WatchParams,
};
use kube::core::WatchEvent;
use kube::Api;
use serde_json::json;

use crate::common::{api_error, Env};
use crate::{job, node_image};

#[tokio::test]
async fn watches_resume_from_a_resource_version() {
    let env = Env::connect().await;
    let jobs: Api<ImagePullJob> = Api::namespaced(env.client.clone(), &env.namespace);
    let spec = json!({"image": "nginx"});
    let a = jobs
        .create(&PostParams::default(), &job("a", spec.clone()))
        .await
        .unwrap();
    let rv = a.metadata.resource_version.clone().unwrap();
    jobs.create(&PostParams::default(), &job("b", spec))
        .await
        .unwrap();
    jobs.delete("a", &DeleteParams::default()).await.unwrap();

    let mut stream = jobs
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().expect("event") {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED b", "DELETED a"]);
    env.finish().await;
}

/// What a watch from a version the server no longer has gets: kube-apiserver's watch cache opens
/// the stream and sends one ERROR event with a `410 Expired` Status; a server may also refuse the
/// request itself with that Status. Either way the client must relist.
async fn assert_expired<K>(api: &Api<K>, resource_version: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + 'static,
{
    let status = match api
        .watch(&WatchParams::default().timeout(10), resource_version)
        .await
    {
        Err(e) => *api_error(e),
        Ok(stream) => {
            let mut stream = stream.boxed();
            let first = tokio::time::timeout(Duration::from_secs(15), stream.try_next())
                .await
                .expect("an event within 15s")
                .unwrap();
            match first {
                Some(WatchEvent::Error(e)) => kube::core::Status {
                    code: e.code,
                    reason: e.reason,
                    message: e.message,
                    ..Default::default()
                },
                other => panic!("expected a 410 ERROR event, got {other:?}"),
            }
        }
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    // kube-apiserver: "too old resource version: 1 (4242)" from its watch cache, "The
    // resourceVersion for the provided watch is too old." from etcd.
    assert!(status.message.contains("too old"), "{}", status.message);
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410() {
    // Compaction on demand is a test server control: always a local server.
    let env = Env::local().await;
    let images: Api<NodeImage> = Api::all(env.client.clone());
    let a = images
        .create(&PostParams::default(), &node_image(&env, "a"))
        .await
        .unwrap();
    let rv = a.metadata.resource_version.clone().unwrap();
    let b = images
        .create(&PostParams::default(), &node_image(&env, "b"))
        .await
        .unwrap();
    // Forgets the history up to now: `rv` is older than what is left.
    env.test_control("POST", "/_test/faults", Some(json!({"compact": true})))
        .await;
    assert_expired(&images, &rv).await;
    // The newest version is not too old: a watch from it gets what comes next.
    let newest = b.metadata.resource_version.unwrap();
    let mut stream = images
        .watch(&WatchParams::default().timeout(10), &newest)
        .await
        .unwrap()
        .boxed();
    images.delete("a", &DeleteParams::default()).await.unwrap();
    match stream.try_next().await.unwrap().expect("an event") {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("a")),
        other => panic!("expected the deletion, got {other:?}"),
    }
    env.finish().await;
}

#[tokio::test]
async fn a_watch_from_resource_version_1_is_too_old() {
    // Older than any server's window: kube-apiserver's watch cache starts at the version it
    // listed when it started (and etcd compacts every 5 minutes); the test server's history
    // starts after the objects it starts with.
    let env = Env::connect().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    assert_expired(&cms, "1").await;
    env.finish().await;
}

#[tokio::test]
async fn lists_read_the_resource_version_they_ask_for() {
    let env = Env::connect().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": env.labels()}, "data": {"v": "1"}}),
        )
        .unwrap()
    };
    let a = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let at_a = a.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &cm("b")).await.unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    let mine = ListParams::default().labels(&env.selector());
    let shown = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c.metadata.name.as_deref().unwrap(),
                    c.data.as_ref().unwrap()["v"]
                )
            })
            .collect()
    };
    // Exactly as it was when `a` was created: no `b`, `a` unpatched.
    let exact = cms
        .list(&mine.clone().at(&at_a).matching(VersionMatch::Exact))
        .await
        .unwrap();
    assert_eq!(
        exact.metadata.resource_version.as_deref(),
        Some(at_a.as_str())
    );
    assert_eq!(shown(exact), ["a=1"]);
    // At least as new: the latest.
    let newer = cms
        .list(&mine.clone().at(&at_a).matching(VersionMatch::NotOlderThan))
        .await
        .unwrap();
    assert_eq!(shown(newer), ["a=2", "b=1"]);
    // A version the server has not reached: kube-apiserver waits 3s for it, then gives up (and
    // kube-rs would retry that 504 for minutes).
    let future = (at_a.parse::<u64>().unwrap() + 1_000_000_000).to_string();
    let once: Api<ConfigMap> = Api::namespaced(env.client_without_retries(), &env.namespace);
    let too_large = api_error(
        once.list(
            &mine
                .clone()
                .at(&future)
                .matching(VersionMatch::NotOlderThan),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (too_large.code, too_large.reason.as_str()),
        (504, "Timeout")
    );
    assert!(
        too_large.message.starts_with("Too large resource version"),
        "{}",
        too_large.message
    );
    // resourceVersionMatch needs a resourceVersion.
    let reply = env
        .send(
            "GET",
            &format!(
                "/api/v1/namespaces/{}/configmaps?resourceVersionMatch=NotOlderThan",
                env.namespace
            ),
            "",
            b"",
        )
        .await;
    assert_eq!(reply.status, 422, "{:?}", reply.body);
    assert_eq!(
        reply.message(),
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_kube_watcher_recovers_from_dropped_watches() {
    // Dropping every watch is a test server control: always a local server.
    let env = Env::local().await;
    let images: Api<NodeImage> = Api::all(env.client.clone());
    let stream = kube::runtime::watcher(images.clone(), Default::default());
    let mut objects = kube::runtime::WatchStreamExt::applied_objects(stream).boxed();
    images
        .create(&PostParams::default(), &node_image(&env, "x"))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), objects.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("x"));
    env.test_control("POST", "/_test/faults", Some(json!({"dropWatches": true})))
        .await;
    images
        .create(&PostParams::default(), &node_image(&env, "y"))
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
    env.finish().await;
}

#[tokio::test]
async fn a_streaming_list_ends_its_initial_events_with_a_bookmark() {
    let env = Env::connect().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    for name in ["a", "b"] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::streaming_lists().timeout(20), "")
        .await
        .unwrap()
        .boxed();
    let mut added = Vec::new();
    loop {
        match stream.try_next().await.unwrap().expect("an event") {
            // A namespace may hold ConfigMaps of the cluster's own (kube-root-ca.crt).
            WatchEvent::Added(cm) => added.push(cm.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => {
                let ends = b
                    .metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .is_some_and(|v| v == "true");
                if ends {
                    assert!(!b.metadata.resource_version.is_empty());
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        added.contains(&"a".to_string()) && added.contains(&"b".to_string()),
        "{added:?}"
    );
    env.finish().await;
}

#[tokio::test]
async fn watches_that_ask_for_bookmarks_get_them() {
    let env = Env::connect().await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    // kube-apiserver sends one before a watch times out (and every minute); the test server
    // every two seconds.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let bookmark = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.try_next().await.unwrap() {
                Some(WatchEvent::Bookmark(b)) => return b,
                Some(_) => {}
                None => panic!("the watch ended without a bookmark"),
            }
        }
    })
    .await
    .expect("a bookmark within 15s");
    assert!(bookmark.metadata.resource_version.parse::<u64>().is_ok());
    env.finish().await;
}

/// `as=PartialObjectMetadata`: Secrets listed and watched as their metadata only, so a client
/// that needs to know which Secrets exist does not transfer their data.
#[tokio::test]
async fn secrets_listed_and_watched_as_metadata_carry_no_data() {
    use k8s_openapi::api::core::v1::Secret;
    let env = Env::connect().await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "big", "labels": env.labels()},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "eyJhdXRocyI6e319"},
    }))
    .unwrap();
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let selected = ListParams::default().fields("type=kubernetes.io/dockerconfigjson");
    let list = secrets.list_metadata(&selected).await.unwrap();
    let item = list
        .items
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("big"));
    assert_eq!(
        item.and_then(|s| s.metadata.resource_version.clone()),
        Some(rv.clone())
    );
    let raw = env
        .client
        .request_text(
            http::Request::get(format!(
                "/api/v1/namespaces/{}/secrets?fieldSelector=type%3Dkubernetes.io%2Fdockerconfigjson",
                env.namespace
            ))
            .header("Accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .unwrap();
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["kind"], "PartialObjectMetadataList", "{raw}");
    assert!(raw["items"][0].get("data").is_none(), "{raw}");
    assert_eq!(raw["items"][0]["kind"], "PartialObjectMetadata", "{raw}");

    let mut watch = secrets
        .watch_metadata(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    secrets
        .patch(
            "big",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {".dockerconfigjson": "e30="}})),
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.try_next())
        .await
        .expect("an event in time")
        .unwrap();
    match event {
        Some(WatchEvent::Modified(m)) => {
            assert_eq!(m.metadata.name.as_deref(), Some("big"));
            assert_ne!(m.metadata.resource_version, Some(rv));
        }
        other => panic!("expected the modification, got {other:?}"),
    }
    env.finish().await;
}
