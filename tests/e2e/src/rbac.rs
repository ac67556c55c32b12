//! What each binary may do on the API server: the one list the chart's RBAC must grant exactly
//! (`tests/chart.rs`), and that the binaries' own calls must match, verb by verb (`tests/rbac.rs`).
//! A new call in the code needs a line here and in the chart, or those tests fail.

/// Where a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Cluster-wide (a ClusterRole through a ClusterRoleBinding).
    Cluster,
    /// The namespace the manager copies pull secrets into, `kruise-daemon-config`.
    DaemonConfig,
    /// The namespace the manager runs in (its leader-election Lease).
    Release,
}

/// One API group's resources and the verbs allowed on them.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub scope: Scope,
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const fn rule(
    scope: Scope,
    group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
) -> Rule {
    Rule {
        scope,
        group,
        resources,
        verbs,
    }
}

/// kruise-manager, without pre-download ([`MANAGER_PREDOWNLOAD`]).
pub const MANAGER: &[Rule] = &[
    // Watched: node readiness and labels, the pods of podSelector jobs, the pull secrets jobs name.
    rule(Scope::Cluster, "", &["nodes", "pods"], &["list", "watch"]),
    rule(Scope::Cluster, "", &["secrets"], &["get", "list", "watch"]),
    // One NodeImage per node: created, its spec and labels patched, deleted with its node.
    rule(
        Scope::Cluster,
        "apps.kruise.io",
        &["nodeimages"],
        &["list", "watch", "create", "patch", "delete"],
    ),
    // Jobs: watched; a list job's children created, replaced and deleted; finished jobs deleted
    // after their TTL; OpenKruise's deletion-protection finalizer removed from adopted jobs.
    rule(
        Scope::Cluster,
        "apps.kruise.io",
        &["imagepulljobs"],
        &["list", "watch", "create", "update", "patch", "delete"],
    ),
    rule(
        Scope::Cluster,
        "apps.kruise.io",
        &["imagelistpulljobs"],
        &["list", "watch", "delete"],
    ),
    rule(
        Scope::Cluster,
        "apps.kruise.io",
        &["imagepulljobs/status", "imagelistpulljobs/status"],
        &["patch"],
    ),
    rule(
        Scope::Cluster,
        "events.k8s.io",
        &["events"],
        &["create", "patch"],
    ),
    // The pull-secret copies the daemons read.
    rule(
        Scope::DaemonConfig,
        "",
        &["secrets"],
        &["list", "watch", "create", "update", "delete"],
    ),
    // Leader election: a standby watches the Lease to take it over as soon as it is released.
    rule(
        Scope::Release,
        "coordination.k8s.io",
        &["leases"],
        &["get", "list", "watch", "create", "update"],
    ),
];

/// kruise-manager's rollout pre-download (`--image-predownload`, on by default): workloads
/// watched (OpenKruise's while their CRDs are served), their revisions watched and the update
/// revision labelled once its jobs exist. The chart grants these only with pre-download on.
pub const MANAGER_PREDOWNLOAD: &[Rule] = &[
    rule(
        Scope::Cluster,
        "apps",
        &["deployments", "statefulsets", "daemonsets"],
        &["list", "watch"],
    ),
    rule(
        Scope::Cluster,
        "apps",
        &["replicasets", "controllerrevisions"],
        &["list", "watch", "patch"],
    ),
    rule(
        Scope::Cluster,
        "apps.kruise.io",
        &["clonesets", "statefulsets", "daemonsets"],
        &["list", "watch"],
    ),
];

/// kruise-manager's rules, with pre-download's or without.
pub fn manager(predownload: bool) -> Vec<Rule> {
    let extra = if predownload {
        MANAGER_PREDOWNLOAD
    } else {
        &[]
    };
    MANAGER.iter().chain(extra).copied().collect()
}

/// kruise-daemon.
pub const DAEMON: &[Rule] = &[
    // Its own NodeImage, by a field selector on the name (RBAC cannot narrow a list to one
    // name); its status, narrowed to its own node by the chart's admission policy.
    rule(
        Scope::Cluster,
        "apps.kruise.io",
        &["nodeimages"],
        &["list", "watch"],
    ),
    rule(
        Scope::Cluster,
        "apps.kruise.io",
        &["nodeimages/status"],
        &["patch"],
    ),
    rule(
        Scope::Cluster,
        "events.k8s.io",
        &["events"],
        &["create", "patch"],
    ),
    // The pull secrets its NodeImage names, read one by one.
    rule(Scope::DaemonConfig, "", &["secrets"], &["get"]),
];

/// One permission: `(scope, group, resource, verb)`.
pub type Permission = (Scope, String, String, String);

/// Every permission in `rules`.
pub fn permissions(rules: &[Rule]) -> std::collections::BTreeSet<Permission> {
    rules
        .iter()
        .flat_map(|r| {
            r.resources.iter().flat_map(move |res| {
                r.verbs
                    .iter()
                    .map(move |v| (r.scope, r.group.to_string(), res.to_string(), v.to_string()))
            })
        })
        .collect()
}
