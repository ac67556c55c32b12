//! Which resources the server serves: the built-in kinds the binaries and tests use, and every
//! CustomResourceDefinition created through the API (discovery follows at once).

use std::collections::BTreeMap;
use std::sync::Arc;

use kruise_crd_validate::VersionValidator;
use serde_json::{json, Value};

use crate::errors::{ApiError, ApiResult};

/// How objects of a kind are checked beyond metadata.
#[derive(Debug, Clone)]
pub enum Schema {
    /// A built-in kind, checked by decoding into its typed form (see `builtin`).
    Builtin,
    /// A custom resource: one validator per served version.
    Crd(BTreeMap<String, Arc<VersionValidator>>),
}

#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Serves `/token` (TokenRequest) under each object: ServiceAccounts.
    pub token_subresource: bool,
    /// Only `create`, answered and never stored, as kube-apiserver's reviews (`tokenreviews`).
    pub create_only: bool,
    pub short_names: Vec<String>,
    pub served_versions: Vec<String>,
    pub storage_version: String,
    pub schema: Schema,
    /// `additionalPrinterColumns` per version (CRDs only).
    pub printer_columns: BTreeMap<String, Vec<Value>>,
    /// The resource whose objects this one serves converted (core `events` shows the objects of
    /// `events.k8s.io` `events`), or None when it keeps objects of its own.
    pub view_of: Option<(String, String)>,
}

impl ResourceInfo {
    pub fn is_crd(&self) -> bool {
        matches!(self.schema, Schema::Crd(_))
    }

    /// Where this resource's objects are kept: its own (group, resource), or the one it views.
    pub fn storage_key(&self) -> (String, String) {
        self.view_of
            .clone()
            .unwrap_or_else(|| (self.group.clone(), self.resource.clone()))
    }

    pub fn is_view(&self) -> bool {
        self.view_of.is_some()
    }

    /// `apiVersion` for a version of this resource.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `pods`, `nodeimages.apps.kruise.io`: how errors name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `NodeImage.apps.kruise.io`, as 422 messages name the kind.
    pub fn kind_group(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// What a ServiceAccount's `/token` subresource reads and answers: an
    /// `authentication.k8s.io/v1` TokenRequest, decoded as a built-in kind.
    pub fn token_request() -> Self {
        ResourceInfo {
            group: "authentication.k8s.io".into(),
            resource: "serviceaccounts/token".into(),
            singular: String::new(),
            kind: "TokenRequest".into(),
            list_kind: String::new(),
            namespaced: true,
            status_subresource: false,
            token_subresource: false,
            create_only: true,
            short_names: Vec::new(),
            served_versions: vec!["v1".into()],
            storage_version: "v1".into(),
            schema: Schema::Builtin,
            printer_columns: BTreeMap::new(),
            view_of: None,
        }
    }

    pub fn validator(&self, version: &str) -> Option<&VersionValidator> {
        match &self.schema {
            Schema::Crd(v) => v.get(version).map(|v| v.as_ref()),
            Schema::Builtin => None,
        }
    }
}

/// (group, plural) → resource.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    resources: BTreeMap<(String, String), Arc<ResourceInfo>>,
}

impl Catalog {
    pub fn with_builtins() -> Self {
        let mut c = Self::default();
        let b = |group: &str,
                 version: &str,
                 resource: &str,
                 kind: &str,
                 namespaced: bool,
                 status: bool,
                 short: &[&str]| ResourceInfo {
            group: group.into(),
            resource: resource.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            namespaced,
            status_subresource: status,
            token_subresource: false,
            create_only: false,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            served_versions: vec![version.into()],
            storage_version: version.into(),
            schema: Schema::Builtin,
            printer_columns: BTreeMap::new(),
            view_of: None,
        };
        for info in [
            b("", "v1", "namespaces", "Namespace", false, true, &["ns"]),
            b("", "v1", "nodes", "Node", false, true, &["no"]),
            b("", "v1", "pods", "Pod", true, true, &["po"]),
            b("", "v1", "secrets", "Secret", true, false, &[]),
            b("", "v1", "configmaps", "ConfigMap", true, false, &["cm"]),
            ResourceInfo {
                token_subresource: true,
                ..b(
                    "",
                    "v1",
                    "serviceaccounts",
                    "ServiceAccount",
                    true,
                    false,
                    &["sa"],
                )
            },
            ResourceInfo {
                create_only: true,
                ..b(
                    "authentication.k8s.io",
                    "v1",
                    "tokenreviews",
                    "TokenReview",
                    false,
                    false,
                    &[],
                )
            },
            // kube-apiserver keeps one event store and serves it under both APIs.
            ResourceInfo {
                view_of: Some(("events.k8s.io".into(), "events".into())),
                ..b("", "v1", "events", "Event", true, false, &["ev"])
            },
            b(
                "events.k8s.io",
                "v1",
                "events",
                "Event",
                true,
                false,
                &["ev"],
            ),
            b(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                false,
                &[],
            ),
            b(
                "apps",
                "v1",
                "deployments",
                "Deployment",
                true,
                true,
                &["deploy"],
            ),
            b(
                "apps",
                "v1",
                "statefulsets",
                "StatefulSet",
                true,
                true,
                &["sts"],
            ),
            b("apps", "v1", "daemonsets", "DaemonSet", true, true, &["ds"]),
            b(
                "apps",
                "v1",
                "replicasets",
                "ReplicaSet",
                true,
                true,
                &["rs"],
            ),
            b(
                "apps",
                "v1",
                "controllerrevisions",
                "ControllerRevision",
                true,
                false,
                &[],
            ),
            b(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                true,
                &["crd", "crds"],
            ),
        ] {
            c.insert(info);
        }
        c
    }

    fn insert(&mut self, info: ResourceInfo) {
        self.resources
            .insert((info.group.clone(), info.resource.clone()), Arc::new(info));
    }

    /// The resource at `/apis/{group}/{version}/{resource}`, if that version is served.
    pub fn get(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        self.resources
            .get(&(group.to_string(), resource.to_string()))
            .filter(|r| r.served_versions.iter().any(|v| v == version))
            .cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.resources.values()
    }

    /// The resource a CRD object defines, checked against what is served, without serving it.
    pub fn check_crd(&self, crd: &Value) -> ApiResult<ResourceInfo> {
        let info = crd_resource(crd)?;
        let key = (info.group.clone(), info.resource.clone());
        if let Some(existing) = self.resources.get(&key) {
            if !existing.is_crd() {
                return Err(ApiError::forbidden(format!(
                    "{} is a built-in resource",
                    info.qualified()
                )));
            }
        }
        Ok(info)
    }

    /// Registers (or re-registers) the resource a CRD object defines.
    pub fn register_crd(&mut self, crd: &Value) -> ApiResult<Arc<ResourceInfo>> {
        let info = self.check_crd(crd)?;
        let key = (info.group.clone(), info.resource.clone());
        self.insert(info);
        Ok(self.resources[&key].clone())
    }

    pub fn unregister_crd(&mut self, group: &str, resource: &str) {
        if self
            .resources
            .get(&(group.into(), resource.into()))
            .is_some_and(|r| r.is_crd())
        {
            self.resources.remove(&(group.into(), resource.into()));
        }
    }

    /// `(group, [versions])` for `/apis`, built-in groups first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.resources.values().filter(|r| !r.group.is_empty()) {
            let versions = groups.entry(r.group.clone()).or_default();
            for v in &r.served_versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        groups.into_iter().collect()
    }

    /// The `APIResourceList` of one group version.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for r in self
            .resources
            .values()
            .filter(|r| r.group == group && r.served_versions.iter().any(|v| v == version))
        {
            if r.create_only {
                resources.push(json!({
                    "name": r.resource, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                    "verbs": ["create"],
                }));
                continue;
            }
            resources.push(json!({
                "name": r.resource, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": r.short_names,
                "storageVersionHash": "",
            }));
            if r.status_subresource {
                resources.push(json!({"name": format!("{}/status", r.resource), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
            }
            if r.token_subresource {
                resources.push(json!({"name": format!("{}/token", r.resource), "singularName": "", "namespaced": r.namespaced, "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }
}

fn crd_resource(crd: &Value) -> ApiResult<ResourceInfo> {
    let spec = crd
        .get("spec")
        .ok_or_else(|| ApiError::bad_request("CustomResourceDefinition has no spec"))?;
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let group = s("/group");
    let plural = s("/names/plural");
    let kind = s("/names/kind");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "spec.group, spec.names.plural and spec.names.kind are required",
        ));
    }
    if name != format!("{plural}.{group}") {
        return Err(ApiError::bad_request(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        )));
    }
    let mut validators = BTreeMap::new();
    let mut served = Vec::new();
    let mut storage = Vec::new();
    let mut status = false;
    let mut printer_columns = BTreeMap::new();
    for v in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let vname = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        printer_columns.insert(vname.clone(), columns);
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage.push(vname.clone());
        }
        if v.get("served").and_then(Value::as_bool) == Some(true) {
            served.push(vname.clone());
            let validator =
                VersionValidator::from_crd(crd, &vname).map_err(ApiError::bad_request)?;
            validators.insert(vname.clone(), Arc::new(validator));
        }
        status |= v.pointer("/subresources/status").is_some();
    }
    if storage.len() != 1 {
        return Err(ApiError::bad_request(
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        ));
    }
    Ok(ResourceInfo {
        group,
        singular: s("/names/singular"),
        list_kind: spec
            .pointer("/names/listKind")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(format!("{kind}List")),
        kind,
        resource: plural,
        namespaced: s("/scope") == "Namespaced",
        status_subresource: status,
        token_subresource: false,
        create_only: false,
        short_names: spec
            .pointer("/names/shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        served_versions: served,
        storage_version: storage.remove(0),
        schema: Schema::Crd(validators),
        printer_columns,
        view_of: None,
    })
}
