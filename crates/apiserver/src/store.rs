//! The object store: one global, monotonic `resourceVersion`, objects kept in their storage
//! version, and a bounded history of changes that watches replay from (older than the history is
//! `410 Gone`). Writes follow the real server's rules: optimistic concurrency on
//! `resourceVersion`, `generation` bumped on spec change only, status and spec written through
//! their own endpoints, finalizers holding deletion, no-op updates that change nothing; a dry run
//! does every check and writes nothing. A view (core `events`) keeps its objects in the store of
//! the resource it views, converted on the way in (`to_storage`) and out (`present`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::builtin;
use crate::catalog::{Catalog, ResourceInfo};
use crate::errors::{ApiError, ApiResult};
use crate::meta::{self, NameRule};

/// Changes kept for watches to resume from.
const HISTORY: usize = 10_000;

pub type GroupResource = (String, String);
pub type ObjectKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub gr: GroupResource,
    pub type_: EventType,
    pub object: Value,
    /// The object before a modification or deletion: selector watches turn a modification into
    /// ADDED/DELETED with it, and lists at an older resourceVersion restore it.
    pub old: Option<Value>,
}

pub struct State {
    pub rv: u64,
    pub catalog: Catalog,
    pub objects: HashMap<GroupResource, BTreeMap<ObjectKey, Value>>,
    pub history: VecDeque<Arc<Change>>,
    /// Watches from at or below this resourceVersion are too old.
    pub compacted: u64,
}

pub struct Store {
    pub state: Mutex<State>,
    pub changes: broadcast::Sender<Arc<Change>>,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn rv_of(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn str_at<'a>(obj: &'a Value, p: &str) -> &'a str {
    obj.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// Everything but metadata and status: what bumps `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

impl State {
    /// The stored object, or the 404 the API server answers.
    pub fn current(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Value> {
        let key = (
            if info.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        self.objects
            .get(&info.storage_key())
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.qualified(), name))
    }
}

impl Store {
    pub fn new() -> Arc<Self> {
        let (changes, _) = broadcast::channel(65_536);
        let store = Arc::new(Self {
            state: Mutex::new(State {
                rv: 1,
                catalog: Catalog::with_builtins(),
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted: 0,
            }),
            changes,
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let info = store
                .lock()
                .catalog
                .get("", "v1", "namespaces")
                .expect("namespaces are built in");
            store
                .create(&info, "v1", "", json!({"metadata": {"name": ns}}))
                .expect("creating a built-in namespace");
        }
        store
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a change: new resourceVersion, history, watchers.
    pub(crate) fn commit(
        &self,
        st: &mut State,
        info: &ResourceInfo,
        type_: EventType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let gr = info.storage_key();
        let key = (
            str_at(&obj, "/metadata/namespace").to_string(),
            str_at(&obj, "/metadata/name").to_string(),
        );
        let objects = st.objects.entry(gr.clone()).or_default();
        let replaced = if type_ == EventType::Deleted {
            objects.remove(&key)
        } else {
            objects.insert(key.clone(), obj.clone())
        };
        // What the object was, so that a list at an older resourceVersion can be rebuilt.
        let old = old.or(replaced);
        let change = Arc::new(Change {
            rv,
            gr,
            type_,
            object: obj.clone(),
            old,
        });
        st.history.push_back(change.clone());
        while st.history.len() > HISTORY {
            if let Some(c) = st.history.pop_front() {
                st.compacted = c.rv;
            }
        }
        let _ = self.changes.send(change);
        obj
    }

    /// Drops history, so every watch from an earlier resourceVersion gets `410 Gone`.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.compacted = st.rv;
    }

    pub fn get(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Value> {
        self.lock().current(info, ns, name)
    }

    /// Checks and completes a new object, then stores it.
    pub fn create(
        &self,
        info: &ResourceInfo,
        version: &str,
        ns: &str,
        obj: Value,
    ) -> ApiResult<Value> {
        self.create_with(info, version, ns, obj, false)
    }

    /// [`create`](Self::create); a dry run checks everything (AlreadyExists too) and answers the
    /// object it would store, without a resourceVersion, and stores nothing.
    pub fn create_with(
        &self,
        info: &ResourceInfo,
        version: &str,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_type_meta(info, version, &obj)?;
        let mut st = self.lock();
        if info.namespaced {
            let nsinfo = st.catalog.get("", "v1", "namespaces").expect("built in");
            let namespace = st
                .objects
                .get(&(nsinfo.group.clone(), nsinfo.resource.clone()))
                .and_then(|m| m.get(&(String::new(), ns.to_string())));
            match namespace {
                None => return Err(ApiError::not_found("namespaces", ns)),
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        info.qualified(),
                        str_at(&obj, "/metadata/name")
                    )))
                }
                Some(_) => {}
            }
        }
        let meta = obj
            .as_object_mut()
            .expect("checked above")
            .entry("metadata")
            .or_insert(json!({}));
        let body_ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if info.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            if let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
            {
                meta["name"] = json!(format!("{prefix}{}", random_suffix()));
            }
        }
        let m = meta.as_object_mut().expect("metadata is an object");
        if info.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        m.insert("generation".into(), json!(1));
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(k);
        }
        let keep_status = matches!(
            (info.group.as_str(), info.kind.as_str()),
            ("", "Node") | ("", "Namespace")
        );
        if info.status_subresource && !keep_status {
            obj.as_object_mut().expect("object").remove("status");
        }
        if info.group.is_empty() && info.kind == "Namespace" {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        let mut obj = admit(info, version, obj, None)?;
        let name = str_at(&obj, "/metadata/name").to_string();
        let exists = st.objects.get(&info.storage_key()).is_some_and(|m| {
            m.contains_key(&(
                if info.namespaced {
                    ns.to_string()
                } else {
                    String::new()
                },
                name.clone(),
            ))
        });
        if exists {
            return Err(ApiError::already_exists(&info.qualified(), &name));
        }
        if info.group == "apiextensions.k8s.io" {
            crate::gc::register_crd(&mut st, &mut obj, dry_run)?;
        }
        let obj = to_storage(info, obj);
        if dry_run {
            return Ok(obj);
        }
        Ok(self.commit(&mut st, info, EventType::Added, obj, None))
    }

    /// Replaces an object (PUT) or its status. `obj` is what the client sent.
    pub fn update(
        &self,
        info: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        obj: Value,
        mode: UpdateMode,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        self.update_locked(&mut st, info, version, ns, name, obj, mode)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_locked(
        &self,
        st: &mut State,
        info: &ResourceInfo,
        version: &str,
        ns: &str,
        name: &str,
        mut obj: Value,
        mode: UpdateMode,
    ) -> ApiResult<Value> {
        let UpdateMode {
            status_only,
            dry_run,
        } = mode;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_type_meta(info, version, &obj)?;
        let current = st.current(info, ns, name)?;
        let body_name = str_at(&obj, "/metadata/name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_rv = rv_of(&obj).to_string();
        if !body_rv.is_empty() && body_rv != rv_of(&current) {
            return Err(ApiError::conflict(&info.qualified(), name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
        if status_only {
            let status = obj.get("status").cloned();
            obj = current.clone();
            match status {
                Some(s) => obj["status"] = s,
                None => {
                    obj.as_object_mut().expect("object").remove("status");
                }
            }
        } else {
            if info.status_subresource {
                match current.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        obj.as_object_mut().expect("object").remove("status");
                    }
                }
            }
            let m = obj
                .as_object_mut()
                .expect("object")
                .entry("metadata")
                .or_insert(json!({}));
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match current["metadata"].get(k) {
                    Some(v) => m[k] = v.clone(),
                    None => {
                        m.as_object_mut().expect("metadata").remove(k);
                    }
                }
            }
            m.as_object_mut().expect("metadata").remove("managedFields");
            m["name"] = json!(name);
        }
        obj["metadata"]["resourceVersion"] = json!(rv_of(&current));
        let obj = admit(info, version, obj, Some(&current))?;
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            let finalizers = |o: &Value| -> Vec<String> {
                o.pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (before, after) = (finalizers(&current), finalizers(&obj));
            if after.iter().any(|f| !before.contains(f)) {
                return Err(ApiError::forbidden(format!("{} \"{name}\" is forbidden: no new finalizers can be added if the object is being deleted", info.qualified())));
            }
        }
        let mut obj = to_storage(info, obj);
        if spec_part(&obj) != spec_part(&current) {
            let g = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        if obj == current {
            return Ok(current);
        }
        if info.group == "apiextensions.k8s.io" {
            crate::gc::register_crd(st, &mut obj.clone(), dry_run)?;
        }
        if dry_run {
            return Ok(obj);
        }
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
        let no_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if deleting && no_finalizers {
            let gone = self.commit(st, info, EventType::Deleted, obj, Some(current));
            crate::gc::after_delete(self, st, info, &gone);
            return Ok(gone);
        }
        Ok(self.commit(st, info, EventType::Modified, obj, Some(current)))
    }
}

/// How an update writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateMode {
    /// Through `/status`: only the status changes.
    pub status_only: bool,
    /// `dryRun=All`: every check, the would-be object answered (with the current
    /// resourceVersion), nothing written.
    pub dry_run: bool,
}

/// `kind` and `apiVersion` in a body must name what the URL names.
pub(crate) fn check_type_meta(info: &ResourceInfo, version: &str, obj: &Value) -> ApiResult<()> {
    let kind = str_at(obj, "/kind");
    let api_version = str_at(obj, "/apiVersion");
    if !kind.is_empty() && kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind of the provided object ({kind}) does not match the kind of the request ({})",
            info.kind
        )));
    }
    if !api_version.is_empty() && api_version != info.api_version(version) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version(version)
        )));
    }
    Ok(())
}

/// Schema (CRD) or typed (built-in) decoding and validation, plus metadata rules.
fn admit(
    info: &ResourceInfo,
    version: &str,
    mut obj: Value,
    old: Option<&Value>,
) -> ApiResult<Value> {
    obj["apiVersion"] = json!(info.api_version(version));
    obj["kind"] = json!(info.kind);
    let name = str_at(&obj, "/metadata/name").to_string();
    let name_rule = if info.group.is_empty() && info.kind == "Namespace" {
        NameRule::Label
    } else {
        NameRule::Subdomain
    };
    let mut errors = meta::validate(obj.get("metadata").unwrap_or(&Value::Null), name_rule);
    let obj = if let Some(v) = info.validator(version) {
        match v.admit(obj.clone(), old) {
            Ok(o) => o,
            Err(e) => {
                errors.extend(e);
                obj
            }
        }
    } else {
        let decoded = builtin::decode(info, obj)?;
        errors.extend(builtin::validate(info, &decoded, old));
        decoded
    };
    if errors.is_empty() {
        Ok(obj)
    } else {
        Err(ApiError::invalid(
            &info.kind_group(),
            &info.kind,
            &info.group,
            &name,
            &errors,
        ))
    }
}

/// Objects are stored in their storage version (the schemas are the same; no conversion), and
/// a view's objects in the form of the resource it views.
fn to_storage(info: &ResourceInfo, mut obj: Value) -> Value {
    if info.is_view() {
        return crate::events_view::to_events(obj);
    }
    obj["apiVersion"] = json!(info.api_version(&info.storage_version));
    obj
}

/// The (stored) object as `version` presents it.
/// An object as `PartialObjectMetadata` (what a client asking `as=PartialObjectMetadata` gets:
/// its metadata only, so a metadata watch of large objects transfers little).
pub fn metadata_only(obj: Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}

/// A list as `PartialObjectMetadataList`.
pub fn metadata_list(mut list: Value) -> Value {
    let items: Vec<Value> = list["items"]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default()
        .into_iter()
        .map(metadata_only)
        .collect();
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": list["metadata"], "items": items,
    })
}

pub fn present(info: &ResourceInfo, version: &str, obj: Value) -> Value {
    let mut obj = if info.is_view() {
        crate::events_view::to_core(obj)
    } else {
        obj
    };
    obj["apiVersion"] = json!(info.api_version(version));
    obj["kind"] = json!(info.kind);
    obj
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let id = uuid::Uuid::new_v4();
    id.as_bytes()[..5]
        .iter()
        .map(|b| CHARS[*b as usize % CHARS.len()] as char)
        .collect()
}
