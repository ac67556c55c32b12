//! Pinning pre-warmed images against the kubelet's image garbage collection. Under containerd an
//! image whose record carries `io.cri-containerd.pinned=pinned` is reported `pinned` by CRI
//! (containerd 1.7.10+ and 2.x apply the label live), and the kubelet's GC and disk-pressure
//! eviction skip pinned images. The daemon pins what a tag asks it to (`pin` in the NodeImage
//! entry) and marks what it pinned with a label of its own on the same record, so that it, or a
//! restarted daemon, unpins only its own pins, never the sandbox image or a pin the cluster's own
//! configuration made. [`decide`] is the whole rule; [`keeper`] applies it to every record:
//! it makes pins that are missing (removed by hand, say) and withdraws those no tag wants.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kruise_api::constants::{CONTAINERD_PINNED_LABEL, CONTAINERD_PINNED_VALUE, PINNED_BY_LABEL};
use tokio::sync::watch;

use crate::runtime::ImageRuntime;

/// The value of [`PINNED_BY_LABEL`] on the pins this daemon made.
pub const PINNED_BY_VALUE: &str = "kruise-daemon";

/// What to do with one image record's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinAction {
    /// Set the pinned label and ours.
    Pin,
    /// Remove the pinned label and ours (only ever on a pin we made).
    Unpin,
    /// Nothing to change: pinned as wanted, or a pin that is not ours.
    Leave,
}

/// The rule: pin what is wanted and not pinned; unpin what is not wanted and was pinned by us;
/// leave everyone else's pins alone (a record pinned by someone else stays as it is, wanted or not).
pub fn decide(want: bool, labels: &HashMap<String, String>) -> PinAction {
    let pinned =
        labels.get(CONTAINERD_PINNED_LABEL).map(String::as_str) == Some(CONTAINERD_PINNED_VALUE);
    let ours = labels.get(PINNED_BY_LABEL).map(String::as_str) == Some(PINNED_BY_VALUE);
    match (want, pinned, ours) {
        (true, false, _) => PinAction::Pin,
        // Our mark on an unpinned record (someone removed the pin): tidy our mark away.
        (false, _, true) => PinAction::Unpin,
        _ => PinAction::Leave,
    }
}

/// Whether a tag's image is protected, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// CRI `ImageStatus` says `pinned: true`.
    Pinned,
    /// Pulled, but the kubelet's image GC may remove it; the words say why.
    NotProtected(String),
}

/// Pinned images and their bytes on this node, as last counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub images: u64,
    pub bytes: u64,
}

/// The images tags want pinned, fully qualified; `None` until the NodeImage was first read.
pub type Wanted = watch::Receiver<Option<BTreeSet<String>>>;

/// How often the keeper recounts even when nothing changed (a pin removed by hand is seen).
const RECOUNT_EVERY: Duration = Duration::from_secs(300);

/// Withdraws the pins this daemon made that no tag wants any more, whenever the wanted set
/// changes (`None` until the NodeImage was first read: nothing is withdrawn before that), and
/// keeps the pinned-images gauges current. Supervised; returns at `stop`.
pub async fn keeper<R: ImageRuntime>(
    runtime: Arc<R>,
    mut wanted: Wanted,
    metrics: Arc<crate::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let known = wanted.borrow_and_update().is_some();
        if known {
            match runtime.reconcile_pins(&wanted).await {
                Ok(census) => {
                    metrics.pinned_images.set(census.images as i64);
                    metrics.pinned_bytes.set(census.bytes as i64);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not check the pins; trying again later")
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = wanted.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RECOUNT_EVERY) => {}
        }
    }
}

/// The containerd version from which a pin label is reported live, and the words for older ones.
pub fn pin_support(runtime_name: &str, version: &str, has_image_store: bool) -> Result<(), String> {
    if !has_image_store {
        return Err(format!(
            "the runtime ({runtime_name} {version}) has no API to pin images (CRI-O pins only \
             the images listed in its configuration, pinned_images)"
        ));
    }
    match parse_version(version) {
        Some(v) if v >= (1, 7, 10) => Ok(()),
        Some(_) => Err(format!(
            "{runtime_name} {version} does not report pinned images to the kubelet; pinning \
             needs containerd 1.7.10 or later (or 2.x)"
        )),
        None => Ok(()),
    }
}

/// `1.6.20~ds1`, `v1.7.24`, `1.7.13-k3s1` → `(major, minor, patch)`.
fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.trim_start_matches('v');
    let mut parts = v.split(['.', '~', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const PINNED: (&str, &str) = (CONTAINERD_PINNED_LABEL, CONTAINERD_PINNED_VALUE);
    const OURS: (&str, &str) = (PINNED_BY_LABEL, PINNED_BY_VALUE);

    #[test]
    fn a_wanted_image_is_pinned_once() {
        assert_eq!(decide(true, &labels(&[])), PinAction::Pin);
        assert_eq!(decide(true, &labels(&[PINNED, OURS])), PinAction::Leave);
    }

    #[test]
    fn only_our_own_pins_are_withdrawn() {
        assert_eq!(decide(false, &labels(&[PINNED, OURS])), PinAction::Unpin);
        // The sandbox image, or a pin the cluster's configuration made: never touched.
        assert_eq!(decide(false, &labels(&[PINNED])), PinAction::Leave);
        assert_eq!(decide(true, &labels(&[PINNED])), PinAction::Leave);
        assert_eq!(decide(false, &labels(&[])), PinAction::Leave);
    }

    #[test]
    fn a_pin_removed_by_hand_is_made_again_when_wanted_and_our_mark_tidied_when_not() {
        assert_eq!(decide(true, &labels(&[OURS])), PinAction::Pin);
        assert_eq!(decide(false, &labels(&[OURS])), PinAction::Unpin);
        // Any other value of the pinned label is not a pin.
        let other = labels(&[(CONTAINERD_PINNED_LABEL, "no")]);
        assert_eq!(decide(true, &other), PinAction::Pin);
    }

    #[test]
    fn versions_that_report_pins_are_told_apart() {
        assert!(pin_support("containerd", "v1.7.24", true).is_ok());
        assert!(pin_support("containerd", "1.7.10", true).is_ok());
        assert!(pin_support("containerd", "2.0.0", true).is_ok());
        assert!(pin_support("containerd", "1.7.13-k3s1", true).is_ok());
        let old = pin_support("containerd", "1.6.20~ds1", true).unwrap_err();
        assert!(old.contains("1.7.10"), "{old}");
        let v179 = pin_support("containerd", "v1.7.9", true).unwrap_err();
        assert!(v179.contains("containerd v1.7.9"), "{v179}");
        let crio = pin_support("cri-o", "1.30.0", false).unwrap_err();
        assert!(crio.contains("pinned_images"), "{crio}");
    }
}
