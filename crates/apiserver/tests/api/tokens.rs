//! Service-account tokens as kruise-daemons use them to authenticate each other: a projected
//! token with a dedicated audience (here requested through a ServiceAccount's `/token`, as the
//! kubelet does) and checked with a TokenReview. What a review accepts (the account, its groups,
//! the node the token is bound to) and what it refuses (another audience, an unknown token, an
//! expired one, one whose ServiceAccount is gone or was recreated), as kube-apiserver answers.

use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
    TokenReviewStatus,
};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::common::{api_error, wait_for, Env};

const AUDIENCE: &str = "kruise-daemon-peer";

fn service_account(name: &str) -> ServiceAccount {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn node(env: &Env, name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": env.labels()}})).unwrap()
}

fn request(audiences: &[&str], seconds: Option<i64>, bound: Option<(&str, &str)>) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            expiration_seconds: seconds,
            bound_object_ref: bound.map(|(kind, name)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
                name: Some(name.into()),
                uid: None,
            }),
        },
        ..Default::default()
    }
}

async fn token(
    accounts: &Api<ServiceAccount>,
    name: &str,
    req: &TokenRequest,
) -> Result<TokenRequest, kube::Error> {
    accounts
        .create_subresource("token", name, &PostParams::default(), req)
        .await
}

async fn review(env: &Env, token: &str, audiences: &[&str]) -> TokenReviewStatus {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
        },
        ..Default::default()
    };
    Api::<TokenReview>::all(env.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("a review is answered")
        .status
        .expect("a review has a status")
}

fn refused(status: &TokenReviewStatus) -> String {
    assert_ne!(status.authenticated, Some(true), "{status:?}");
    status.error.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_token_reviews_as_its_service_account_and_node() {
    let env = Env::connect().await;
    let ns = env.namespace.clone();
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &ns);
    let sa = accounts
        .create(&PostParams::default(), &service_account("kruise-daemon"))
        .await
        .unwrap();
    let sa_uid = sa.metadata.uid.clone().unwrap();
    let nodes: Api<Node> = Api::all(env.client.clone());
    let node_name = env.name("n1");
    let n = nodes
        .create(&PostParams::default(), &node(&env, &node_name))
        .await
        .unwrap();

    // Bound to the Node: what a daemon's projected token says about where it runs.
    let issued = token(
        &accounts,
        "kruise-daemon",
        &request(&[AUDIENCE], None, Some(("Node", &node_name))),
    )
    .await
    .unwrap();
    assert_eq!(issued.metadata.name.as_deref(), Some("kruise-daemon"));
    assert_eq!(issued.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(issued.spec.audiences, [AUDIENCE]);
    assert_eq!(issued.spec.expiration_seconds, Some(3600), "the default");
    let status = issued.status.unwrap();
    assert!(!status.token.is_empty());
    let lifetime = status.expiration_timestamp.0.as_second() - unix_now();
    assert!((3500..=3700).contains(&lifetime), "{lifetime}");

    let reviewed = review(&env, &status.token, &[AUDIENCE, "other"]).await;
    assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
    assert_eq!(
        reviewed.audiences.as_deref(),
        Some(&[AUDIENCE.to_string()][..])
    );
    let user = reviewed.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:kruise-daemon").as_str())
    );
    assert_eq!(user.uid.as_deref(), Some(sa_uid.as_str()));
    let groups = user.groups.unwrap();
    for group in [
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_string(),
    ] {
        assert!(groups.contains(&group), "{groups:?}");
    }
    let extra = user.extra.unwrap();
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        [node_name.as_str()]
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-uid"],
        [n.metadata.uid.clone().unwrap()]
    );
    assert!(
        extra["authentication.kubernetes.io/credential-id"][0].starts_with("JTI="),
        "{extra:?}"
    );
    assert!(!extra.contains_key("authentication.kubernetes.io/pod-name"));

    // Bound to a pod: its name and uid, and the node it runs on.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "daemon"},
        "spec": {"serviceAccountName": "kruise-daemon", "nodeName": node_name,
            "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let issued = token(
        &accounts,
        "kruise-daemon",
        &request(&[AUDIENCE], Some(600), Some(("Pod", "daemon"))),
    )
    .await
    .unwrap();
    assert_eq!(issued.spec.expiration_seconds, Some(600));
    let reviewed = review(&env, &issued.status.unwrap().token, &[AUDIENCE]).await;
    assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
    let extra = reviewed.user.unwrap().extra.unwrap();
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], ["daemon"]);
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"],
        [pod.metadata.uid.clone().unwrap()]
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        [node_name.as_str()]
    );

    // Without a bound object: the account alone.
    let issued = token(
        &accounts,
        "kruise-daemon",
        &request(&[AUDIENCE], None, None),
    )
    .await
    .unwrap();
    let reviewed = review(&env, &issued.status.unwrap().token, &[AUDIENCE]).await;
    assert_eq!(reviewed.authenticated, Some(true), "{reviewed:?}");
    let extra = reviewed.user.unwrap().extra.unwrap_or_default();
    assert!(
        !extra.contains_key("authentication.kubernetes.io/node-name"),
        "{extra:?}"
    );
    env.finish().await;
}

/// Seconds since the epoch, for comparing with what the server answers.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn reviews_refuse_another_audience_an_unknown_token_and_a_deleted_account() {
    let env = Env::connect().await;
    let ns = env.namespace.clone();
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &ns);
    accounts
        .create(&PostParams::default(), &service_account("peer"))
        .await
        .unwrap();
    let issued = token(&accounts, "peer", &request(&[AUDIENCE], None, None))
        .await
        .unwrap()
        .status
        .unwrap()
        .token;

    let other = refused(&review(&env, &issued, &["other"]).await);
    assert!(
        other.contains(&format!(
            r#"token audiences ["{AUDIENCE}"] is invalid for the target audiences ["other"]"#
        )),
        "{other}"
    );
    // No audiences asked for means the API server's own, which the token is not for.
    let own = refused(&review(&env, &issued, &[]).await);
    assert!(own.contains("is invalid for the target audiences"), "{own}");
    let unknown = refused(&review(&env, "not-a-token", &[AUDIENCE]).await);
    assert!(unknown.contains("invalid bearer token"), "{unknown}");
    let forged = format!("{issued}x");
    let forged = refused(&review(&env, &forged, &[AUDIENCE]).await);
    assert!(forged.contains("invalid bearer token"), "{forged}");

    // The account deleted, then recreated under the same name: the token stays refused (a real
    // cluster caches a success for a few seconds, hence the wait).
    accounts
        .delete("peer", &DeleteParams::default())
        .await
        .unwrap();
    let gone = wait_for(|| async {
        let status = review(&env, &issued, &[AUDIENCE]).await;
        (status.authenticated != Some(true)).then_some(status)
    })
    .await;
    assert!(refused(&gone).contains("invalid bearer token"), "{gone:?}");
    accounts
        .create(&PostParams::default(), &service_account("peer"))
        .await
        .unwrap();
    let recreated = refused(&review(&env, &issued, &[AUDIENCE]).await);
    assert!(recreated.contains("invalid bearer token"), "{recreated}");
    env.finish().await;
}

#[tokio::test]
async fn token_requests_are_checked_like_the_real_server() {
    let env = Env::connect().await;
    let ns = env.namespace.clone();
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &ns);
    let missing = api_error(
        token(&accounts, "nobody", &request(&[AUDIENCE], None, None))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (
            missing.code,
            missing.reason.as_str(),
            missing.message.as_str()
        ),
        (404, "NotFound", r#"serviceaccounts "nobody" not found"#)
    );

    accounts
        .create(&PostParams::default(), &service_account("peer"))
        .await
        .unwrap();
    let short = api_error(
        token(&accounts, "peer", &request(&[AUDIENCE], Some(60), None))
            .await
            .unwrap_err(),
    );
    assert_eq!(short.code, 422);
    assert_eq!(
        short.message,
        r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
    );
    let no_node = api_error(
        token(
            &accounts,
            "peer",
            &request(&[AUDIENCE], None, Some(("Node", &env.name("absent")))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((no_node.code, no_node.reason.as_str()), (404, "NotFound"));
    let config_map = api_error(
        token(
            &accounts,
            "peer",
            &request(&[AUDIENCE], None, Some(("ConfigMap", "c"))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(config_map.code, 400);
    assert_eq!(
        config_map.message,
        "cannot bind token to object of type /v1, Kind=ConfigMap"
    );

    // A pod running as another account cannot carry this one's token.
    accounts
        .create(&PostParams::default(), &service_account("other"))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "other"},
        "spec": {"serviceAccountName": "other", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let other = api_error(
        token(
            &accounts,
            "peer",
            &request(&[AUDIENCE], None, Some(("Pod", "other"))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(other.code, 400);
    assert_eq!(
        other.message,
        r#"cannot bind token for serviceaccount "peer" to pod running with different serviceaccount name."#
    );

    // A review needs a token.
    let empty = Api::<TokenReview>::all(env.client.clone())
        .create(&PostParams::default(), &TokenReview::default())
        .await
        .unwrap_err();
    assert_eq!(api_error(empty).code, 400);
    env.finish().await;
}

#[tokio::test]
async fn tokens_expire_by_the_token_clock() {
    // The token clock is a test server control: always a local server.
    let env = Env::local().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    accounts
        .create(&PostParams::default(), &service_account("peer"))
        .await
        .unwrap();
    let issued = token(&accounts, "peer", &request(&[AUDIENCE], Some(600), None))
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    assert_eq!(
        review(&env, &issued, &[AUDIENCE]).await.authenticated,
        Some(true)
    );
    // Past its expiry, within the minute of clock skew a review allows.
    env.test_control("POST", "/_test/clock", Some(json!({"advanceSeconds": 630})))
        .await;
    assert_eq!(
        review(&env, &issued, &[AUDIENCE]).await.authenticated,
        Some(true)
    );
    env.test_control("POST", "/_test/clock", Some(json!({"advanceSeconds": 60})))
        .await;
    let expired = refused(&review(&env, &issued, &[AUDIENCE]).await);
    assert_eq!(
        expired,
        "[invalid bearer token, service account token has expired]"
    );
    // A token issued now lives from the moved clock on.
    let fresh = token(&accounts, "peer", &request(&[AUDIENCE], None, None))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        review(&env, &fresh.token, &[AUDIENCE]).await.authenticated,
        Some(true)
    );
    assert!(fresh.expiration_timestamp.0.as_second() > unix_now() + 3600 + 600);
    env.finish().await;
}

#[tokio::test]
async fn discovery_lists_token_requests_and_reviews_as_create_only() {
    let env = Env::connect().await;
    let core = env.send("GET", "/api/v1", "", b"").await;
    let resources = core.body["resources"].as_array().unwrap();
    let find = |list: &[serde_json::Value], name: &str| {
        list.iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not listed"))
    };
    let sa = find(resources, "serviceaccounts");
    assert_eq!(sa["kind"], "ServiceAccount");
    assert_eq!(sa["namespaced"], true);
    assert_eq!(sa["shortNames"], json!(["sa"]));
    let tok = find(resources, "serviceaccounts/token");
    assert_eq!(
        (&tok["group"], &tok["version"], &tok["kind"], &tok["verbs"]),
        (
            &json!("authentication.k8s.io"),
            &json!("v1"),
            &json!("TokenRequest"),
            &json!(["create"])
        )
    );
    let auth = env
        .send("GET", "/apis/authentication.k8s.io/v1", "", b"")
        .await;
    let reviews = find(auth.body["resources"].as_array().unwrap(), "tokenreviews");
    assert_eq!(reviews["kind"], "TokenReview");
    assert_eq!(reviews["namespaced"], false);
    assert_eq!(reviews["verbs"], json!(["create"]));
    // Reviews are only created.
    let listed = env
        .send(
            "GET",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "",
            b"",
        )
        .await;
    assert_eq!(listed.status, 405, "{:?}", listed.body);
    env.finish().await;
}
