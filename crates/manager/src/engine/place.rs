//! Edits of one NodeImage spec on behalf of one job: join its tag (adding itself as an owner
//! without restarting the others' pulls), withdraw from tags it no longer wants, carry its policy
//! edits to the entries it wrote first, close a tag on a node that never answered, and the final
//! touches every written spec gets (tags sorted, each image's pull secrets the owners' copies).
//! Pure: specs in, specs out.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE;
use kruise_api::{ImagePullPolicy, ReferenceObject};

use super::jobs::JobInfo;
use super::spec::{Outcome, Owner, Source, Spec, Status, Tag};

/// The entry for `key:tag` that `uid` owns.
pub fn owned<'a>(spec: &'a Spec, key: &str, tag: &str, uid: &str) -> Option<&'a Tag> {
    spec.get(key)?.tag(tag).filter(|t| t.owned_by(uid))
}

/// The NodeImage holds as many images as it may (the CRD refuses more), none of them `key`: the
/// job counts the node as failed instead of sending a patch that would be refused every round.
pub fn full_without(spec: &Spec, key: &str) -> bool {
    !spec.contains_key(key) && spec.len() >= MAX_IMAGES_PER_NODEIMAGE
}

/// Removes `uid` from every entry but `keep` (`key`, `tag`), and entries and images left without
/// owners; returns whether anything changed.
pub fn withdraw(spec: &mut Spec, uid: &str, keep: Option<(&str, &str)>) -> bool {
    let mut changed = false;
    for (key, image) in spec.iter_mut() {
        for t in &mut image.tags {
            if keep.is_some_and(|(k, tg)| &**key == k && &*t.tag == tg) {
                continue;
            }
            let before = t.owners.len();
            t.owners.retain(|o| o.uid.as_deref() != Some(uid));
            changed |= t.owners.len() != before;
        }
        image.tags.retain(|t| !t.owners.is_empty());
    }
    spec.drop_empty();
    changed
}

/// Removes owners `gone` says are gone (jobs deleted, also before a manager restart); returns
/// whether anything changed.
pub fn drop_owners(spec: &mut Spec, gone: impl Fn(&Owner) -> bool) -> bool {
    let mut changed = false;
    for image in spec.values_mut() {
        for t in &mut image.tags {
            let before = t.owners.len();
            t.owners.retain(|o| !gone(o));
            changed |= t.owners.len() != before;
        }
        image.tags.retain(|t| !t.owners.is_empty());
    }
    spec.drop_empty();
    changed
}

/// The daemon's result for `key:tag` at `version`: `Some(true)` succeeded, `Some(false)` failed.
pub fn result(status: &Status, key: &str, tag: &str, version: i64) -> Option<bool> {
    let r = status.get(key, tag)?;
    match (r.version == version, r.outcome) {
        (true, Outcome::Succeeded) => Some(true),
        (true, Outcome::Failed) => Some(false),
        _ => None,
    }
}

/// What joining left the job with on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// A pull round runs (a new entry, a fresh round, or one in progress).
    Pulling,
    /// The tag was already pulled (IfNotPresent): the node is done for this job.
    Succeeded,
}

/// What joining a job to its tag on a node does to the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joining {
    /// No entry yet: a new one, a new pull.
    Create,
    /// A new round of the entry (its version bumped): the tag moved to the job's digest, the
    /// last round failed, or the job asks for `Always` and the last round succeeded.
    Renew,
    /// The job is added as an owner: the pull in progress or the one done serves it.
    Own,
}

impl Joining {
    /// A pull starts: the entry's sources are planned (peers, or a registry slot).
    pub fn starts_pull(self) -> bool {
        self != Joining::Own
    }
}

/// What [`join`] would do, without doing it (placement plans the pull's sources first).
pub fn joining(spec: &Spec, status: &Status, job: &JobInfo, key: &str, tag: &str) -> Joining {
    let Some(entry) = spec.get(key).and_then(|i| i.tag(tag)) else {
        return Joining::Create;
    };
    if super::jobs::moved_digest(job, entry) {
        return Joining::Renew;
    }
    match result(status, key, tag, entry.version) {
        Some(false) => Joining::Renew,
        Some(true) if job.always_pull => Joining::Renew,
        _ => Joining::Own,
    }
}

/// Adds `job` to its tag entry on one node, creating it if needed. A finished tag is pulled again
/// only for a job that asks for `Always`, a failed one for any job; joining never restarts a pull
/// in progress. A pull that starts (a new entry or a new round) names `sources` to copy from;
/// joining a pull leaves the entry's sources as they are.
pub fn join(
    spec: &mut Spec,
    status: &Status,
    job: &JobInfo,
    key: &Arc<str>,
    tag: &Arc<str>,
    now: Timestamp,
    sources: &[Arc<Source>],
) -> Joined {
    let how = joining(spec, status, job, key, tag);
    let reported_version = status.get_ref(key, tag).map(|r| r.version);
    let image = spec.image_mut(key);
    if image.sandbox_config.is_none() {
        image.sandbox_config = job.sandbox.clone();
    }
    let Some(entry) = image.tag_mut(tag) else {
        let mut entry = Tag {
            tag: tag.clone(),
            created_at: Some(now),
            pull_policy: job.tag_policy.clone(),
            owners: smallvec::smallvec![job.owner.clone()],
            version: reported_version.map_or(0, |v| v + 1),
            image_pull_policy: job.always_pull.then_some(ImagePullPolicy::Always),
            digest: job.digest.clone(),
            pin: job.pin,
            sources: None,
        };
        entry.set_sources(sources);
        image.tags.push(entry);
        return Joined::Pulling;
    };
    if super::jobs::moved_digest(job, entry) {
        // The tag moved: a new round for the new digest, the entry's policy kept.
        entry.digest = job.digest.clone();
        entry.version += 1;
        entry.created_at = Some(now);
        entry.set_sources(sources);
        return Joined::Pulling;
    }
    if !entry.owned_by(&job.uid) {
        entry.owners.push(job.owner.clone());
    }
    match how {
        Joining::Renew => {
            fresh_round(entry, now);
            entry.set_sources(sources);
            Joined::Pulling
        }
        _ if result(status, key, tag, entry.version) == Some(true) => Joined::Succeeded,
        _ => Joined::Pulling,
    }
}

fn fresh_round(entry: &mut Tag, now: Timestamp) {
    entry.version += 1;
    entry.created_at = Some(now);
    entry.image_pull_policy = Some(ImagePullPolicy::Always);
}

/// The entry a job wrote first follows the job's pull policy (an edit of `timeoutSeconds`
/// reaches written tags; a switch to `Always` asks for a new round). And a node whose daemon
/// never answered counts as failed, its slot going to another node; a daemon coming back later
/// would then pull beyond `parallelism`. So with `close` (an Always job alone on the entry), the
/// tag's deadline becomes the response window `close_secs`, already past, and a returning daemon
/// reports it failed at once instead of pulling. (The manager never writes the daemon's status;
/// the entry is its only channel.) Returns whether anything changed.
pub fn own_entry(
    spec: &mut Spec,
    job: &JobInfo,
    key: &str,
    tag: &str,
    now: Timestamp,
    close_secs: Option<i64>,
) -> bool {
    let Some(entry) = spec.get_mut(key).and_then(|i| i.tag_mut(tag)) else {
        return false;
    };
    if entry.owners.first().and_then(|o| o.uid.as_deref()) != Some(&*job.uid) {
        return false;
    }
    let sole = entry.owners.len() == 1;
    let mut want = job.tag_policy.clone();
    if let (Some(window), true) = (close_secs, sole) {
        let mut p = want.as_deref().cloned().unwrap_or_default();
        if p.active_deadline_seconds.is_none_or(|d| d > window) {
            p.active_deadline_seconds = Some(window);
            want = Some(Arc::new(p));
        }
    }
    let mut changed = false;
    if job.pin && !entry.pin {
        // Written before pins (an upgrade): the entry's other owners are weighed in `finish`.
        entry.pin = true;
        changed = true;
    }
    if entry.digest.is_none() && job.digest.is_some() {
        // Adopted, or written before the job was resolved: what the node holds is not pulled
        // again; the digest names what its next round pulls.
        entry.digest = job.digest.clone();
        changed = true;
    }
    if entry.pull_policy != want {
        entry.pull_policy = want;
        changed = true;
    }
    let pull = job.always_pull.then_some(ImagePullPolicy::Always);
    if entry.image_pull_policy != pull {
        entry.image_pull_policy = pull;
        if job.always_pull {
            entry.version += 1;
            entry.created_at = Some(now);
        }
        changed = true;
    }
    changed
}

/// Tags sorted, each pinned when one of its owners pins, and each image's pull secrets the
/// copies of the secrets its owners name. `pins` says whether an owner pins, `None` for an
/// owner this installation does not know (another installation's job): such a tag keeps its pin
/// as written, so two installations never flip it back and forth.
pub fn finish(
    spec: &mut Spec,
    secrets_of: impl Fn(&Owner) -> Vec<Arc<ReferenceObject>>,
    pins: impl Fn(&Owner) -> Option<bool>,
) {
    for image in spec.values_mut() {
        image.tags.sort_by(|a, b| a.tag.cmp(&b.tag));
        for t in &mut image.tags {
            let each: Option<Vec<bool>> = t.owners.iter().map(|o| pins(o)).collect();
            if let Some(pin) = each.map(|e| e.contains(&true)) {
                if t.pin != pin {
                    t.pin = pin;
                }
            }
        }
        let mut secrets: Vec<Arc<ReferenceObject>> = image
            .tags
            .iter()
            .flat_map(|t| &t.owners)
            .flat_map(|o| secrets_of(o))
            .collect();
        secrets.sort();
        secrets.dedup();
        if image.pull_secrets != secrets {
            image.pull_secrets = secrets;
        }
    }
}
