//! One event store under two APIs: what kube-rs's `Recorder` writes through `events.k8s.io/v1`
//! is what `kubectl get events` and `kubectl describe` read through core `v1`, and the other way
//! round, with one resourceVersion.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use kube::runtime::events::{Event as Published, EventType, Recorder, Reporter};
use kube::{Api, Resource};
use serde_json::json;

use crate::common::{api_error, Env};

#[tokio::test]
async fn a_recorded_event_is_read_through_the_core_api() {
    let env = Env::connect().await;
    let ns = env.namespace.clone();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "about"}})).unwrap();
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let reference = cm.object_ref(&());
    let recorder = Recorder::new(
        env.client.clone(),
        Reporter {
            controller: "kruise-test".into(),
            instance: Some("tester".into()),
        },
    );
    let published = Published {
        type_: EventType::Normal,
        reason: "Pulled".into(),
        note: Some("pulled nginx".into()),
        action: "Pull".into(),
        secondary: None,
    };
    recorder.publish(&published, &reference).await.unwrap();

    // As `kubectl describe` finds them: by the involved object.
    let core: Api<CoreEvent> = Api::namespaced(env.client.clone(), &ns);
    let selector = format!(
        "involvedObject.name=about,involvedObject.namespace={ns},involvedObject.kind=ConfigMap,involvedObject.uid={}",
        cm.metadata.uid.as_deref().unwrap()
    );
    let listed = core
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "{listed:?}");
    let e = &listed.items[0];
    assert_eq!(e.involved_object.name.as_deref(), Some("about"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(e.message.as_deref(), Some("pulled nginx"));
    assert_eq!(e.reason.as_deref(), Some("Pulled"));
    assert_eq!(e.reporting_component.as_deref(), Some("kruise-test"));
    assert_eq!(e.reporting_instance.as_deref(), Some("tester"));
    assert!(e.event_time.is_some());
    let name = e.metadata.name.clone().unwrap();

    // The same object, the same resourceVersion, through the API it was written with.
    let events: Api<Event> = Api::namespaced(env.client.clone(), &ns);
    let stored = events.get(&name).await.unwrap();
    assert_eq!(
        stored.metadata.resource_version,
        e.metadata.resource_version
    );
    assert_eq!(stored.note.as_deref(), Some("pulled nginx"));

    // The recorder's second publish patches a series in; the core API shows it.
    recorder.publish(&published, &reference).await.unwrap();
    let again = core.get(&name).await.unwrap();
    assert_eq!(again.series.as_ref().map(|s| s.count), Some(Some(2)));
    let by_regarding = events
        .list(&ListParams::default().fields("regarding.name=about"))
        .await
        .unwrap();
    assert_eq!(by_regarding.items.len(), 1);
    let unsupported = events
        .list(&ListParams::default().fields("involvedObject.name=about"))
        .await
        .unwrap_err();
    assert_eq!(api_error(unsupported).code, 400);
    env.finish().await;
}

#[tokio::test]
async fn a_core_event_is_read_through_events_k8s_io() {
    let env = Env::connect().await;
    let ns = env.namespace.clone();
    let core: Api<CoreEvent> = Api::namespaced(env.client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(env.client.clone(), &ns);
    let mut watch = events
        .watch(&WatchParams::default().timeout(20), "0")
        .await
        .unwrap()
        .boxed();

    // An old-style event, as kubectl and client-go's legacy recorder write them.
    let old_style = CoreEvent {
        metadata: serde_json::from_value(json!({"name": "legacy"})).unwrap(),
        involved_object: ObjectReference {
            kind: Some("ConfigMap".into()),
            name: Some("about".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        message: Some("hello".into()),
        reason: Some("Said".into()),
        type_: Some("Normal".into()),
        count: Some(3),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("kubectl".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = core
        .create(&PostParams::default(), &old_style)
        .await
        .unwrap();
    let stored = events.get("legacy").await.unwrap();
    assert_eq!(
        stored.regarding.as_ref().unwrap().name.as_deref(),
        Some("about")
    );
    assert_eq!(stored.note.as_deref(), Some("hello"));
    assert_eq!(stored.deprecated_count, Some(3));
    assert_eq!(
        stored
            .deprecated_source
            .as_ref()
            .unwrap()
            .component
            .as_deref(),
        Some("kubectl")
    );
    assert_eq!(
        stored.metadata.resource_version,
        created.metadata.resource_version
    );
    loop {
        match watch.try_next().await.unwrap().expect("an event") {
            WatchEvent::Added(e) if e.metadata.name.as_deref() == Some("legacy") => {
                assert_eq!(e.note.as_deref(), Some("hello"));
                break;
            }
            WatchEvent::Added(_) | WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    // Writes through either API act on the one object.
    core.patch(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(json!({"count": 4})),
    )
    .await
    .unwrap();
    assert_eq!(
        events.get("legacy").await.unwrap().deprecated_count,
        Some(4)
    );
    let by_source = core
        .list(&ListParams::default().fields("source=kubectl,reason=Said"))
        .await
        .unwrap();
    assert_eq!(by_source.items.len(), 1);
    events
        .delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    assert!(core.get_opt("legacy").await.unwrap().is_none());
    env.finish().await;
}
