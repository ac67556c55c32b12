//! A real kubectl's typed commands, which send protobuf for built-in kinds
//! (`application/vnd.kubernetes.protobuf`): create, get, label and delete work as on a cluster.
//! Workloads too: `create deployment` and `run` send a Deployment and a Pod typed, `create -f`
//! sends JSON. ServiceAccounts and their tokens too (`create serviceaccount`, `create token`).
//! kubectl is `$KUBECTL`, or the one on the PATH (`.ci/install-deps` installs a pinned one).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;

use crate::common::Env;

/// Runs kubectl against the test's server: its stdout, or a panic with its stderr.
async fn kubectl(env: &Env, args: &[&str]) -> Result<String, String> {
    let program = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = tokio::process::Command::new(&program)
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 60s"))
        .unwrap_or_else(|e| {
            panic!("{program} cannot run ({e}): install it with .ci/install-deps, or set KUBECTL")
        });
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

async fn ok(env: &Env, args: &[&str]) -> String {
    kubectl(env, args)
        .await
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

#[tokio::test]
async fn kubectl_creates_labels_and_deletes_built_in_objects() {
    let env = Env::connect().await;
    let ns = env.name("kubectl");
    assert_eq!(
        ok(&env, &["create", "namespace", &ns]).await,
        format!("namespace/{ns} created")
    );
    // Labelled as the test's own, so a sweep finds it if the test fails before deleting it.
    let label = env.selector();
    assert_eq!(
        ok(&env, &["label", "namespace", &ns, &label]).await,
        format!("namespace/{ns} labeled")
    );
    let listed = ok(&env, &["get", "namespaces", "-l", &label]).await;
    assert!(
        listed.starts_with("NAME") && listed.contains(&ns),
        "{listed}"
    );
    ok(
        &env,
        &[
            "create",
            "secret",
            "generic",
            "s",
            "-n",
            &ns,
            "--from-literal=user=admin",
        ],
    )
    .await;
    ok(
        &env,
        &[
            "create",
            "configmap",
            "c",
            "-n",
            &ns,
            "--from-literal=mode=fast",
        ],
    )
    .await;
    let secret = Api::<Secret>::namespaced(env.client.clone(), &ns)
        .get("s")
        .await
        .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.data.unwrap()["user"].0, b"admin");
    let cm = Api::<ConfigMap>::namespaced(env.client.clone(), &ns)
        .get("c")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["mode"], "fast");
    // Waits until the namespace is gone, as kubectl does by default.
    assert_eq!(
        ok(&env, &["delete", "namespace", &ns, "--timeout=60s"]).await,
        format!("namespace \"{ns}\" deleted")
    );
    let gone = kubectl(&env, &["get", "namespace", &ns]).await.unwrap_err();
    assert!(gone.contains("NotFound"), "{gone}");
    env.finish().await;
}

/// `kubectl create deployment` and `kubectl run` send their object as protobuf; what kubectl
/// asked for (zero replicas, the image, the port, the labels) is what the server keeps.
#[tokio::test]
async fn kubectl_creates_a_deployment_and_runs_a_pod_typed() {
    let env = Env::connect().await;
    let ns = env.name("kubectl-apps");
    ok(&env, &["create", "namespace", &ns]).await;
    ok(&env, &["label", "namespace", &ns, &env.selector()]).await;
    let image = "registry.k8s.io/pause:3.10";
    let created = ok(
        &env,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            &ns,
            "--image",
            image,
            "--replicas=0",
            "--port=8080",
        ],
    )
    .await;
    assert_eq!(created, "deployment.apps/web created");
    let deployment = Api::<Deployment>::namespaced(env.client.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(0), "zero replicas must stay zero");
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some(image));
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8080);
    let created = ok(
        &env,
        &[
            "run",
            "p",
            "-n",
            &ns,
            "--image",
            image,
            "--labels",
            &env.selector(),
        ],
    )
    .await;
    assert_eq!(created, "pod/p created");
    let pod = Api::<Pod>::namespaced(env.client.clone(), &ns)
        .get("p")
        .await
        .unwrap();
    assert_eq!(
        pod.spec.unwrap().containers[0].image.as_deref(),
        Some(image)
    );
    let yaml = ok(&env, &["get", "pod", "p", "-n", &ns, "-o", "yaml"]).await;
    assert!(yaml.contains(&format!("image: {image}")), "{yaml}");
    let deleted = ok(&env, &["delete", "deployment", "web", "-n", &ns]).await;
    assert!(
        deleted.starts_with("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    let gone = kubectl(&env, &["get", "deployment", "web", "-n", &ns])
        .await
        .unwrap_err();
    assert!(gone.contains("NotFound"), "{gone}");
    ok(&env, &["delete", "namespace", &ns, "--timeout=60s"]).await;
    env.finish().await;
}

/// `kubectl create -f` of a Node and a Lease, then `get -o yaml` and `delete` of each.
#[tokio::test]
async fn kubectl_creates_a_node_and_a_lease_from_files() {
    let env = Env::connect().await;
    let ns = env.name("kubectl-lease");
    let node = env.name("kubectl-node");
    let label = env.selector();
    let (key, value) = label.split_once('=').unwrap();
    ok(&env, &["create", "namespace", &ns]).await;
    ok(&env, &["label", "namespace", &ns, &label]).await;
    let dir = std::env::temp_dir().join(env.name("kubectl-files"));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("objects.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{{key}: \"{value}\"}}\n\
             spec:\n  unschedulable: true\n---\n\
             apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: leader\n  namespace: {ns}\n\
             spec:\n  holderIdentity: manager-0\n  leaseDurationSeconds: 15\n"
        ),
    )
    .unwrap();
    let created = ok(&env, &["create", "-f", manifest.to_str().unwrap()]).await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        created,
        format!("node/{node} created\nlease.coordination.k8s.io/leader created")
    );
    let yaml = ok(&env, &["get", "node", &node, "-o", "yaml"]).await;
    assert!(yaml.contains("unschedulable: true"), "{yaml}");
    let yaml = ok(&env, &["get", "lease", "leader", "-n", &ns, "-o", "yaml"]).await;
    assert!(yaml.contains("holderIdentity: manager-0"), "{yaml}");
    assert!(yaml.contains("leaseDurationSeconds: 15"), "{yaml}");
    let deleted = ok(&env, &["delete", "node", &node]).await;
    assert_eq!(deleted, format!("node \"{node}\" deleted"));
    ok(&env, &["delete", "namespace", &ns, "--timeout=60s"]).await;
    env.finish().await;
}

/// `kubectl create serviceaccount` and `kubectl create token` send protobuf (a ServiceAccount,
/// a TokenRequest); the token reviews as the account, `get` and `delete` work as on a cluster.
#[tokio::test]
async fn kubectl_creates_a_service_account_and_a_token_for_it() {
    let env = Env::connect().await;
    let ns = env.namespace.clone();
    assert_eq!(
        ok(&env, &["create", "serviceaccount", "peer", "-n", &ns]).await,
        "serviceaccount/peer created"
    );
    let listed = ok(&env, &["get", "sa", "-n", &ns]).await;
    assert!(listed.contains("peer"), "{listed}");
    let token = ok(
        &env,
        &[
            "create",
            "token",
            "peer",
            "-n",
            &ns,
            "--audience",
            "kruise-daemon-peer",
            "--duration",
            "20m",
        ],
    )
    .await;
    let review: TokenReview = serde_json::from_value(serde_json::json!({
        "spec": {"token": token, "audiences": ["kruise-daemon-peer"]},
    }))
    .unwrap();
    let status = Api::<TokenReview>::all(env.client.clone())
        .create(&Default::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.unwrap().username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:peer").as_str())
    );
    let deleted = ok(&env, &["delete", "serviceaccount", "peer", "-n", &ns]).await;
    assert!(
        deleted.starts_with("serviceaccount \"peer\" deleted"),
        "{deleted}"
    );
    let gone = kubectl(&env, &["get", "sa", "peer", "-n", &ns])
        .await
        .unwrap_err();
    assert!(gone.contains("NotFound"), "{gone}");
    env.finish().await;
}
