//! What this manager wrote and its caches have not seen yet. The planner reads caches, which lag
//! behind the manager's own writes by a watch event; planning from the stale copy would write the
//! same change again (or a different start time). The overlay holds each object as the API server
//! returned it until the cache has caught up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::{Resource, ResourceExt};

fn rv<K: Resource>(o: &K) -> u64 {
    o.resource_version()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// How long an own write is trusted over a cache that has not shown it (a watch that is down).
const TRUST: Duration = Duration::from_secs(30);

/// Written objects by `namespace/name`, and names deleted.
pub struct Overlay<K> {
    written: BTreeMap<String, (Arc<K>, Instant)>,
    deleted: BTreeMap<String, u64>,
}

impl<K> Default for Overlay<K> {
    fn default() -> Self {
        Self {
            written: BTreeMap::new(),
            deleted: BTreeMap::new(),
        }
    }
}

fn key<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

impl<K: Resource + Clone> Overlay<K> {
    pub fn wrote(&mut self, o: K) {
        self.deleted.remove(&key(&o));
        self.written.insert(key(&o), (Arc::new(o), Instant::now()));
    }

    pub fn deleted(&mut self, namespace: &str, name: &str, at_rv: u64) {
        let k = format!("{namespace}/{name}");
        self.written.remove(&k);
        self.deleted.insert(k, at_rv);
    }

    /// The cached objects with newer own writes laid over them; forgets what the cache has seen.
    /// Objects are shared with the cache, not copied.
    pub fn merge(&mut self, cached: Vec<Arc<K>>) -> Vec<Arc<K>> {
        let mut out: BTreeMap<String, Arc<K>> = BTreeMap::new();
        for o in cached {
            let k = key(o.as_ref());
            if self.deleted.get(&k).is_some_and(|d| rv(o.as_ref()) <= *d) {
                continue;
            }
            out.insert(k, o);
        }
        self.deleted.retain(|k, _| out.contains_key(k));
        self.written.retain(|k, (w, at)| {
            at.elapsed() < TRUST
                && match out.get(k) {
                    Some(c) => rv(c.as_ref()) < rv(w.as_ref()),
                    None => true,
                }
        });
        for (k, (w, _)) in &self.written {
            out.insert(k.clone(), w.clone());
        }
        out.into_values().collect()
    }
}
