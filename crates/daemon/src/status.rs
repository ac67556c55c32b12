//! The single writer of this node's NodeImage status. Workers send tag results; the writer keeps
//! the whole status, and patches the status subresource only when it changed, coalescing bursts:
//! a result (Succeeded/Failed) goes out at once, progress (Waiting/Pulling) within a few seconds
//! and usually folded into the result's write. Writes draw from a token bucket (a burst of 3,
//! then one every 2 s, OpenKruise's 0.5 QPS), so a node finishing 50 tags at once writes a
//! handful of times, not 50. A failed write is retried with backoff and nothing is lost meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kruise_api::{ImageStatus, ImageTagStatus, NodeImage, NodeImageStatus, TagPhase};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::desired::TagKey;
use crate::metrics::Metrics;
use kruise_observe::supervise::Watchdog;

/// The workers' and the controller's side of the status writer's (bounded) channel. Every update
/// sent is pending for the writer's watchdog until the writer takes it, so a writer that stops
/// taking updates fails the daemon within the stall timeout.
#[derive(Clone)]
pub struct StatusSender {
    tx: mpsc::Sender<StatusUpdate>,
    progress: Arc<Watchdog>,
    metrics: Arc<Metrics>,
}

impl StatusSender {
    pub fn new(
        tx: mpsc::Sender<StatusUpdate>,
        progress: Arc<Watchdog>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            tx,
            progress,
            metrics,
        }
    }

    /// Sends `update`, waiting while the channel is full; `Err` once the writer is gone.
    pub async fn send(&self, update: StatusUpdate) -> Result<(), ()> {
        self.progress.add(1);
        let sent = self.tx.send(update).await.map_err(|_| ());
        if sent.is_err() {
            self.progress.done(1);
        }
        let queued = self.tx.max_capacity() - self.tx.capacity();
        self.metrics.status_queue.set(queued as i64);
        sent
    }
}

pub enum StatusUpdate {
    /// A tag's new status; `None` when the tag left the spec.
    Tag {
        key: TagKey,
        status: Option<ImageTagStatus>,
    },
    /// Tags in the spec now.
    Desired(i32),
    /// The status as the API server has it (on start, and after every relist).
    Observed(Option<NodeImageStatus>),
    /// Write what is pending now, then acknowledge.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// How soon a change is written, by urgency, and how many writes may go out.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub result_delay: Duration,
    pub progress_delay: Duration,
    /// Writes allowed back to back.
    pub burst: u32,
    /// One more write allowed per this much time.
    pub refill: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            result_delay: Duration::from_millis(5),
            progress_delay: Duration::from_secs(3),
            burst: 3,
            refill: Duration::from_secs(2),
        }
    }
}

/// A token bucket: `burst` writes at once, then one per `refill`.
struct Bucket {
    tokens: f64,
    burst: f64,
    refill: Duration,
    at: Instant,
}

impl Bucket {
    fn new(t: &Timing) -> Self {
        Self {
            tokens: t.burst as f64,
            burst: t.burst as f64,
            refill: t.refill,
            at: Instant::now(),
        }
    }

    fn top_up(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() / self.refill.as_secs_f64())
            .min(self.burst);
        self.at = now;
    }

    /// When a write may go out (now, if a token is there).
    fn ready_at(&mut self) -> Instant {
        self.top_up();
        if self.tokens >= 1.0 {
            self.at
        } else {
            self.at + self.refill.mul_f64(1.0 - self.tokens)
        }
    }

    fn take(&mut self) {
        self.top_up();
        self.tokens -= 1.0;
    }
}

/// Builds the status a set of tag results adds up to.
pub fn build(desired: i32, tags: &BTreeMap<TagKey, ImageTagStatus>) -> NodeImageStatus {
    let mut status = NodeImageStatus {
        desired,
        ..Default::default()
    };
    for ((image, _), t) in tags {
        match t.phase {
            TagPhase::Waiting => status.waiting += 1,
            TagPhase::Pulling => status.pulling += 1,
            TagPhase::Succeeded => status.succeeded += 1,
            TagPhase::Failed => status.failed += 1,
        }
        status
            .image_statuses
            .entry(image.clone())
            .or_insert_with(|| ImageStatus { tags: Vec::new() })
            .tags
            .push(t.clone());
    }
    status
}

/// A merge patch from `old` to `new`: changed images in full, removed images as null.
pub fn merge_patch(
    old: Option<&NodeImageStatus>,
    new: &NodeImageStatus,
    maybe_on_server: &BTreeSet<String>,
) -> Value {
    let mut images = serde_json::Map::new();
    let old_images = old.map(|o| &o.image_statuses);
    for (k, v) in &new.image_statuses {
        if old_images.and_then(|o| o.get(k)) != Some(v) {
            images.insert(
                k.clone(),
                serde_json::to_value(v).expect("status serialises"),
            );
        }
    }
    for k in old_images
        .into_iter()
        .flat_map(|o| o.keys())
        .chain(maybe_on_server)
    {
        if !new.image_statuses.contains_key(k) {
            images.insert(k.clone(), Value::Null);
        }
    }
    json!({"status": {
        "desired": new.desired, "succeeded": new.succeeded, "failed": new.failed,
        "pulling": new.pulling, "waiting": new.waiting, "imageStatuses": images,
    }})
}

pub struct StatusWriter {
    pub api: Api<NodeImage>,
    pub node: String,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    /// The watchdog the [`StatusSender`]s count updates on.
    pub progress: Arc<Watchdog>,
    /// The manifest digests of the tags reported Succeeded: what the peer blob server may serve.
    pub holdings: Arc<tokio::sync::watch::Sender<crate::peer::Holdings>>,
}

/// What the writer knows between messages.
struct Pending {
    tags: BTreeMap<TagKey, ImageTagStatus>,
    desired: i32,
    written: Option<NodeImageStatus>,
    /// Images whose status the server may still hold although `written` lacks them: a relist
    /// can bring an older snapshot than our last write, and its gaps must not hide entries.
    maybe_on_server: BTreeSet<String>,
    due: Option<Instant>,
    failures: u32,
}

impl Pending {
    fn due_in(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }
}

impl StatusWriter {
    pub async fn run(self, mut rx: mpsc::Receiver<StatusUpdate>) {
        let mut p = Pending {
            tags: BTreeMap::new(),
            desired: 0,
            written: None,
            maybe_on_server: BTreeSet::new(),
            due: None,
            failures: 0,
        };
        let mut bucket = Bucket::new(&self.timing);
        loop {
            let wake = p.due.map(|d| d.max(bucket.ready_at()));
            let update = tokio::select! {
                u = rx.recv() => match u { Some(u) => Some(u), None => return },
                _ = sleep(wake) => None,
            };
            if update.is_some() {
                self.progress.done(1);
                if kruise_observe::fault("status-writer-stall") {
                    std::future::pending::<()>().await;
                }
            }
            let ack = match update {
                Some(StatusUpdate::Flush(ack)) => Some(ack),
                Some(other) => {
                    self.absorb(&mut p, other);
                    continue;
                }
                None => None,
            };
            let new = build(p.desired, &p.tags);
            if p.written.as_ref() != Some(&new) {
                bucket.take();
                self.write_or_retry(&mut p, new).await;
            } else {
                p.due = None;
            }
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    }

    fn absorb(&self, p: &mut Pending, update: StatusUpdate) {
        match update {
            StatusUpdate::Tag { key, status } => {
                let urgent = status
                    .as_ref()
                    .is_none_or(|s| matches!(s.phase, TagPhase::Succeeded | TagPhase::Failed));
                let before = p.tags.get(&key).and_then(crate::peer::held).cloned();
                let after = status.as_ref().and_then(crate::peer::held).cloned();
                match status {
                    Some(s) => p.tags.insert(key, s),
                    None => p.tags.remove(&key),
                };
                // Progress reports change nothing here: recounted only when a result moves.
                if before != after {
                    let now = crate::peer::holdings(p.tags.values());
                    self.holdings
                        .send_if_modified(|h| (**h != now).then(|| *h = Arc::new(now)).is_some());
                }
                p.due_in(if urgent {
                    self.timing.result_delay
                } else {
                    self.timing.progress_delay
                });
            }
            // The count alone is not worth a write; it goes out with the next tag change.
            StatusUpdate::Desired(n) => {
                p.desired = n;
                p.due_in(self.timing.progress_delay);
            }
            StatusUpdate::Observed(status) => {
                if let Some(w) = &p.written {
                    p.maybe_on_server.extend(w.image_statuses.keys().cloned());
                }
                p.written = status;
            }
            StatusUpdate::Flush(_) => unreachable!("handled by run"),
        }
    }

    async fn write_or_retry(&self, p: &mut Pending, new: NodeImageStatus) {
        match self
            .write(p.written.as_ref(), &new, &p.maybe_on_server)
            .await
        {
            Ok(()) => {
                p.maybe_on_server.clear();
                p.written = Some(new);
                p.failures = 0;
                p.due = None;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                // No NodeImage to write to; a new NodeImage brings a new spec and a write.
                tracing::debug!(node = %self.node, "NodeImage not found; status not written");
                p.written = None;
                p.maybe_on_server.clear();
                p.due = None;
            }
            Err(e) => {
                p.failures += 1;
                let retry = crate::worker::backoff(Duration::from_secs(1), p.failures);
                tracing::warn!(node = %self.node, error = %e, retry_in_ms = retry.as_millis() as u64, "writing NodeImage status failed");
                p.due = Some(Instant::now() + retry);
            }
        }
    }

    async fn write(
        &self,
        old: Option<&NodeImageStatus>,
        new: &NodeImageStatus,
        maybe_on_server: &BTreeSet<String>,
    ) -> Result<(), kube::Error> {
        let patch = merge_patch(old, new, maybe_on_server);
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            self.api
                .patch_status(&self.node, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Service(
                "status patch timed out after 30s".into(),
            ))
        });
        self.metrics
            .status_write(if result.is_ok() { "ok" } else { "error" });
        result.map(|_| ())
    }
}

async fn sleep(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(t: &str, phase: TagPhase) -> ImageTagStatus {
        ImageTagStatus {
            tag: t.into(),
            phase,
            version: 1,
            ..Default::default()
        }
    }

    #[test]
    fn counts_and_patches_only_what_changed() {
        let k = |i: &str, t: &str| (i.to_string(), t.to_string());
        let mut tags = BTreeMap::from([
            (k("a", "1"), tag("1", TagPhase::Succeeded)),
            (k("a", "2"), tag("2", TagPhase::Pulling)),
            (k("b", "1"), tag("1", TagPhase::Failed)),
        ]);
        let first = build(4, &tags);
        assert_eq!(
            (
                first.desired,
                first.succeeded,
                first.pulling,
                first.failed,
                first.waiting
            ),
            (4, 1, 1, 1, 0)
        );
        assert_eq!(first.image_statuses["a"].tags.len(), 2);
        tags.remove(&k("b", "1"));
        tags.insert(k("a", "2"), tag("2", TagPhase::Succeeded));
        let second = build(2, &tags);
        let patch = merge_patch(Some(&first), &second, &BTreeSet::new());
        assert_eq!(
            patch["status"]["imageStatuses"]["b"],
            Value::Null,
            "removed images are deleted"
        );
        assert_eq!(
            patch["status"]["imageStatuses"]["a"]["tags"][1]["phase"],
            "Succeeded"
        );
        assert_eq!(patch["status"]["succeeded"], 2);
        let unchanged = merge_patch(Some(&second), &second, &BTreeSet::new());
        assert_eq!(unchanged["status"]["imageStatuses"], json!({}));
        // After a relist brought an older snapshot without "b", "b" may still be on the server.
        let stale = merge_patch(Some(&second), &second, &BTreeSet::from(["b".to_string()]));
        assert_eq!(stale["status"]["imageStatuses"]["b"], Value::Null);
    }
}
