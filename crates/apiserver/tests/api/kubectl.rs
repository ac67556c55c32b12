//! A real kubectl's typed commands, which send protobuf for built-in kinds
//! (`application/vnd.kubernetes.protobuf`): create, get, label and delete work as on a cluster.
//! kubectl is `$KUBECTL`, or the one on the PATH (`.ci/install-deps` installs a pinned one).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
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
    if env.is_local() {
        // Kinds whose protobuf the test server does not read say what to send instead.
        let refused = kubectl(
            &env,
            &["create", "deployment", "d", "-n", &ns, "--image=nginx"],
        )
        .await
        .unwrap_err();
        assert!(
            refused.contains("not Deployment (apps/v1); send this object as application/json"),
            "{refused}"
        );
    }
    // Waits until the namespace is gone, as kubectl does by default.
    assert_eq!(
        ok(&env, &["delete", "namespace", &ns, "--timeout=60s"]).await,
        format!("namespace \"{ns}\" deleted")
    );
    let gone = kubectl(&env, &["get", "namespace", &ns]).await.unwrap_err();
    assert!(gone.contains("NotFound"), "{gone}");
    env.finish().await;
}
