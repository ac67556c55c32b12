//! Rolling workloads for the pre-download tests, written the way their controllers would write
//! them (no workload controller runs): the workload, its revisions (ControllerRevisions, or
//! ReplicaSets for a Deployment), its pods on this test's nodes, and the status fields a rollout
//! moves. OpenKruise's CRDs are its published ones ([`Crds`]), and each workload is written in
//! the layout of the version the manager watches.

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::{wait_for, Cluster, System, DEADLINE};

/// A release of OpenKruise's published workload CRDs (`shared/reference/openkruise-crds/`). Their
/// structural schemas prune fields written at another version's place, as a real cluster does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crds {
    /// v1.9.0: CloneSet serves v1alpha1 only; the knobs are annotations.
    V1_9,
    /// The main branch (07169cf): CloneSet also serves v1beta1, with partition, maxUnavailable,
    /// the pod update policy and the knobs under `updateStrategy.rollingUpdate`.
    Main,
}

impl Crds {
    /// The version of OpenKruise's `kind` the manager watches (the newest served).
    pub fn version(self, kind: &str) -> &'static str {
        match (self, kind) {
            (Crds::V1_9, "CloneSet") => "apps.kruise.io/v1alpha1",
            _ => "apps.kruise.io/v1beta1",
        }
    }

    fn files(self) -> [String; 3] {
        let release = match self {
            Crds::V1_9 => "v1.9.0",
            Crds::Main => "master-07169cf",
        };
        ["clonesets", "statefulsets", "daemonsets"].map(|kind| {
            kruise_testlab::openkruise_crd(release, &format!("apps.kruise.io_{kind}.yaml"))
        })
    }

    fn crds(self) -> Vec<CustomResourceDefinition> {
        self.files()
            .iter()
            .map(|y| serde_yaml::from_str(y).expect("OpenKruise's published CRD parses"))
            .collect()
    }
}

type CustomResourceDefinition =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Installs OpenKruise's published workload CRDs of `release` and waits until they are served.
pub async fn install_openkruise_crds(cluster: &Cluster, release: Crds) {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    for crd in release.crds() {
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("installing the CRD {:?}: {e}", crd.metadata.name),
        }
    }
    for kind in ["CloneSet", "StatefulSet", "DaemonSet"] {
        let ar = Workloads::resource(release.version(kind), kind);
        let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ar);
        wait_for(
            &format!("the {kind} CRD to be served"),
            crate::system::DEADLINE,
            || async { api.list(&Default::default()).await.ok().map(|_| ()) },
        )
        .await;
    }
}

/// Removes OpenKruise's workload CRDs (own test API server only).
pub async fn remove_openkruise_crds(cluster: &Cluster, release: Crds) {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    for crd in release.crds() {
        let name = crd.metadata.name.unwrap();
        let _ = api.delete(&name, &Default::default()).await;
    }
}

/// This test's system (own API server), the manager started with `extra` flags once
/// OpenKruise's CRDs of release `crds` are installed (if any), and `nodes` Ready nodes with
/// NodeImages.
pub async fn setup(
    crds: Option<Crds>,
    extra: &[&str],
    nodes: usize,
) -> (System, Workloads, Vec<String>) {
    let mut sys = System::without_manager(Cluster::local()).await;
    if let Some(release) = crds {
        install_openkruise_crds(&sys.cluster, release).await;
    }
    let mut m = sys.manager_process("manager", extra);
    m.wait_ready(DEADLINE).await;
    sys.manager = Some(m);
    let mut names = Vec::new();
    for i in 0..nodes {
        let name = sys.cluster.name(&format!("n{i}"));
        sys.cluster.create_node(&name, json!({})).await;
        names.push(name);
    }
    for n in &names {
        wait_for(&format!("NodeImage {n}"), DEADLINE, || async {
            sys.images.api.get_opt(n).await.ok().flatten().map(|_| ())
        })
        .await;
    }
    let w = Workloads::new(&sys.cluster, &sys.ns);
    (sys, w, names)
}

/// A pod template with one container per `(name, image)`.
pub fn template(labels: &Value, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({"name": n, "image": i}))
        .collect();
    json!({"metadata": {"labels": labels}, "spec": {"containers": containers}})
}

/// Writes workloads and what their controllers would write, in one namespace.
pub struct Workloads {
    pub client: Client,
    pub ns: String,
}

impl Workloads {
    pub fn new(cluster: &Cluster, ns: &str) -> Self {
        Self {
            client: cluster.client.clone(),
            ns: ns.into(),
        }
    }

    pub fn resource(api_version: &str, kind: &str) -> ApiResource {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let plural = format!("{}s", kind.to_lowercase());
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            plural,
        }
    }

    fn api(&self, api_version: &str, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &Self::resource(api_version, kind),
        )
    }

    /// Creates an object from JSON (apiVersion and kind inside); returns it as stored.
    pub async fn create(&self, obj: Value) -> Value {
        let av = obj["apiVersion"].as_str().unwrap().to_string();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let o: DynamicObject = serde_json::from_value(obj).unwrap();
        let created = self
            .api(&av, &kind)
            .create(&PostParams::default(), &o)
            .await
            .unwrap_or_else(|e| panic!("creating a {kind}: {e}"));
        let mut v = serde_json::to_value(created).unwrap();
        v["apiVersion"] = av.into();
        v["kind"] = kind.into();
        v
    }

    /// Merge-patches an object (`status: true` for its status subresource).
    pub async fn patch(&self, obj: &Value, patch: Value, status: bool) {
        let api = self.api(
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        );
        let name = obj["metadata"]["name"].as_str().unwrap();
        let pp = PatchParams::default();
        let r = if status {
            api.patch_status(name, &pp, &Patch::Merge(&patch)).await
        } else {
            api.patch(name, &pp, &Patch::Merge(&patch)).await
        };
        r.unwrap_or_else(|e| panic!("patching {name}: {e}"));
    }

    pub async fn get(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        let o = self.api(api_version, kind).get_opt(name).await.ok()??;
        Some(serde_json::to_value(o).unwrap())
    }

    pub async fn delete(&self, obj: &Value) {
        let api = self.api(
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        );
        let _ = api
            .delete(
                obj["metadata"]["name"].as_str().unwrap(),
                &Default::default(),
            )
            .await;
    }

    /// A ControllerRevision of `owner` holding `template` (as CloneSet and StatefulSets write
    /// them: `data.spec.template`), labelled with the owner's selector labels and the hash.
    pub async fn revision(
        &self,
        owner: &Value,
        name: &str,
        hash: &str,
        number: i64,
        template: &Value,
    ) -> Value {
        let mut labels: BTreeMap<String, Value> =
            serde_json::from_value(owner["spec"]["selector"]["matchLabels"].clone())
                .unwrap_or_default();
        labels.insert("controller.kubernetes.io/hash".into(), hash.into());
        self.create(json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": name, "labels": labels, "ownerReferences": [controller_ref(owner)]},
            "revision": number,
            "data": {"spec": {"template": template}},
        }))
        .await
    }

    /// A Deployment's ReplicaSet for `template`, with its pod-template-hash and revision.
    pub async fn replicaset(
        &self,
        owner: &Value,
        hash: &str,
        number: i64,
        replicas: i32,
        template: &Value,
    ) -> Value {
        let name = format!("{}-{hash}", owner["metadata"]["name"].as_str().unwrap());
        let mut labels: BTreeMap<String, Value> =
            serde_json::from_value(owner["spec"]["selector"]["matchLabels"].clone()).unwrap();
        labels.insert("pod-template-hash".into(), hash.into());
        let mut template = template.clone();
        template["metadata"]["labels"]["pod-template-hash"] = hash.into();
        self.create(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "labels": labels, "ownerReferences": [controller_ref(owner)],
                "annotations": {"deployment.kubernetes.io/revision": number.to_string()}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template},
        }))
        .await
    }

    /// A running, Ready pod of `owner` on `node`, carrying `labels`.
    pub async fn pod(
        &self,
        owner: &Value,
        name: &str,
        node: &str,
        labels: Value,
        image: &str,
    ) -> Value {
        let pod = self
            .create(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": labels, "ownerReferences": [controller_ref(owner)]},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": image}]},
            }))
            .await;
        self.patch(
            &pod,
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            true,
        )
        .await;
        pod
    }

    /// The pre-download jobs `owner` controls.
    pub async fn jobs_of(&self, owner: &Value) -> Vec<kruise_api::ImagePullJob> {
        let api: Api<kruise_api::ImagePullJob> = Api::namespaced(self.client.clone(), &self.ns);
        let uid = owner["metadata"]["uid"].as_str().unwrap();
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|j| {
                j.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .collect()
    }

    /// Waits until `owner` controls exactly `n` jobs; returns them.
    pub async fn wait_jobs(
        &self,
        owner: &Value,
        n: usize,
        what: &str,
    ) -> Vec<kruise_api::ImagePullJob> {
        wait_for(what, crate::system::DEADLINE, || async {
            let jobs = self.jobs_of(owner).await;
            (jobs.len() == n).then_some(jobs)
        })
        .await
    }

    /// A CloneSet with 5 pods on `nodes` (pod i on node i), revisions v1 (`old`) and v2 (`new`),
    /// its status saying the rollout to v2 began with `updated` pods updated and ready.
    pub async fn rolling_cloneset(
        &self,
        nodes: &[String],
        (name, api_version): (&str, &str),
        (old, new): (&str, &str),
        update: &CloneSetUpdate,
        updated: usize,
    ) -> Value {
        let cs = self.create(cloneset(name, new, api_version, update)).await;
        let labels = json!({"app": name});
        let (v1, v2) = (format!("{name}-v1"), format!("{name}-v2"));
        self.revision(&cs, &v1, "v1", 1, &template(&labels, &[("main", old)]))
            .await;
        self.revision(&cs, &v2, "v2", 2, &template(&labels, &[("main", new)]))
            .await;
        for (i, node) in nodes.iter().enumerate().take(5) {
            let (rev, image) = if i < updated { (&v2, new) } else { (&v1, old) };
            self.pod(
                &cs,
                &format!("{name}-{i}"),
                node,
                json!({"app": name, "controller-revision-hash": rev}),
                image,
            )
            .await;
        }
        self.patch(
            &cs,
            json!({"status": {"observedGeneration": 1, "replicas": 5, "readyReplicas": 5,
            "availableReplicas": 5, "currentRevision": v1, "updateRevision": v2,
            "updatedReplicas": updated, "updatedReadyReplicas": updated}}),
            true,
        )
        .await;
        cs
    }

    /// A Deployment `name` opted in to pre-download (with `annotations` besides) with one pod
    /// per node: the last `updated` on the new ReplicaSet `<name>-bbb` (`new`), the others on
    /// the old one `<name>-aaa` (`old`), its status saying the rollout began.
    pub async fn rolling_deployment(
        &self,
        nodes: &[String],
        name: &str,
        (old, new): (&str, &str),
        annotations: Value,
        updated: usize,
    ) -> Value {
        let labels = json!({"app": name});
        let mut annotations = annotations;
        annotations["apps.kruise.io/image-predownload"] = "true".into();
        let replicas = nodes.len();
        let deploy = self
            .create(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                         "template": template(&labels, &[("main", new)])},
            }))
            .await;
        let old_count = (replicas - updated) as i32;
        let old_rs = self
            .replicaset(
                &deploy,
                "aaa",
                1,
                old_count,
                &template(&labels, &[("main", old)]),
            )
            .await;
        let new_rs = self
            .replicaset(
                &deploy,
                "bbb",
                2,
                updated as i32,
                &template(&labels, &[("main", new)]),
            )
            .await;
        for (i, node) in nodes.iter().enumerate() {
            let (rs, hash, image) = if i < replicas - updated {
                (&old_rs, "aaa", old)
            } else {
                (&new_rs, "bbb", new)
            };
            let labels = json!({"app": name, "pod-template-hash": hash});
            self.pod(rs, &format!("{name}-{i}"), node, labels, image)
                .await;
        }
        self.patch(
            &deploy,
            json!({"status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": updated}}),
            true,
        )
        .await;
        deploy
    }

    /// Waits until the revision carries `label`.
    pub async fn wait_marked(&self, kind: &str, name: &str, label: &str) -> Value {
        wait_for(
            &format!("{kind} {name} to be labelled {label}"),
            crate::system::DEADLINE,
            || async {
                let o = self.get("apps/v1", kind, name).await?;
                o["metadata"]["labels"][label].is_string().then_some(o)
            },
        )
        .await
    }
}

/// How a test CloneSet rolls, whatever the version it is written in.
#[derive(Clone, Debug, Default)]
pub struct CloneSetUpdate {
    /// `InPlaceIfPossible` (true) or `ReCreate`.
    pub in_place: bool,
    pub partition: i32,
    pub max_unavailable: Option<Value>,
    pub parallelism: Option<i32>,
    pub min_updated_ready: Option<i32>,
}

/// A CloneSet as OpenKruise's e2e test makes it, already moved to `image` in its spec, in the
/// layout of `api_version`: v1alpha1 keeps the rollout fields under `updateStrategy` and the
/// knobs in annotations; v1beta1 keeps them under `updateStrategy.rollingUpdate`.
pub fn cloneset(name: &str, image: &str, api_version: &str, u: &CloneSetUpdate) -> Value {
    let labels = json!({"app": name});
    let policy = if u.in_place {
        "InPlaceIfPossible"
    } else {
        "ReCreate"
    };
    let mut rolling = json!({"partition": u.partition});
    if let Some(m) = &u.max_unavailable {
        rolling["maxUnavailable"] = m.clone();
    }
    let mut annotations = json!({});
    let strategy = if api_version.ends_with("/v1alpha1") {
        rolling["type"] = policy.into();
        for (key, v) in [
            ("parallelism", u.parallelism),
            ("min-updated-ready-pods", u.min_updated_ready),
        ] {
            if let Some(v) = v {
                annotations[format!("apps.kruise.io/image-predownload-{key}")] =
                    v.to_string().into();
            }
        }
        rolling
    } else {
        rolling["podUpdatePolicy"] = policy.into();
        let mut knobs = json!({});
        if let Some(v) = u.parallelism {
            knobs["imagePreDownloadParallelism"] = v.into();
        }
        if let Some(v) = u.min_updated_ready {
            knobs["imagePreDownloadMinUpdatedReadyPods"] = v.into();
        }
        rolling["inPlaceUpdateStrategy"] = knobs;
        json!({"type": "RollingUpdate", "rollingUpdate": rolling})
    };
    json!({
        "apiVersion": api_version, "kind": "CloneSet",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"replicas": 5, "selector": {"matchLabels": labels},
                 "template": template(&labels, &[("main", image)]),
                 "updateStrategy": strategy},
    })
}

/// A controller ownerReference to `owner`.
pub fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    })
}
