//! Where the CRD tests send their objects: a test API server of the test's own (default), or the
//! cluster of `E2E_KUBECONFIG` (its CRDs installed from `config/crd`), shared with other tests and
//! users at once. A test works in a namespace of its own (`apitest-<id>`, labelled
//! `e2e.kruise.io/test=<id>`, as is every object it stores), asks for creates as dry runs so
//! nothing is stored and no name collides, and reads a refusal's Status back as the
//! `FieldError`s the library reports. The tests are plain `#[test]` functions: one runtime per
//! process carries the clients (and the local server), and each call blocks on it from the
//! test's own thread, never from a runtime thread.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use kruise_crd_validate::FieldError;
use kruise_test_apiserver::TestApiServer;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

pub const TEST_LABEL: &str = "e2e.kruise.io/test";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:08x}", h.finish() as u32)
}

pub struct Env {
    client: Client,
    pub id: String,
    pub namespace: String,
    /// Names for the objects that updates start from.
    stored: AtomicUsize,
    _server: Option<TestApiServer>,
}

impl Env {
    /// The cluster of `E2E_KUBECONFIG`, or a test API server started for this test.
    pub fn connect() -> Self {
        runtime().block_on(async {
            let (client, server) = match std::env::var("E2E_KUBECONFIG") {
                Ok(path) => {
                    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
                        .expect("E2E_KUBECONFIG is readable");
                    let config =
                        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                            .await
                            .expect("E2E_KUBECONFIG is valid");
                    (Client::try_from(config).expect("client"), None)
                }
                Err(_) => {
                    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
                    let server =
                        TestApiServer::start("127.0.0.1:0".parse().unwrap(), &[&crds], None)
                            .await
                            .expect("test API server starts");
                    let config = kube::Config::new(server.url().parse().unwrap());
                    (Client::try_from(config).unwrap(), Some(server))
                }
            };
            let id = unique_id();
            let namespace = format!("apitest-{id}");
            let ns: Namespace = serde_json::from_value(
                json!({"metadata": {"name": namespace, "labels": {TEST_LABEL: id}}}),
            )
            .unwrap();
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &ns)
                .await
                .expect("the test's namespace is created");
            Self {
                client,
                id,
                namespace,
                stored: AtomicUsize::new(0),
                _server: server,
            }
        })
    }

    /// Deletes the namespace and the labelled NodeImages; a test that fails before leaves them
    /// to the label's sweep.
    pub fn finish(self) {
        runtime().block_on(async {
            let labelled = ListParams::default().labels(&format!("{TEST_LABEL}={}", self.id));
            let _ = self
                .api("NodeImage", "v1beta1")
                .delete_collection(&DeleteParams::default(), &labelled)
                .await;
            let _ = Api::<Namespace>::all(self.client.clone())
                .delete(&self.namespace, &DeleteParams::default())
                .await;
        });
    }

    fn api(&self, kind: &str, version: &str) -> Api<DynamicObject> {
        let plural = match kind {
            "ImagePullJob" => "imagepulljobs",
            "ImageListPullJob" => "imagelistpulljobs",
            "NodeImage" => "nodeimages",
            other => panic!("unexpected kind {other}"),
        };
        let resource = ApiResource {
            group: "apps.kruise.io".into(),
            version: version.into(),
            api_version: format!("apps.kruise.io/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        };
        if kind == "NodeImage" {
            Api::all_with(self.client.clone(), &resource)
        } else {
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
        }
    }

    /// The object as the API server would store it on create (`old` None), or on an update of
    /// `old` (stored for real first, under a name of its own), in the version its apiVersion
    /// names; or the field errors of the server's refusal.
    pub fn admit(&self, obj: Value, old: Option<Value>) -> Result<Value, Vec<FieldError>> {
        runtime().block_on(self.admit_async(obj, old))
    }

    async fn admit_async(
        &self,
        mut obj: Value,
        old: Option<Value>,
    ) -> Result<Value, Vec<FieldError>> {
        let kind = obj["kind"].as_str().expect("kind").to_string();
        let version = obj["apiVersion"]
            .as_str()
            .expect("apiVersion")
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let api = self.api(&kind, &version);
        self.label(&mut obj);
        if kind == "NodeImage" {
            // Cluster-scoped: a dry run still answers AlreadyExists for another user's name.
            let name = obj["metadata"]["name"].as_str().unwrap_or("n");
            obj["metadata"]["name"] = json!(format!("{name}-{}", self.id));
        }
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let result = match old {
            None => {
                api.create(&dry_run, &serde_json::from_value(obj).unwrap())
                    .await
            }
            Some(mut old) => {
                let n = self.stored.fetch_add(1, Ordering::SeqCst);
                let name = format!("old-{n}-{}", self.id);
                self.label(&mut old);
                old["metadata"]["name"] = json!(name);
                let stored = api
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(old).unwrap(),
                    )
                    .await
                    .expect("the object to update is stored");
                obj["metadata"]["name"] = json!(name);
                obj["metadata"]["resourceVersion"] = json!(stored.metadata.resource_version);
                let result = api
                    .replace(&name, &dry_run, &serde_json::from_value(obj).unwrap())
                    .await;
                let _ = api.delete(&name, &DeleteParams::default()).await;
                result
            }
        };
        match result {
            Ok(admitted) => Ok(serde_json::to_value(admitted).unwrap()),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                let causes = status.details.clone().map(|d| d.causes).unwrap_or_default();
                assert!(!causes.is_empty(), "a refusal without causes: {status:?}");
                Err(causes
                    .iter()
                    // Not a field error: kube-apiserver's note that CEL rules were skipped
                    // after a schema error.
                    .filter(|c| c.field != "<nil>")
                    .map(|c| FieldError::from_cause(&c.field, &c.reason, &c.message))
                    .collect())
            }
            Err(other) => panic!("the API server did not answer with an object or a 422: {other}"),
        }
    }

    /// Labels `obj` for this test, in this test's namespace.
    fn label(&self, obj: &mut Value) {
        let meta = &mut obj["metadata"];
        if !meta["labels"].is_object() {
            meta["labels"] = json!({});
        }
        meta["labels"][TEST_LABEL] = json!(self.id);
        if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
    }
}
