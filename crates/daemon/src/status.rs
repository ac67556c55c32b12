//! The single writer of this node's NodeImage status. Workers send tag results; the writer keeps
//! the whole status, and patches the status subresource only when it changed, coalescing bursts:
//! a result (Succeeded/Failed) goes out at once (after 50 ms, to gather results finishing
//! together), progress (Waiting/Pulling) within a few seconds and usually folded into the result's
//! write, and never more than one write per `min_interval` (1 s). A failed write is retried with backoff
//! and nothing is lost meanwhile.

use std::collections::BTreeMap;
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

pub enum StatusUpdate {
    /// A tag's new status; `None` when the tag left the spec.
    Tag {
        key: TagKey,
        status: Option<ImageTagStatus>,
    },
    /// Tags in the spec now.
    Desired(i32),
    /// The status as last read from the API server (on start, and after a relist).
    Observed(Option<NodeImageStatus>),
    /// Write what is pending now, then acknowledge.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// How soon a change is written, by urgency.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub result_delay: Duration,
    pub progress_delay: Duration,
    pub min_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            result_delay: Duration::from_millis(500),
            progress_delay: Duration::from_secs(3),
            min_interval: Duration::from_secs(1),
        }
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
pub fn merge_patch(old: Option<&NodeImageStatus>, new: &NodeImageStatus) -> Value {
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
    for k in old_images.into_iter().flat_map(|o| o.keys()) {
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
}

impl StatusWriter {
    pub async fn run(self, mut rx: mpsc::Receiver<StatusUpdate>) {
        let mut tags: BTreeMap<TagKey, ImageTagStatus> = BTreeMap::new();
        let mut desired = 0;
        let mut written: Option<NodeImageStatus> = None;
        let mut due: Option<Instant> = None;
        let mut last_write = Instant::now() - self.timing.min_interval;
        let mut failures = 0u32;
        loop {
            let sleep_until = due.map(|d| d.max(last_write + self.timing.min_interval));
            let update = tokio::select! {
                u = rx.recv() => match u { Some(u) => Some(u), None => break },
                _ = sleep(sleep_until) => None,
            };
            let mut flush_ack = None;
            match update {
                Some(StatusUpdate::Tag { key, status }) => {
                    let urgent = status
                        .as_ref()
                        .is_none_or(|s| matches!(s.phase, TagPhase::Succeeded | TagPhase::Failed));
                    match status {
                        Some(s) => tags.insert(key, s),
                        None => tags.remove(&key),
                    };
                    let delay = if urgent {
                        self.timing.result_delay
                    } else {
                        self.timing.progress_delay
                    };
                    let at = Instant::now() + delay;
                    due = Some(due.map_or(at, |d| d.min(at)));
                    continue;
                }
                Some(StatusUpdate::Desired(n)) => {
                    desired = n;
                    let at = Instant::now() + self.timing.result_delay;
                    due = Some(due.map_or(at, |d| d.min(at)));
                    continue;
                }
                Some(StatusUpdate::Observed(status)) => {
                    written = status;
                    continue;
                }
                Some(StatusUpdate::Flush(ack)) => flush_ack = Some(ack),
                None => {}
            }
            let new = build(desired, &tags);
            if written.as_ref() != Some(&new) {
                match self.write(written.as_ref(), &new).await {
                    Ok(()) => {
                        written = Some(new);
                        failures = 0;
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        // No NodeImage to write to; the next spec (a new NodeImage) brings a write.
                        tracing::debug!(node = %self.node, "NodeImage not found; status not written");
                        written = None;
                    }
                    Err(e) => {
                        failures += 1;
                        let retry = crate::worker::backoff(Duration::from_secs(1), failures);
                        tracing::warn!(node = %self.node, error = %e, retry_in_ms = retry.as_millis() as u64, "writing NodeImage status failed");
                        due = Some(Instant::now() + retry);
                        last_write = Instant::now();
                        if let Some(ack) = flush_ack {
                            let _ = ack.send(());
                        }
                        continue;
                    }
                }
                last_write = Instant::now();
            }
            due = None;
            if let Some(ack) = flush_ack {
                let _ = ack.send(());
            }
        }
    }

    async fn write(
        &self,
        old: Option<&NodeImageStatus>,
        new: &NodeImageStatus,
    ) -> Result<(), kube::Error> {
        let patch = merge_patch(old, new);
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
        let patch = merge_patch(Some(&first), &second);
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
        let unchanged = merge_patch(Some(&second), &second);
        assert_eq!(unchanged["status"]["imageStatuses"], json!({}));
    }
}
