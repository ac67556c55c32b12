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
        let mut still_cached = BTreeMap::new();
        for o in cached {
            let k = key(o.as_ref());
            if let Some(d) = self.deleted.get(&k).filter(|d| rv(o.as_ref()) <= **d) {
                // Deleted by us, the cache has not seen it yet: keep hiding it.
                still_cached.insert(k, *d);
                continue;
            }
            out.insert(k, o);
        }
        self.deleted = still_cached;
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

#[cfg(test)]
mod tests {
    use super::*;
    use kruise_api::NodeImage;

    fn ni(name: &str, rv: &str) -> Arc<NodeImage> {
        let mut n = NodeImage::new(name, Default::default());
        n.metadata.resource_version = Some(rv.into());
        Arc::new(n)
    }

    #[test]
    fn own_writes_win_until_the_cache_catches_up() {
        let mut o = Overlay::default();
        o.wrote((*ni("a", "5")).clone());
        let merged = o.merge(vec![ni("a", "3")]);
        assert_eq!(
            merged[0].resource_version().as_deref(),
            Some("5"),
            "the cache lags: our write wins"
        );
        let merged = o.merge(vec![ni("a", "7")]);
        assert_eq!(
            merged[0].resource_version().as_deref(),
            Some("7"),
            "the cache caught up"
        );
        assert!(o.written.is_empty());

        o.deleted("", "b", u64::MAX);
        assert!(
            o.merge(vec![ni("b", "9")]).is_empty(),
            "hidden while the cache still has it"
        );
        assert!(
            o.merge(vec![ni("b", "9")]).is_empty(),
            "and on the next round too"
        );
        assert!(o.merge(vec![]).is_empty());
        assert!(
            o.deleted.is_empty(),
            "forgotten once the cache has seen the deletion"
        );
    }
}
