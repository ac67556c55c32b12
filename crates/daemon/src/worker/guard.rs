//! The node guarantees around a pull: it starts only when the image filesystem has room for it
//! under `--image-fs-max-percent` (else the tag waits, saying why with the figures, and looks
//! again every `space_retry`); once pulled, an image the manager resolved to a digest gets its
//! tag's name, and an image the tag asks to pin is pinned, the status saying whether the
//! runtime reports it protected.

use kruise_api::ImageTagStatus;
use kruise_cri::DockerKeyring;

use super::{report, WorkerContext};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::admission::{admit, Admission, FsUsage};
use crate::desired::TagTask;
use crate::pinning::Protection;
use crate::runtime::ImageRuntime;

/// The reference the runtime is asked for: the digest reference when the runtime can name it
/// afterwards, else the name pods use (a runtime that cannot name images pulls the tag).
pub(super) fn pull_ref<'a, R: ImageRuntime>(ctx: &WorkerContext<R>, task: &'a TagTask) -> &'a str {
    match &task.name_as {
        Some(name) if !ctx.runtime.can_name() => name,
        _ => &task.reference,
    }
}

/// Bytes admitted to one pull, given back when it ends (dropped).
pub(super) struct Reservation(Option<(std::sync::Arc<AtomicU64>, u64)>);

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((reserved, n)) = self.0.take() {
            reserved.fetch_sub(n, Ordering::SeqCst);
        }
    }
}

/// Waits until the pull fits under the limit, counting what pulls admitted before it and still
/// running will add, and reserves its own bytes until the returned guard is dropped. `Err` with
/// the last refusal when the tag's deadline passes first. A refusal is reported (status and Event) when it first happens and
/// whenever its words change; an unknown size or usage never holds a pull back.
pub(super) async fn wait_for_space<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    keyring: &DockerKeyring,
    st: &mut ImageTagStatus,
    quiet: bool,
) -> Result<Reservation, String> {
    let limit = ctx.guarantees.image_fs_max_percent;
    let unchecked = Ok(Reservation(None));
    if limit >= 100 {
        return unchecked;
    }
    let mut shown: Option<String> = None;
    let mut _waiting = None;
    loop {
        let (needed, fs) = match ctx.runtime.space_needed(pull_ref(ctx, task), keyring).await {
            Ok(Some(figures)) => figures,
            Ok(None) => return unchecked,
            Err(e) => {
                tracing::warn!(error = %e, "disk-space admission cannot tell the image's size; pulling without the check");
                return unchecked;
            }
        };
        let pinned = ctx.metrics.pinned_bytes.get().max(0) as u64;
        let reserved = &ctx.guarantees.reserved;
        let others = reserved.load(Ordering::SeqCst);
        let fs = FsUsage {
            available: fs.available.saturating_sub(others),
            ..fs
        };
        let message = match admit(needed, fs, limit, pinned) {
            Admission::Admit => {
                if shown.is_some() {
                    tracing::info!(needed, "disk space freed up; pulling");
                    st.message = None;
                }
                reserved.fetch_add(needed, Ordering::SeqCst);
                return Ok(Reservation(Some((reserved.clone(), needed))));
            }
            Admission::Refuse { message } => message,
        };
        if shown.as_deref() != Some(message.as_str()) {
            tracing::warn!(%message, "the pull waits for disk space");
            st.message = Some(message.clone());
            if !quiet {
                report(ctx, task.key(), st.clone()).await;
                if shown.is_none() {
                    ctx.events
                        .waiting_for_space(task, format!("Image {} {message}", task.reference))
                        .await;
                }
            }
            shown = Some(message.clone());
            _waiting.get_or_insert_with(|| {
                super::attempt::GaugeGuard::new(&ctx.metrics.waiting_for_space)
            });
        }
        let retry = ctx.guarantees.space_retry;
        match super::attempt::remaining(ctx, task) {
            Some(left) if left <= retry => {
                tokio::time::sleep(left).await;
                return Err(format!(
                    "{message}; activeDeadlineSeconds passed while waiting"
                ));
            }
            _ => tokio::time::sleep(retry).await,
        }
    }
}

/// After a successful round: names a digest pull after its tag, and pins the image when the tag
/// asks for it, recording the outcome in `st` (`pinned`, or why the image is not protected).
pub(super) async fn after_pull<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: &mut ImageTagStatus,
    pulled: bool,
) {
    if let (Some(name), true) = (&task.name_as, ctx.runtime.can_name()) {
        // Found present: the name is given if missing, but not taken back from a newer image
        // the kubelet pulled under the tag since.
        if let Err(e) = ctx.runtime.name_like(name, &task.reference, pulled).await {
            tracing::warn!(error = %e, %name, "could not give the digest pull its tag's name");
            st.message = Some(format!(
                "pulled {}, but naming it {name} failed ({e}); a pod using {name} may pull it again",
                task.reference
            ));
        }
    }
    // The digest the node holds: the one it was given, or what the runtime resolved the tag to
    // (which the manager takes for the whole job when it could not resolve the tag itself).
    st.digest = match task.reference.split_once('@') {
        Some((_, digest)) if task.name_as.is_some() && ctx.runtime.can_name() => {
            Some(digest.to_string())
        }
        _ => ctx.runtime.repo_digest(pull_ref(ctx, task)).await,
    };
    protect(ctx, task, st).await;
}

/// Pins the image when the tag asks and pinning is on; otherwise clears `pinned`.
pub(super) async fn protect<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    st: &mut ImageTagStatus,
) {
    if !(task.pin && ctx.guarantees.pin) {
        st.pinned = false;
        return;
    }
    match ctx.runtime.pin(&task.pod_reference()).await {
        Protection::Pinned => {
            st.pinned = true;
            ctx.metrics.count_pin("pinned");
        }
        Protection::NotProtected(why) => {
            st.pinned = false;
            ctx.metrics.count_pin("not_protected");
            tracing::warn!(%why, "the image is not protected from the kubelet's image garbage collection");
            let note = format!("not protected from the kubelet's image garbage collection: {why}");
            st.message = Some(match st.message.take() {
                Some(m) => format!("{m}; {note}"),
                None => note,
            });
        }
    }
    ctx.guarantees.recount.notify_one();
}

/// The tag's pin was asked for or withdrawn after its pull: pinned now, or shown unpinned (the
/// pin itself is withdrawn by the pin keeper, which knows whether another tag still wants it).
/// A succeeded tag whose status does not say what its entry asks (`pinned` while the tag asks
/// no pin, or not pinned while it asks one): pinned again, or shown unpinned.
pub(super) async fn settle_pin<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    last: ImageTagStatus,
) -> ImageTagStatus {
    let want = task.pin && ctx.guarantees.pin;
    if last.phase != kruise_api::TagPhase::Succeeded || want == last.pinned {
        return last;
    }
    repin(ctx, task, last).await
}

pub(super) async fn repin<R: ImageRuntime>(
    ctx: &WorkerContext<R>,
    task: &TagTask,
    last: ImageTagStatus,
) -> ImageTagStatus {
    let mut st = ImageTagStatus {
        message: None,
        ..last.clone()
    };
    protect(ctx, task, &mut st).await;
    if st != last {
        report(ctx, task.key(), st.clone()).await;
    }
    st
}
