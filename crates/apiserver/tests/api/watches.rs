//! Watches as controllers use them: resumed from a resourceVersion, bookmarks (periodic, and the
//! one that ends a streaming list's initial events), `410 Gone` from a compacted version, and a
//! kube-rs watcher riding out dropped watches.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kruise_api::{ImagePullJob, NodeImage};
use kube::api::{DeleteParams, ListParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use kube::Api;
use serde_json::json;

use crate::common::Env;
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
    images
        .create(&PostParams::default(), &node_image(&env, "b"))
        .await
        .unwrap();
    // Forgets the history up to now: `rv` is older than what is left.
    env.test_control("POST", "/_test/faults", Some(json!({"compact": true})))
        .await;
    let mut stream = images
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().expect("event") {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message.starts_with("too old resource version: "),
                "{}",
                e.message
            );
        }
        other => panic!("expected 410, got {other:?}"),
    }
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
