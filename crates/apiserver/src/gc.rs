//! What happens around deletion: finalizers holding an object, namespaces that empty themselves
//! before they go, background garbage collection by `ownerReferences`, and CRDs whose resources
//! appear and disappear with them.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};
use crate::store::{EventType, State, Store};

/// `DeleteOptions` that matter here.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub orphan: bool,
    /// `dryRun=All`: every check, nothing written.
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

impl DeleteOptions {
    pub fn from_body(body: &Value, query_policy: Option<&str>) -> Self {
        let policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(query_policy);
        Self {
            orphan: policy == Some("Orphan")
                || body.get("orphanDependents").and_then(Value::as_bool) == Some(true),
            dry_run: false,
            precondition_uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn str_at<'a>(obj: &'a Value, p: &str) -> &'a str {
    obj.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

impl Store {
    pub fn delete(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        self.delete_locked(&mut st, info, ns, name, opts)
    }

    pub(crate) fn delete_locked(
        &self,
        st: &mut State,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let current = st.current(info, ns, name)?;
        let uid = str_at(&current, "/metadata/uid").to_string();
        if let Some(want) = &opts.precondition_uid {
            if *want != uid {
                return Err(ApiError::conflict(&info.qualified(), name, &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}")));
            }
        }
        if let Some(want) = &opts.precondition_rv {
            if want != str_at(&current, "/metadata/resourceVersion") {
                return Err(ApiError::conflict(&info.qualified(), name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        let namespace = info.group.is_empty() && info.kind == "Namespace";
        if opts.dry_run {
            return Ok(would_delete(current, namespace));
        }
        if opts.orphan {
            self.orphan_dependents(st, &uid);
        }
        if namespace {
            return Ok(self.terminate_namespace(st, info, current));
        }
        let has_finalizers = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(current);
            }
            let marked = would_delete(current.clone(), false);
            return Ok(self.commit(st, info, EventType::Modified, marked, Some(current)));
        }
        let gone = self.commit(st, info, EventType::Deleted, current, None);
        after_delete(self, st, info, &gone);
        Ok(gone)
    }

    fn terminate_namespace(&self, st: &mut State, info: &ResourceInfo, current: Value) -> Value {
        let ns = str_at(&current, "/metadata/name").to_string();
        let mut obj = current.clone();
        if current.pointer("/metadata/deletionTimestamp").is_none() {
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["status"] = json!({"phase": "Terminating"});
            obj = self.commit(st, info, EventType::Modified, obj, Some(current));
        }
        let namespaced: Vec<_> = st
            .catalog
            .all()
            .filter(|r| r.namespaced && !r.is_view())
            .cloned()
            .collect();
        for r in namespaced {
            let names: Vec<String> = st
                .objects
                .get(&(r.group.clone(), r.resource.clone()))
                .map(|m| {
                    m.keys()
                        .filter(|(n, _)| *n == ns)
                        .map(|(_, name)| name.clone())
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                let _ = self.delete_locked(st, &r, &ns, &name, &DeleteOptions::default());
            }
        }
        self.finish_namespace(st, &ns).unwrap_or(obj)
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace(&self, st: &mut State, ns: &str) -> Option<Value> {
        let nsinfo = st.catalog.get("", "v1", "namespaces")?;
        let obj = st
            .objects
            .get(&(String::new(), "namespaces".into()))?
            .get(&(String::new(), ns.to_string()))?
            .clone();
        obj.pointer("/metadata/deletionTimestamp")?;
        let empty = st
            .catalog
            .all()
            .filter(|r| r.namespaced && !r.is_view())
            .all(|r| {
                st.objects
                    .get(&(r.group.clone(), r.resource.clone()))
                    .is_none_or(|m| !m.keys().any(|(n, _)| n == ns))
            });
        empty.then(|| self.commit(st, &nsinfo, EventType::Deleted, obj, None))
    }

    fn orphan_dependents(&self, st: &mut State, uid: &str) {
        for (info, obj) in dependents(st, uid) {
            let mut updated = obj.clone();
            strip_owner(&mut updated, uid);
            self.commit(st, &info, EventType::Modified, updated, Some(obj));
        }
    }

    /// Background garbage collection: objects whose every owner is gone are deleted, owner
    /// references to deleted owners are removed from objects that still have another owner.
    pub fn collect_garbage(&self) {
        let mut st = self.lock();
        let live: HashSet<String> = st
            .objects
            .values()
            .flat_map(|m| m.values())
            .map(|o| str_at(o, "/metadata/uid").to_string())
            .collect();
        let mut work = Vec::new();
        for (info, obj) in stored(&st) {
            let owners = owner_uids(obj);
            if owners.iter().any(|u| !live.contains(*u)) {
                work.push((
                    info.clone(),
                    obj.clone(),
                    owners.iter().all(|u| !live.contains(*u)),
                ));
            }
        }
        for (info, obj, all_gone) in work {
            let ns = str_at(&obj, "/metadata/namespace").to_string();
            let name = str_at(&obj, "/metadata/name").to_string();
            if all_gone {
                let _ = self.delete_locked(&mut st, &info, &ns, &name, &DeleteOptions::default());
            } else {
                let mut updated = obj.clone();
                let owners = updated["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                updated["metadata"]["ownerReferences"] = json!(owners
                    .into_iter()
                    .filter(|o| live.contains(str_at(o, "/uid")))
                    .collect::<Vec<_>>());
                self.commit(&mut st, &info, EventType::Modified, updated, Some(obj));
            }
        }
    }
}

/// Every stored object with its resource.
fn stored(st: &State) -> impl Iterator<Item = (&std::sync::Arc<ResourceInfo>, &Value)> {
    st.catalog
        .all()
        .filter(|r| !r.is_view())
        .flat_map(move |info| {
            st.objects
                .get(&(info.group.clone(), info.resource.clone()))
                .into_iter()
                .flat_map(|m| m.values())
                .map(move |o| (info, o))
        })
}

/// The object as a delete leaves it while something holds it: marked deleted (a namespace also
/// `Terminating`); what a dry run answers, finalizers or not.
fn would_delete(mut obj: Value, namespace: bool) -> Value {
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        return obj;
    }
    let held = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if namespace {
        obj["metadata"]["deletionTimestamp"] = json!(now());
        obj["status"] = json!({"phase": "Terminating"});
    } else if held {
        obj["metadata"]["deletionTimestamp"] = json!(now());
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    obj
}

fn owner_uids(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("uid").and_then(Value::as_str))
        .collect()
}

fn dependents(st: &State, uid: &str) -> Vec<(std::sync::Arc<ResourceInfo>, Value)> {
    stored(st)
        .filter(|(_, o)| owner_uids(o).contains(&uid))
        .map(|(i, o)| (i.clone(), o.clone()))
        .collect()
}

fn strip_owner(obj: &mut Value, uid: &str) {
    if let Some(owners) = obj
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        owners.retain(|o| str_at(o, "/uid") != uid);
    }
}

/// Follow-ups of a completed deletion: dependents, the namespace it emptied, a CRD's objects.
pub(crate) fn after_delete(store: &Store, st: &mut State, info: &ResourceInfo, gone: &Value) {
    let uid = str_at(gone, "/metadata/uid").to_string();
    for (dep_info, dep) in dependents(st, &uid) {
        let ns = str_at(&dep, "/metadata/namespace").to_string();
        let name = str_at(&dep, "/metadata/name").to_string();
        let other_owner_alive = dep
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|o| {
                let u = str_at(o, "/uid");
                u != uid
                    && st
                        .objects
                        .values()
                        .flat_map(|m| m.values())
                        .any(|x| str_at(x, "/metadata/uid") == u)
            });
        if other_owner_alive {
            let mut updated = dep.clone();
            strip_owner(&mut updated, &uid);
            store.commit(st, &dep_info, EventType::Modified, updated, Some(dep));
        } else {
            let _ = store.delete_locked(st, &dep_info, &ns, &name, &DeleteOptions::default());
        }
    }
    let ns = str_at(gone, "/metadata/namespace");
    if info.namespaced && !ns.is_empty() {
        let ns = ns.to_string();
        store.finish_namespace(st, &ns);
    }
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        let group = str_at(gone, "/spec/group").to_string();
        let plural = str_at(gone, "/spec/names/plural").to_string();
        st.objects.remove(&(group.clone(), plural.clone()));
        st.catalog.unregister_crd(&group, &plural);
    }
}

/// Serves the resource a CRD defines and marks the CRD established, as the real server does; a
/// dry run only checks it.
pub(crate) fn register_crd(st: &mut State, crd: &mut Value, dry_run: bool) -> ApiResult<()> {
    let storage_version = if dry_run {
        st.catalog.check_crd(crd)?.storage_version
    } else {
        st.catalog.register_crd(crd)?.storage_version.clone()
    };
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let t = now();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": [storage_version],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
        ],
    });
    Ok(())
}
