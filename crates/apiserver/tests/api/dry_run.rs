//! `dryRun=All`: every check of a write runs (defaults, validation, conflicts, AlreadyExists) and
//! the would-be object comes back, but nothing is stored, no watcher hears of it, and the
//! resourceVersion does not move.

use futures::{StreamExt, TryStreamExt};
use kruise_api::ImagePullJob;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use kube::Api;
use serde_json::json;

use crate::common::{api_error, Env};
use crate::job;

fn dry() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn dry_runs_check_everything_and_store_nothing() {
    let env = Env::connect().await;
    let jobs: Api<ImagePullJob> = Api::namespaced(env.client.clone(), &env.namespace);
    let real = jobs
        .create(
            &PostParams::default(),
            &job("real", json!({"image": "nginx"})),
        )
        .await
        .unwrap();
    let rv = real.metadata.resource_version.clone().unwrap();
    // A watch from now on: the dry runs below must not show up in it.
    let mut events = jobs
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();

    let would = jobs
        .create(&dry(), &job("dry", json!({"image": "nginx"})))
        .await
        .unwrap();
    assert_eq!(
        would.spec.template.timeout_seconds(),
        600,
        "defaults applied"
    );
    assert!(would.metadata.uid.is_some());
    assert_eq!(would.metadata.resource_version, None);
    assert!(jobs.get_opt("dry").await.unwrap().is_none());
    let invalid = jobs
        .create(
            &dry(),
            &job("bad", json!({"image": "nginx", "parallelism": -1})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(invalid).code, 422);
    let exists = jobs
        .create(&dry(), &job("real", json!({"image": "nginx"})))
        .await
        .unwrap_err();
    assert_eq!(api_error(exists).code, 409);

    let mut edited = real.clone();
    edited.spec.image = "nginx:2".into();
    let replaced = jobs.replace("real", &dry(), &edited).await.unwrap();
    assert_eq!(replaced.spec.image, "nginx:2");
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(
        replaced.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let dry_patch = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let patched = jobs
        .patch(
            "real",
            &dry_patch,
            &Patch::Merge(json!({"spec": {"parallelism": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.template.parallelism(), Ok(4));
    let stale = jobs
        .patch(
            "real",
            &dry_patch,
            &Patch::Merge(
                json!({"metadata": {"resourceVersion": "1"}, "spec": {"parallelism": 4}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(stale).code, 409);

    let dry_delete = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    jobs.delete("real", &dry_delete).await.unwrap();
    let still = jobs.get("real").await.unwrap();
    assert_eq!(still.spec.image, "nginx");
    assert_eq!(
        still.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );

    // The first event the watch sees is this real change, not any dry run.
    jobs.patch(
        "real",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": "nginx:3"}})),
    )
    .await
    .unwrap();
    loop {
        match events.try_next().await.unwrap().expect("an event") {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Modified(j) => {
                assert_eq!(j.spec.image, "nginx:3");
                break;
            }
            other => panic!("a dry run reached a watcher: {other:?}"),
        }
    }
    env.finish().await;
}

#[tokio::test]
async fn other_dry_run_values_are_refused() {
    let env = Env::connect().await;
    let path = format!(
        "/apis/apps.kruise.io/v1beta1/namespaces/{}/imagepulljobs?dryRun=true",
        env.namespace
    );
    let body = json!({"metadata": {"name": "j"}, "spec": {"image": "nginx"}}).to_string();
    let r = env
        .send("POST", &path, "application/json", body.as_bytes())
        .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (422, Some("Invalid")),
        "{r:?}"
    );
    // How Go prints the list of values has changed across versions; the rest has not.
    assert!(
        r.message()
            .starts_with("CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: ")
            && (r
                .message()
                .ends_with("\"true\"}: supported values: \"All\"")
                || r.message()
                    .ends_with("\"true\"]: supported values: \"All\"")),
        "{}",
        r.message()
    );
    assert_eq!(r.body["details"]["causes"][0]["field"], "dryRun");
    env.finish().await;
}
