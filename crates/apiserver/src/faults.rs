//! Faults on demand and request counts, driven over HTTP under `/_test/` so that tests and
//! benchmarks in other processes can use them too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{json, Value};

/// A request as counted: verb, `group/resource` (core kinds have no group), subresource, the
/// client's User-Agent (up to its `/`), and the namespace of a namespaced request.
pub type RequestKey = (String, String, String, String, String);

/// The longest a watch request is held by `holdWatches`.
pub const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug)]
pub struct Faults {
    fail_writes: AtomicU32,
    fail_code: AtomicU16,
    /// Only writes of this verb on this resource fail (`"create imagepulljobs"`); `None`: any.
    fail_only: Mutex<Option<(String, String)>>,
    latency_ms: AtomicU64,
    latency_path: Mutex<Option<String>>,
    /// Writes held by `latencyMs` right now: lets a test act while a client waits on the server.
    stalled_writes: AtomicU64,
    pub drop_watches: tokio::sync::watch::Sender<u64>,
    /// New watch requests wait while this is true.
    hold_watches: tokio::sync::watch::Sender<bool>,
    /// Only watches whose path contains this are held; `None`: all.
    hold_path: Mutex<Option<String>>,
    counts: Mutex<BTreeMap<RequestKey, u64>>,
}

/// Body of `POST /_test/faults`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRequest {
    /// End every open watch now (clients must re-watch or relist).
    pub drop_watches: Option<bool>,
    /// Fail the next N writes (create, update, patch, delete) with `failCode`.
    pub fail_writes: Option<u32>,
    /// 500 (default) or 429.
    pub fail_code: Option<u16>,
    /// Only these writes fail: a verb and a resource (plural), as in `"create imagepulljobs"`.
    pub fail_only: Option<String>,
    /// Added to every request from now on (`0` lifts it); `/_test/` itself is never delayed.
    pub latency_ms: Option<u64>,
    /// Delay only requests whose path contains this (for example `/nodeimages`).
    pub latency_path: Option<String>,
    /// Forget watch history: watches from older resourceVersions get 410 Gone. Done before
    /// the other faults of the same request, so `{"compact": true, "dropWatches": true}` makes
    /// every watch resume from a version the server no longer has.
    pub compact: Option<bool>,
    /// `true`: new watch requests are held unanswered (up to [`HOLD_LIMIT`]) until a request
    /// sets it `false`. With `dropWatches`, clients' watches stay down while a test changes
    /// objects; lifting it together with `compact` makes them resume from a forgotten version.
    pub hold_watches: Option<bool>,
    /// Hold only watches whose path contains this (for example `/nodeimages`).
    pub hold_watches_path: Option<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_writes: AtomicU32::new(0),
            fail_code: AtomicU16::new(500),
            fail_only: Mutex::new(None),
            latency_ms: AtomicU64::new(0),
            latency_path: Mutex::new(None),
            stalled_writes: AtomicU64::new(0),
            drop_watches: tokio::sync::watch::channel(0).0,
            hold_watches: tokio::sync::watch::channel(false).0,
            hold_path: Mutex::new(None),
            counts: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Faults {
    pub fn apply(&self, req: &FaultRequest) {
        // Held first: a dropped watch coming back finds the hold in place.
        if let Some(hold) = req.hold_watches {
            *self.hold_path.lock().unwrap_or_else(|p| p.into_inner()) =
                req.hold_watches_path.clone();
            self.hold_watches.send_replace(hold);
        }
        if req.drop_watches == Some(true) {
            self.drop_watches.send_modify(|g| *g += 1);
        }
        if let Some(n) = req.fail_writes {
            self.fail_code
                .store(req.fail_code.unwrap_or(500), Ordering::SeqCst);
            *self.fail_only.lock().unwrap_or_else(|p| p.into_inner()) =
                req.fail_only.as_deref().and_then(|f| {
                    let (verb, resource) = f.split_once(' ')?;
                    Some((verb.to_string(), resource.to_string()))
                });
            self.fail_writes.store(n, Ordering::SeqCst);
        }
        if let Some(ms) = req.latency_ms {
            self.latency_ms.store(ms, Ordering::SeqCst);
            *self.latency_path.lock().unwrap_or_else(|p| p.into_inner()) = req.latency_path.clone();
        }
    }

    /// Waits while watches are held, at most [`HOLD_LIMIT`] (a test that forgets to lift the
    /// hold sees its clients' watches come back rather than hang).
    pub async fn hold_watch(&self, path: &str) {
        let applies = match &*self.hold_path.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(only) => path.contains(only.as_str()),
            None => true,
        };
        if !applies {
            return;
        }
        let mut held = self.hold_watches.subscribe();
        let _ = tokio::time::timeout(HOLD_LIMIT, held.wait_for(|h| !*h)).await;
    }

    /// The status code to fail this write (`verb` on `resource`) with, if a failure is pending.
    pub fn take_write_failure(&self, verb: &str, resource: &str) -> Option<u16> {
        let only = self.fail_only.lock().unwrap_or_else(|p| p.into_inner());
        if only
            .as_ref()
            .is_some_and(|(v, r)| v != verb || r != resource)
        {
            return None;
        }
        drop(only);
        self.fail_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| self.fail_code.load(Ordering::SeqCst))
    }

    /// Sleeps for the injected latency, counting the request among the stalled writes meanwhile.
    pub async fn delay(&self, path: &str, write: bool) {
        let latency = std::time::Duration::from_millis(self.latency_ms.load(Ordering::SeqCst));
        let applies = match &*self.latency_path.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(only) => path.contains(only.as_str()),
            None => true,
        };
        if latency.is_zero() || !applies {
            return;
        }
        struct Stalled<'a>(Option<&'a AtomicU64>);
        impl Drop for Stalled<'_> {
            fn drop(&mut self) {
                if let Some(n) = self.0 {
                    n.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        let _stalled = Stalled(write.then(|| {
            self.stalled_writes.fetch_add(1, Ordering::SeqCst);
            &self.stalled_writes
        }));
        tokio::time::sleep(latency).await;
    }

    pub fn count(&self, key: RequestKey) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    /// `{"requests": [{"verb", "resource", "subresource", "agent", "namespace", "count"}],
    /// "stalledWrites": n}`.
    pub fn counts_json(&self) -> Value {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<Value> = counts
            .iter()
            .map(|((verb, resource, sub, agent, namespace), n)| json!({"verb": verb, "resource": resource, "subresource": sub, "agent": agent, "namespace": namespace, "count": n}))
            .collect();
        json!({ "requests": rows, "stalledWrites": self.stalled_writes.load(Ordering::SeqCst) })
    }

    pub fn reset_counts(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
