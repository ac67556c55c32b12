//! The binaries call exactly what `e2e::rbac` lists (and so exactly what the chart grants):
//! a scenario touching every kind of write both make runs on the test API server, which records
//! each request with the User-Agent of the binary that made it. A call outside the list would be
//! refused on a real cluster; a permission no call uses is one the chart should not grant.
//! (Request records are a test API server feature, so this runs there even with E2E_KUBECONFIG.)

use std::collections::BTreeSet;

use e2e::rbac::{self, Scope};
use e2e::{manifest, wait_for, Cluster, System, DEADLINE};
use k8s_openapi::api::core::v1::Node;
use kruise_api::constants::DELETION_PROTECTION_FINALIZER;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

const CREATED: &str = "apps.kruise.io/pre-predownload-created";

/// `(agent, verb, resource.group[/subresource], namespace)` of every request made so far.
async fn calls(env: &System) -> BTreeSet<(String, String, String, String)> {
    let body = env
        .cluster
        .requests()
        .await
        .expect("request records need the test API server");
    body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut resource = r["resource"].as_str().unwrap().to_string();
            if let Some(sub) = r["subresource"].as_str().filter(|s| !s.is_empty()) {
                resource = format!("{resource}/{sub}");
            }
            (
                r["agent"].as_str().unwrap().to_string(),
                r["verb"].as_str().unwrap().to_string(),
                resource,
                r["namespace"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `resource.group[/subresource]` as the test API server names it (core kinds have no group).
fn qualified(group: &str, resource: &str) -> String {
    let (res, sub) = resource
        .split_once('/')
        .map_or((resource, None), |(r, s)| (r, Some(s)));
    let base = if group.is_empty() {
        res.to_string()
    } else {
        format!("{res}.{group}")
    };
    sub.map_or(base.clone(), |s| format!("{base}/{s}"))
}

/// The scopes a request in `namespace` may be granted by, widest first (a ClusterRole covers
/// every namespace).
fn scopes_of(namespace: &str, release_namespace: &str) -> Vec<Scope> {
    match namespace {
        "" => vec![Scope::Cluster],
        "kruise-daemon-config" => vec![Scope::Cluster, Scope::DaemonConfig],
        n if n == release_namespace => vec![Scope::Cluster, Scope::Release],
        _ => vec![Scope::Cluster],
    }
}

/// Permissions a short scenario cannot be sure to use: kube's event recorder patches an event
/// only when the same one repeats within minutes.
const OCCASIONAL: &[(&str, &str, &str)] = &[("events.k8s.io", "events", "patch")];

/// The calls of `agent` that `rules` do not grant, and the permissions those calls used.
fn refused_and_used(
    agent: &str,
    rules: &[rbac::Rule],
    made: &BTreeSet<(String, String, String, String)>,
) -> (Vec<String>, BTreeSet<rbac::Permission>) {
    let allowed = rbac::permissions(rules);
    let release_namespace = "default";
    let mut refused = Vec::new();
    let mut used = BTreeSet::new();
    for (_, verb, resource, namespace) in made.iter().filter(|c| c.0 == agent) {
        // The narrowest grant that allows it (a Role in the namespace before a ClusterRole).
        let grant = scopes_of(namespace, release_namespace)
            .into_iter()
            .rev()
            .find_map(|scope| {
                allowed.iter().find(|(s, group, res, v)| {
                    *s == scope && v == verb && qualified(group, res) == *resource
                })
            });
        match grant {
            Some(g) => {
                used.insert(g.clone());
            }
            None => refused.push(format!("{verb} {resource} in namespace {namespace:?}")),
        }
    }
    (refused, used)
}

/// `agent` made only calls `rules` grant, and used every permission they grant.
fn check(agent: &str, rules: &[rbac::Rule], made: &BTreeSet<(String, String, String, String)>) {
    let (refused, used) = refused_and_used(agent, rules, made);
    let allowed = rbac::permissions(rules);
    assert!(
        refused.is_empty(),
        "{agent} made calls its RBAC (e2e::rbac, the chart) does not grant: {refused:?}"
    );
    let unused: Vec<_> = allowed
        .difference(&used)
        .filter(|(_, g, r, v)| !OCCASIONAL.contains(&(g.as_str(), r.as_str(), v.as_str())))
        .collect();
    assert!(
        unused.is_empty(),
        "{agent} is granted permissions it never used in the scenario: {unused:?}"
    );
}

#[tokio::test]
async fn the_binaries_call_exactly_what_their_rbac_grants() {
    let mut env = System::without_manager(Cluster::local()).await;
    // OpenKruise's workload CRDs are there from the start, so the manager watches CloneSets.
    e2e::workloads::install_openkruise_crds(&env.cluster, e2e::workloads::Crds::Main).await;
    env.start_manager().await;
    // A standby watches the Lease.
    let mut standby = env.manager_process("manager-standby", &[]);
    standby.wait_ready(DEADLINE).await;
    let img = env.push("lab/rbac", 51);
    let a = env.add_node("a", json!({})).await;
    let b = env.add_node("b", json!({})).await;

    // A job with a pull secret: copied, refreshed when the source changes, removed with the job.
    let private = env.push_private("lab/rbac-private", 52);
    env.registry_secret("reg", false).await;
    env.apply_job(manifest(
        "v1beta1",
        "secret",
        &private.reference,
        json!({"pullSecrets": ["reg"], "completionPolicy": {"type": "Never"}}),
    ))
    .await;
    env.wait_job("secret", "pulled with the secret", |s| s.succeeded == 2)
        .await;
    env.secrets()
        .patch(
            "reg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"rotated": "yes"}}})),
        )
        .await
        .unwrap();
    wait_for("the copy to follow its source", DEADLINE, || async {
        let copies = env.synced_copies("reg").await;
        copies
            .iter()
            .any(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("rotated"))
                    .is_some()
            })
            .then_some(())
    })
    .await;
    env.jobs()
        .delete("secret", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the copy to go with the job", DEADLINE, || async {
        env.synced_copies("reg").await.is_empty().then_some(())
    })
    .await;

    // A job finishing with a TTL: deleted.
    env.apply_job(manifest(
        "v1beta1",
        "ttl",
        &img.reference,
        json!({"completionPolicy": {"type": "Always", "ttlSecondsAfterFinished": 1}}),
    ))
    .await;
    env.wait_job_gone("ttl", "deleted after its TTL").await;

    // A list job: children created, then replaced (template edit), the list deleted by its TTL.
    env.apply_list(
        "list",
        &[&img.reference],
        json!({"parallelism": 1, "completionPolicy": {"type": "Always", "ttlSecondsAfterFinished": 1}}),
    )
    .await;
    wait_for("the list job's child", DEADLINE, || async {
        let l = env.jobs().list(&Default::default()).await.ok()?;
        (!l.items.is_empty()).then_some(())
    })
    .await;
    env.lists()
        .patch(
            "list",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parallelism": 2}})),
        )
        .await
        .unwrap();
    wait_for("the list job to go after its TTL", DEADLINE, || async {
        env.lists()
            .get_opt("list")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // An adopted OpenKruise job, deleted: the manager removes its finalizer.
    env.apply_job(manifest("v1beta1", "adopted", &img.reference, json!({})))
        .await;
    env.jobs()
        .patch(
            "adopted",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [DELETION_PROTECTION_FINALIZER]}})),
        )
        .await
        .unwrap();
    env.jobs()
        .delete("adopted", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_job_gone("adopted", "deleted despite its finalizer")
        .await;

    // A Node removed: its NodeImage goes (by garbage collection, as it is owned by the Node).
    let nodes: Api<Node> = Api::all(env.cluster.client.clone());
    nodes.delete(&b, &DeleteParams::default()).await.unwrap();
    wait_for("the removed node's NodeImage to go", DEADLINE, || async {
        env.images
            .api
            .get_opt(&b)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // A NodeImage without a Node or an owner (as OpenKruise writes them): the manager deletes it.
    let orphan = env.cluster.name("orphan");
    env.images.create(&orphan).await;
    wait_for(
        "the manager to delete the orphan NodeImage",
        DEADLINE,
        || async {
            env.images
                .api
                .get_opt(&orphan)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let _ = a;

    // Rollouts: a CloneSet's and a Deployment's pre-download jobs, and their revisions marked.
    let w = e2e::workloads::Workloads::new(&env.cluster, &env.ns);
    let nodes = [a.clone(), b.clone()];
    let (old, new) = (img.reference.clone(), private.reference.clone());
    let in_place = e2e::workloads::CloneSetUpdate {
        in_place: true,
        max_unavailable: Some(json!(1)),
        ..Default::default()
    };
    let version = e2e::workloads::Crds::Main.version("CloneSet");
    w.rolling_cloneset(&nodes, ("cs", version), (&old, &new), &in_place, 1)
        .await;
    w.wait_marked("ControllerRevision", "cs-v2", CREATED).await;
    w.rolling_deployment(&nodes, "api", (&old, &new), json!({}), 1)
        .await;
    w.wait_marked("ReplicaSet", "api-bbb", CREATED).await;

    let made = calls(&env).await;
    check("kruise-manager", &rbac::manager(true), &made);
    check("kruise-daemon", rbac::DAEMON, &made);
}

/// With `manager.imagePredownload.enabled=false` the chart grants no workload reads
/// (`rbac::manager(false)`): a manager run so, while an opted-in Deployment and a CloneSet roll,
/// must call none of them, or it would be refused on a real cluster.
#[tokio::test]
async fn a_manager_without_predownload_calls_nothing_its_narrower_rbac_leaves_out() {
    let env = System::without_manager(Cluster::local()).await;
    let release = e2e::workloads::Crds::Main;
    e2e::workloads::install_openkruise_crds(&env.cluster, release).await;
    let mut manager =
        env.manager_process("manager-no-predownload", &["--image-predownload", "false"]);
    manager.wait_ready(DEADLINE).await;
    let node = env.cluster.name("a");
    env.cluster.create_node(&node, json!({})).await;
    let w = e2e::workloads::Workloads::new(&env.cluster, &env.ns);
    let nodes = [node.clone()];
    let (old, new) = ("lab/old:1", "lab/new:1");
    let deployment = w
        .rolling_deployment(&nodes, "api", (old, new), json!({}), 0)
        .await;
    let in_place = e2e::workloads::CloneSetUpdate {
        in_place: true,
        max_unavailable: Some(json!(1)),
        ..Default::default()
    };
    let version = release.version("CloneSet");
    let cloneset = w
        .rolling_cloneset(&nodes, ("cs", version), (old, new), &in_place, 0)
        .await;
    // A job created after the rollouts began, planned: the manager leads and has taken in what
    // it watches.
    env.apply_job(manifest("v1beta1", "after", old, json!({})))
        .await;
    env.wait_job("after", "planned", |s| s.start_time.is_some())
        .await;
    assert!(w.jobs_of(&deployment).await.is_empty() && w.jobs_of(&cloneset).await.is_empty());

    let made = calls(&env).await;
    let (refused, _) = refused_and_used("kruise-manager", &rbac::manager(false), &made);
    assert!(
        refused.is_empty(),
        "with pre-download off the manager made calls the chart then does not grant: {refused:?}"
    );
}
