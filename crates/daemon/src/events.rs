//! Kubernetes Events with OpenKruise's reasons: `PullImageSucceed` on the NodeImage,
//! `PullImageFailed` on the NodeImage and on every ImagePullJob that owns the tag; and
//! `ImageFsSpaceInsufficient` (both) when a pull waits for disk space. Event failures are logged,
//! never fatal.

use k8s_openapi::api::core::v1::ObjectReference;
use kruise_api::constants::{
    REASON_IMAGE_FS_FULL, REASON_PULL_IMAGE_FAILED, REASON_PULL_IMAGE_SUCCEED,
};
use kube::runtime::events::{Event, EventType, Recorder};

use crate::desired::TagTask;
use crate::worker::{BoxFuture, EventSink};

pub struct KubeEvents {
    pub recorder: Recorder,
    pub node_image: ObjectReference,
}

impl KubeEvents {
    fn node_image(&self, task: &TagTask) -> ObjectReference {
        ObjectReference {
            uid: task.node_image_uid.clone(),
            ..self.node_image.clone()
        }
    }

    async fn publish(&self, type_: EventType, reason: &str, note: String, on: &ObjectReference) {
        let note: String = note.chars().take(1000).collect();
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "PullImage".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, on).await {
            tracing::warn!(error = %e, reason, object = ?on.name, "publishing an event failed");
        }
    }
}

impl EventSink for KubeEvents {
    fn succeeded<'a>(&'a self, task: &'a TagTask, note: String) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let on = self.node_image(task);
            self.publish(EventType::Normal, REASON_PULL_IMAGE_SUCCEED, note, &on)
                .await
        })
    }

    fn failed<'a>(&'a self, task: &'a TagTask, note: String) -> BoxFuture<'a, ()> {
        Box::pin(self.warn_all(task, REASON_PULL_IMAGE_FAILED, note))
    }

    fn waiting_for_space<'a>(&'a self, task: &'a TagTask, note: String) -> BoxFuture<'a, ()> {
        Box::pin(self.warn_all(task, REASON_IMAGE_FS_FULL, note))
    }
}

impl KubeEvents {
    /// A warning on the NodeImage and on every job that owns the tag.
    async fn warn_all(&self, task: &TagTask, reason: &str, note: String) {
        {
            let on = self.node_image(task);
            self.publish(EventType::Warning, reason, note.clone(), &on)
                .await;
            for owner in &task.owners {
                self.publish(
                    EventType::Warning,
                    reason,
                    format!(
                        "{note} on node {}",
                        self.node_image.name.as_deref().unwrap_or_default()
                    ),
                    owner,
                )
                .await;
            }
        }
    }
}
