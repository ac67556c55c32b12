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

/// An object as our write returned it.
struct Own<K> {
    object: Arc<K>,
    at: Instant,
    /// We created it: until the cache shows it, its absence there is lag, not a deletion.
    created: bool,
}

/// Written objects by `namespace/name`, and the uids of objects deleted.
pub struct Overlay<K> {
    written: BTreeMap<String, Own<K>>,
    deleted: BTreeMap<String, String>,
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
    /// An update or patch of an object the cache had.
    pub fn wrote(&mut self, o: K) {
        self.remember(o, false);
    }

    /// An object this manager created.
    pub fn created(&mut self, o: K) {
        self.remember(o, true);
    }

    fn remember(&mut self, o: K, created: bool) {
        let k = key(&o);
        self.deleted.remove(&k);
        // A patch of our own creation the cache has not shown yet is still a creation.
        let created = created || self.written.get(&k).is_some_and(|w| w.created);
        let own = Own {
            object: Arc::new(o),
            at: Instant::now(),
            created,
        };
        self.written.insert(k, own);
    }

    /// We deleted `o`: hidden until the cache drops it. A namesake created since (another uid)
    /// is not hidden.
    pub fn deleted(&mut self, o: &K) {
        let k = key(o);
        self.written.remove(&k);
        self.deleted.insert(k, o.uid().unwrap_or_default());
    }

    /// A write found the object gone (404): what we wrote of it no longer stands.
    pub fn gone(&mut self, namespace: &str, name: &str) {
        self.written.remove(&format!("{namespace}/{name}"));
    }

    /// The cached objects with newer own writes laid over them; forgets what the cache has seen.
    /// Objects are shared with the cache, not copied.
    pub fn merge(&mut self, cached: Vec<Arc<K>>) -> Vec<Arc<K>> {
        let mut out: BTreeMap<String, Arc<K>> = BTreeMap::new();
        let mut still_cached = BTreeMap::new();
        for o in cached {
            let k = key(o.as_ref());
            if let Some(uid) = self
                .deleted
                .get(&k)
                .filter(|u| o.uid().as_ref() == Some(*u))
            {
                // Deleted by us, the cache has not seen it yet: keep hiding it.
                still_cached.insert(k, uid.clone());
                continue;
            }
            out.insert(k, o);
        }
        self.deleted = still_cached;
        self.written.retain(|k, w| {
            w.at.elapsed() < TRUST
                && match out.get(k) {
                    Some(c) => rv(c.as_ref()) < rv(w.object.as_ref()),
                    // Gone from the cache after we patched it: somebody deleted it since.
                    None => w.created,
                }
        });
        for (k, w) in &self.written {
            out.insert(k.clone(), w.object.clone());
        }
        out.into_values().collect()
    }

    /// Whether own writes still stand in for the cache; they expire after a while, and the
    /// next round must come by then to notice.
    pub fn holding(&self) -> Option<Duration> {
        self.written
            .values()
            .map(|w| TRUST.saturating_sub(w.at.elapsed()))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kruise_api::NodeImage;

    fn ni(name: &str, rv: &str) -> Arc<NodeImage> {
        let mut n = NodeImage::new(name, Default::default());
        n.metadata.resource_version = Some(rv.into());
        n.metadata.uid = Some(format!("uid-{name}"));
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

        o.deleted(ni("b", "8").as_ref());
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

    #[test]
    fn a_namesake_of_a_deleted_object_is_not_hidden() {
        let mut o = Overlay::default();
        o.deleted(ni("job", "3").as_ref());
        let mut again = (*ni("job", "9")).clone();
        again.metadata.uid = Some("uid-new".into());
        assert_eq!(
            o.merge(vec![Arc::new(again)]).len(),
            1,
            "re-created under the same name: a new object"
        );
        assert!(o.deleted.is_empty());
    }

    #[test]
    fn an_object_deleted_by_someone_else_after_our_write_stays_deleted() {
        let mut o = Overlay::default();
        o.wrote((*ni("job", "5")).clone());
        assert!(
            o.merge(vec![]).is_empty(),
            "a status we wrote does not bring back a job the user deleted"
        );
        assert!(o.holding().is_none());
    }

    #[test]
    fn our_creations_stand_in_until_the_cache_shows_them() {
        let mut o = Overlay::default();
        o.created((*ni("new", "5")).clone());
        o.wrote((*ni("new", "6")).clone());
        assert_eq!(o.merge(vec![]).len(), 1, "the cache has not seen it yet");
        assert!(o.holding().is_some_and(|d| d <= TRUST));
        assert_eq!(o.merge(vec![ni("new", "6")]).len(), 1);
        assert!(o.holding().is_none(), "the cache caught up");
    }
}
