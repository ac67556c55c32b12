//! Peer sources (`--peer-port`): which nodes a pull that starts copies from, and how many nodes
//! may pull from one registry at once. This module owns the index those decisions read (who
//! holds which image at which digest, each seed's load, each registry host's pulls in flight, the
//! jobs waiting for one of them), kept up to date from the same spec-and-status changes as the
//! rest of the engine, so a restarted manager counts the same from the NodeImages it lists.
//!
//! Rules. A seed for a job's image is another node whose result for its entry's current version
//! is Succeeded (with the job's digest, when the job has one) and which has an InternalIP. A pull
//! that starts names up to three seeds with room (fewer than `--peer-fanout` active entries name
//! them first), least loaded first, then by name: the first is its primary and takes one unit of
//! that seed's load until the pull's result arrives or the entry is withdrawn; the others are
//! fallbacks the daemon tries next, before the registry. Only when no node can serve the image
//! at all does a node pull it from the registry, and only while fewer than `--registry-budget`
//! nodes pull that registry host's images from it; otherwise it waits. So the registry serves an
//! image's first wave only, and each wave of copies makes the next one wider. A job that waits is
//! noted by image, and placed again when something it waits for frees or appears, not on every
//! event.
//!
//! What an entry counts for follows from the entry alone: with sources it is a copy (its first
//! source's load), without them a registry pull (its host's count), until its result for its
//! version is Succeeded (it becomes a holder) or Failed, or it is withdrawn. Sources are written
//! only when a pull starts (a new entry, or a new version): joining a pull, or succeeding, never
//! rewrites them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use kruise_api::imageref::ImageRef;

use super::jobs::JobInfo;
use super::spec::{Name, Outcome, Source, Spec, Status};
use super::Engine;

/// The most seeds one entry names (the CRD allows 8; three ride out a seed or two going away).
pub const MAX_SOURCES: usize = 3;

/// An image as entries name it: `(NodeImage key, tag)`.
type ImageKey = (Name, Name);

/// The nodes holding an image at one digest, as `(load, node)`: least loaded first, then by name.
type Holders = BTreeSet<(u32, Name)>;

/// What one entry of a node's spec (as planned) counts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Succeeded at its current version, holding this digest: a possible seed.
    Holds(Option<Name>),
    /// Pulling from peers: one unit of its primary source's load.
    Copies(Name),
    /// Pulling from the registry: one of its registry host's pulls.
    Pulls(Name),
}

/// The roles of a node's entries, by `(key, tag)`, sorted.
pub(super) type Roles = Vec<(Name, Name, Role)>;

/// The peer index; empty while peers are off.
#[derive(Default)]
pub struct Peers {
    /// The holders of each image, by the digest they hold, ordered by their load then name (the
    /// first ones under the fan-out are the seeds to name). A holder's entries always carry its
    /// current load.
    holders: HashMap<ImageKey, BTreeMap<Option<Name>, Holders>>,
    /// Active entries naming each node as their primary source (absent: none).
    load: HashMap<Name, u32>,
    /// Active registry pulls per registry host (absent: none).
    registry: HashMap<Name, u32>,
    /// Jobs that found no seed with room and no registry slot, by the image they wait for.
    waiting: BTreeMap<ImageKey, BTreeSet<Name>>,
    /// The registry host of each image key, as `kruise_api::imageref` parses it.
    hosts: HashMap<Name, Name>,
    /// The roles each node's entries were last counted for: what a change is measured against
    /// (roles also follow the time: an entry whose daemon has not answered within
    /// `--response-timeout` of its `createdAt` counts for nothing until it does, so a silent
    /// node never holds a registry slot or a seed's load for good).
    counted: HashMap<Name, Roles>,
    /// The time of the event or round being handled, for the rule above.
    now: Option<k8s_openapi::jiff::Timestamp>,
}

/// The counts the peer index holds, for tests, metrics and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Registry pulls in flight per registry host.
    pub registry: BTreeMap<String, u32>,
    /// Copies in flight per seed (as their primary source).
    pub load: BTreeMap<String, u32>,
    /// Nodes holding each image (`key:tag`), whatever their digest.
    pub holders: BTreeMap<String, usize>,
    /// Jobs waiting for a seed or a registry slot.
    pub waiting: usize,
}

/// How a pull that starts gets its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// From these peers (the first its primary), then the registry.
    Peers(Vec<Arc<Source>>),
    /// From the registry (peers off, or no node can serve it and the budget has room).
    Registry,
    /// Not now: the seeds are all busy, or the registry host's budget is used up.
    Wait,
}

/// The registry host of an image key (`docker.io` for Docker Hub names), remembered per key.
fn host_of(hosts: &mut HashMap<Name, Name>, key: &Name) -> Name {
    let host = hosts.entry(key.clone()).or_insert_with(|| {
        let parsed = ImageRef::parse(key).map(|r| r.registry().to_string());
        // An entry no parser accepts (written by hand) counts against a host of its own.
        Arc::from(parsed.unwrap_or_else(|_| key.to_string()))
    });
    host.clone()
}

/// The roles of a node's entries, from its spec (as planned) and its results, at `silent_before`
/// (entries created then or earlier that have no answer count for nothing).
fn roles(
    spec: &Spec,
    status: &Status,
    node: &Name,
    hosts: &mut HashMap<Name, Name>,
    silent_before: Option<i64>,
) -> Roles {
    let mut out = Vec::new();
    for (key, image) in spec.iter() {
        for t in &image.tags {
            let report = (status.get_ref(key, &t.tag)).filter(|r| r.version == t.version);
            let silent = || {
                let created = t.created_at.map(|c| c.as_second());
                created.zip(silent_before).is_some_and(|(c, b)| c <= b)
            };
            let role = match report.map(|r| r.outcome) {
                Some(Outcome::Succeeded) => Role::Holds(report.and_then(|r| r.digest.clone())),
                Some(Outcome::Failed) => continue,
                // Never answered in time: counts for nothing until its daemon reports.
                None if silent() => continue,
                // A copy's load is its primary's; a spec naming the node itself (written by
                // hand) is a registry pull, as the daemon would do.
                _ => match t.sources().first().filter(|s| s.node != *node) {
                    Some(s) => Role::Copies(s.node.clone()),
                    None => Role::Pulls(host_of(hosts, key)),
                },
            };
            out.push((key.clone(), t.tag.clone(), role));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// The roles in `before` and not in `after` (ended), and those in `after` and not in `before`
/// (begun); both are sorted by `(key, tag)`, one role per entry.
fn diff(before: Roles, after: Roles) -> (Roles, Roles) {
    let (mut ended, mut begun) = (Vec::new(), Vec::new());
    let mut b = before.into_iter().peekable();
    let mut a = after.into_iter().peekable();
    loop {
        match (b.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => ended.extend(b.next()),
            (None, Some(_)) => begun.extend(a.next()),
            (Some(x), Some(y)) => match (&x.0, &x.1).cmp(&(&y.0, &y.1)) {
                std::cmp::Ordering::Less => ended.extend(b.next()),
                std::cmp::Ordering::Greater => begun.extend(a.next()),
                std::cmp::Ordering::Equal => {
                    let (x, y) = (b.next().expect("peeked"), a.next().expect("peeked"));
                    if x.2 != y.2 {
                        ended.push(x);
                        begun.push(y);
                    }
                }
            },
        }
    }
    (ended, begun)
}

impl Engine {
    fn fanout(&self) -> u32 {
        self.settings.peer_fanout.max(1)
    }

    /// The roles a node's entries were last counted for (none while peers are off: nothing is
    /// indexed); pass them to [`Engine::peers_changed`] after changing the node.
    pub(super) fn peer_roles(&mut self, node: &Name) -> Roles {
        self.peers.counted.get(node).cloned().unwrap_or_default()
    }

    /// The roles of a node's entries now.
    fn roles_now(&mut self, node: &Name) -> Roles {
        let Some(rec) = self.images.get(node) else {
            return Vec::new();
        };
        let spec = self.planned.get(node).map_or(&rec.spec, |p| &p.spec);
        let window = self.settings.response_timeout.as_secs() as i64;
        let silent_before = self.peers.now.map(|n| n.as_second() - window);
        roles(
            spec,
            &rec.status,
            node,
            &mut self.peers.hosts,
            silent_before,
        )
    }

    /// The time of the event or round being handled (the silence rule reads it).
    pub(super) fn peers_at(&mut self, now: k8s_openapi::jiff::Timestamp) {
        self.peers.now = Some(now);
    }

    /// A node's entry went unanswered past the response timeout (its cell says so): it stops
    /// counting, and what it held is freed.
    pub(super) fn peer_entry_silent(&mut self, node: &Name) {
        let before = self.peer_roles(node);
        self.peers_changed(node, before);
    }

    /// A node's spec (as planned) or results changed since its roles were `before`: the index
    /// follows, and jobs waiting for what this freed or brought are placed again.
    pub(super) fn peers_changed(&mut self, node: &Name, before: Roles) {
        if !self.settings.peers_on() {
            return;
        }
        let after = self.roles_now(node);
        if before == after {
            return;
        }
        match after.is_empty() {
            true => self.peers.counted.remove(node),
            false => self.peers.counted.insert(node.clone(), after.clone()),
        };
        let (ended, begun) = diff(before, after);
        for (key, tag, role) in ended {
            self.role_ended(node, key, tag, role);
        }
        for (key, tag, role) in begun {
            self.role_begun(node, key, tag, role);
        }
    }

    fn role_begun(&mut self, node: &Name, key: Name, tag: Name, role: Role) {
        let image = (key, tag);
        match role {
            Role::Holds(digest) => {
                let load = self.peers.load.get(node).copied().unwrap_or(0);
                let groups = self.peers.holders.entry(image.clone()).or_default();
                groups
                    .entry(digest)
                    .or_default()
                    .insert((load, node.clone()));
            }
            Role::Copies(seed) => self.add_load(&seed, 1),
            Role::Pulls(host) => *self.peers.registry.entry(host).or_default() += 1,
        }
        // A new seed, or a pull on this node that the jobs waiting for the image may join
        // without a source of their own.
        self.wake(|img, _| *img == image);
    }

    fn role_ended(&mut self, node: &Name, key: Name, tag: Name, role: Role) {
        match role {
            Role::Holds(digest) => {
                let load = self.peers.load.get(node).copied().unwrap_or(0);
                let image = (key, tag);
                if let Some(groups) = self.peers.holders.get_mut(&image) {
                    if let Some(set) = groups.get_mut(&digest) {
                        set.remove(&(load, node.clone()));
                        if set.is_empty() {
                            groups.remove(&digest);
                        }
                    }
                    if groups.is_empty() {
                        self.peers.holders.remove(&image);
                    }
                }
                // Its last seed gone, a job waiting for one takes the registry instead.
                self.wake(|img, _| *img == image);
            }
            Role::Copies(seed) => {
                self.add_load(&seed, -1);
                self.wake_holder(&seed);
            }
            Role::Pulls(host) => {
                if let Some(n) = self.peers.registry.get_mut(&host) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.peers.registry.remove(&host);
                    }
                }
                // A registry slot: the jobs waiting for this host's images may pull.
                self.wake(|img, p| p.hosts.get(&img.0) == Some(&host));
            }
        }
    }

    /// Moves a seed's load by `delta`, and its place in the holder sets of the images it holds.
    fn add_load(&mut self, seed: &Name, delta: i64) {
        let old = self.peers.load.get(seed).copied().unwrap_or(0);
        let new = (old as i64 + delta).max(0) as u32;
        if new == 0 {
            self.peers.load.remove(seed);
        } else {
            self.peers.load.insert(seed.clone(), new);
        }
        for (key, tag, role) in self.peer_roles(seed) {
            let Role::Holds(digest) = role else {
                continue;
            };
            let set = (self.peers.holders.get_mut(&(key, tag)))
                .and_then(|groups| groups.get_mut(&digest));
            if let Some(set) = set {
                if set.remove(&(old, seed.clone())) {
                    set.insert((new, seed.clone()));
                }
            }
        }
    }

    /// A holder has room again, or its address changed (or went): the jobs waiting for an image
    /// it holds may copy from it, or take the registry if it was the last that could serve.
    pub(super) fn wake_holder(&mut self, node: &Name) {
        if !self.settings.peers_on() || self.peers.waiting.is_empty() {
            return;
        }
        let load = self.peers.load.get(node).copied().unwrap_or(0);
        let entry = (load, node.clone());
        self.wake(|img, p| {
            (p.holders.get(img)).is_some_and(|g| g.values().any(|set| set.contains(&entry)))
        });
    }

    /// Places again the jobs waiting for the images `which` picks.
    fn wake(&mut self, which: impl Fn(&ImageKey, &Peers) -> bool) {
        let woken: Vec<ImageKey> = (self.peers.waiting.keys())
            .filter(|img| which(img, &self.peers))
            .cloned()
            .collect();
        for img in woken {
            if let Some(jobs) = self.peers.waiting.remove(&img) {
                self.dirty_place.extend(jobs);
            }
        }
    }

    /// A node moved in the jobs' order (its demand changed): a job waiting for a source may now
    /// come, before the node it stopped at, to one where it joins a pull without a source.
    pub(super) fn peers_reordered(&mut self, node: &Name) {
        if self.peers.waiting.is_empty() {
            return;
        }
        for uid in self.node_jobs.get(node).into_iter().flatten() {
            if self.waits_for_source(uid) {
                self.dirty_place.insert(uid.clone());
            }
        }
    }

    /// The job waits for a seed or a registry slot (it takes no node where a pull would start
    /// until one frees).
    pub(super) fn waits_for_source(&self, uid: &Name) -> bool {
        self.peers.waiting.values().any(|jobs| jobs.contains(uid))
    }

    /// Notes that a job waits for a seed or a registry slot for its image.
    pub(super) fn wait_for_source(&mut self, info: &JobInfo) {
        if let Ok(image) = &info.image {
            // Its host known, so a registry slot freeing finds it.
            host_of(&mut self.peers.hosts, &image.0);
            let waiting = self.peers.waiting.entry(image.clone()).or_default();
            waiting.insert(info.uid.clone());
        }
    }

    /// The holder sets a job may copy from: its image's, of its digest when it has one.
    fn holder_sets<'a>(&'a self, info: &'a JobInfo) -> impl Iterator<Item = &'a Holders> + 'a {
        let groups = info.image.as_ref().ok().and_then(|(k, t)| {
            let image = (k.clone(), t.clone());
            self.peers.holders.get(&image)
        });
        (groups.into_iter().flatten())
            .filter(|(digest, _)| info.digest.is_none() || **digest == info.digest)
            .map(|(_, set)| set)
    }

    /// The nodes of a holder set that can serve `except` (any other node, with an address), in
    /// the set's order: least loaded first.
    fn servers<'a>(
        &'a self,
        set: &'a Holders,
        except: Option<&'a Name>,
    ) -> impl Iterator<Item = (u32, &'a Name, IpAddr)> + 'a {
        set.iter()
            .filter(move |(_, node)| Some(node) != except)
            .filter_map(|(load, node)| Some((*load, node, self.nodes.get(node)?.address?)))
    }

    /// Up to `n` seeds with room that can serve `info`'s image to `node` (least loaded first,
    /// then by name), and whether any node can serve it at all, room or not.
    fn seeds(&self, info: &JobInfo, node: &Name, n: usize) -> (Vec<(u32, Name, IpAddr)>, bool) {
        let fanout = self.fanout();
        let (mut seeds, mut any) = (Vec::new(), false);
        for set in self.holder_sets(info) {
            let mut servers = self.servers(set, Some(node)).peekable();
            any |= servers.peek().is_some();
            let room = servers.take_while(|(load, _, _)| *load < fanout).take(n);
            seeds.extend(room.map(|(load, node, ip)| (load, node.clone(), ip)));
        }
        seeds.sort();
        seeds.truncate(n);
        (seeds, any)
    }

    /// How a pull of `info`'s image that starts on `node` now gets its bytes.
    pub(super) fn plan_pull(&mut self, info: &JobInfo, node: &Name) -> Plan {
        if !self.settings.peers_on() {
            return Plan::Registry;
        }
        let Ok((key, _)) = &info.image else {
            return Plan::Registry;
        };
        let (seeds, served) = self.seeds(info, node, MAX_SOURCES);
        if !seeds.is_empty() {
            let port = self.settings.peer_port;
            let sources = (seeds.into_iter())
                .map(|(_, seed, ip)| {
                    let address = SocketAddr::new(ip, port).to_string();
                    self.interner.source(&seed, &address)
                })
                .collect();
            return Plan::Peers(sources);
        }
        if served {
            // Its seeds are busy: they free up sooner than the registry would serve it again.
            return Plan::Wait;
        }
        let host = host_of(&mut self.peers.hosts, key);
        let pulling = self.peers.registry.get(&host).copied().unwrap_or(0);
        if pulling < self.settings.registry_budget.max(1) {
            Plan::Registry
        } else {
            Plan::Wait
        }
    }

    /// How many pulls of `info`'s image could start now (counting up to `limit`): the seeds'
    /// room, or with no seed at all the registry host's. Placement takes no more of a job's
    /// nodes than this, so a job held back costs a look, not a pass over all its nodes.
    pub(super) fn pull_room(&mut self, info: &JobInfo, limit: usize) -> usize {
        if !self.settings.peers_on() {
            return limit;
        }
        let fanout = self.fanout();
        let (mut room, mut served) = (0usize, false);
        for set in self.holder_sets(info) {
            for (load, _, _) in self.servers(set, None) {
                served = true;
                if load >= fanout || room >= limit {
                    break;
                }
                room += (fanout - load) as usize;
            }
        }
        if served {
            return room.min(limit);
        }
        let Ok((key, _)) = &info.image else {
            return limit;
        };
        let host = host_of(&mut self.peers.hosts, key);
        let pulling = self.peers.registry.get(&host).copied().unwrap_or(0);
        (self.settings.registry_budget.max(1).saturating_sub(pulling) as usize).min(limit)
    }

    /// The counts of the peer index.
    pub fn peer_counts(&self) -> PeerCounts {
        let s = |m: &HashMap<Name, u32>| m.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        PeerCounts {
            registry: s(&self.peers.registry),
            load: s(&self.peers.load),
            holders: (self.peers.holders.iter())
                .map(|((k, t), g)| (format!("{k}:{t}"), g.values().map(BTreeSet::len).sum()))
                .collect(),
            waiting: self.peers.waiting.values().map(BTreeSet::len).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Arc::from(s)
    }

    #[test]
    fn hosts_are_the_parsers() {
        let mut hosts = HashMap::new();
        assert_eq!(&*host_of(&mut hosts, &n("nginx")), "docker.io");
        assert_eq!(&*host_of(&mut hosts, &n("team/app")), "docker.io");
        assert_eq!(
            &*host_of(&mut hosts, &n("registry.example.com:5000/team/app")),
            "registry.example.com:5000"
        );
        assert_eq!(&*host_of(&mut hosts, &n("localhost/app")), "localhost");
    }

    #[test]
    fn diff_keeps_what_stayed() {
        let r = |k: &str, role: Role| (n(k), n("1"), role);
        let before = vec![
            r("a", Role::Pulls(n("h"))),
            r("b", Role::Holds(None)),
            r("c", Role::Copies(n("s"))),
        ];
        let after = vec![
            r("a", Role::Holds(None)),
            r("b", Role::Holds(None)),
            r("d", Role::Pulls(n("h"))),
        ];
        let (ended, begun) = diff(before, after);
        assert_eq!(
            ended,
            [r("a", Role::Pulls(n("h"))), r("c", Role::Copies(n("s")))]
        );
        assert_eq!(
            begun,
            [r("a", Role::Holds(None)), r("d", Role::Pulls(n("h")))]
        );
    }
}
