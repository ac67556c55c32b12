//! Text for people: progress bars, tables and sizes. Pure: data in, lines out.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::model::{NodeRow, Phase, Snapshot};
use crate::status::{Activity, JobSummary, Top};

/// Width of the progress bar, in characters.
pub const BAR_WIDTH: usize = 30;

/// `1h02m`, `3m20s`, `45s`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// `18.6 GiB`, `512.0 MiB`, `900 B`: the daemon's own format.
pub use kruise_api::units::bytes;

/// `[####>>>xx.......]`: succeeded `#`, failed `x`, pulling `>` (by their progress), the rest `.`.
pub fn bar(s: &JobSummary, width: usize) -> String {
    if s.desired <= 0 {
        return format!("[{}]", " ".repeat(width));
    }
    let total = s.desired as f64;
    let cells = |n: f64| ((n / total) * width as f64).round() as usize;
    let ok = cells(s.succeeded as f64);
    let bad = cells(s.failed as f64).min(width - ok.min(width));
    let partial = (s.done - (s.succeeded + s.failed) as f64).max(0.0);
    let pulling = cells(partial).min(width - ok - bad);
    let rest = width - ok - bad - pulling;
    format!(
        "[{}{}{}{}]",
        "#".repeat(ok),
        "x".repeat(bad),
        ">".repeat(pulling),
        ".".repeat(rest)
    )
}

/// The lines `status` prints for one job.
pub fn status_lines(s: &JobSummary) -> Vec<String> {
    let digest = s
        .digest
        .as_deref()
        .map(kruise_api::short_digest)
        .unwrap_or_else(|| "digest pending".into());
    let pct = if s.desired > 0 {
        (s.done / s.desired as f64 * 100.0).floor() as u32
    } else {
        0
    };
    let mut first = vec![
        format!("{}  {}  {digest}", s.key(), s.image),
        format!(
            "  {} {pct:>3}%  {}/{} nodes  succeeded {}  failed {}  pulling {}  waiting {}",
            bar(s, BAR_WIDTH),
            s.succeeded + s.failed,
            s.desired,
            s.succeeded,
            s.failed,
            s.pulling,
            s.waiting
        ),
    ];
    first.push(format!("  {}", pace(s)));
    if !s.failed_nodes.is_empty() {
        first.push(format!("  failed on: {}", s.failed_nodes.join(", ")));
    }
    first
}

/// `12.0 MiB of 24.0 MiB  1.5 MiB/s  ETA 8s` or, with no sizes, `0.5 nodes/min  ETA 4m00s`.
fn pace(s: &JobSummary) -> String {
    let mut parts = Vec::new();
    if let (Some(done), Some(total)) = (s.bytes_done(), s.bytes_total()) {
        parts.push(format!("{} of {}", bytes(done), bytes(total)));
    }
    match (s.nodes_per_second, s.image_bytes) {
        (Some(r), Some(b)) => parts.push(format!("{}/s", bytes((r * b as f64) as u64))),
        (Some(r), None) => parts.push(format!("{:.1} nodes/min", r * 60.0)),
        (None, _) => {}
    }
    let state = if s.finished {
        if s.failed > 0 {
            format!("finished, {} failed", s.failed)
        } else {
            "finished".into()
        }
    } else {
        match s.eta_seconds {
            Some(e) => format!("ETA {}", duration(e)),
            None => "ETA unknown (no progress yet)".into(),
        }
    };
    parts.push(state);
    if let Some(m) = s.message.as_deref().filter(|m| !m.is_empty()) {
        parts.push(m.to_string());
    }
    parts.join("  ")
}

/// Columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    std::iter::once(line(header.iter().map(|h| h.to_string()).collect()))
        .chain(rows.iter().map(|r| line(r.clone())))
        .collect()
}

pub fn phase_text(p: Phase) -> &'static str {
    match p {
        Phase::Queued => "Queued",
        Phase::Waiting => "Waiting",
        Phase::Pulling => "Pulling",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
    }
}

fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(
        || "-".into(),
        |t| duration((now.as_second() - t.as_second()).max(0) as u64),
    )
}

/// `nodes JOB`: one row per target node.
pub fn node_rows(rows: &[NodeRow], now: Timestamp) -> Vec<String> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.node.clone(),
                phase_text(r.phase).into(),
                format!("{}%", r.progress),
                r.attempts.clone().unwrap_or_else(|| "-".into()),
                since(r.since, now),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["NODE", "PHASE", "PROGRESS", "ATTEMPTS", "SINCE", "MESSAGE"],
        &cells,
    )
}

/// One tag a node holds or should hold, for `node NODE`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub image: String,
    pub tag: String,
    pub owners: Vec<String>,
    pub phase: String,
    pub progress: i32,
    pub pin: bool,
    pub pinned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the NodeImage of `node` lists, with the daemon's report and the kubelet's sizes.
pub fn held(snap: &Snapshot, node: &str) -> Vec<Held> {
    let Some(ni) = snap.node_images.get(node) else {
        return Vec::new();
    };
    let sizes: Vec<(Vec<String>, u64)> = snap
        .nodes
        .get(node)
        .and_then(|n| n.status.as_ref()?.images.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| {
            Some((
                i.names.unwrap_or_default(),
                u64::try_from(i.size_bytes?).ok()?,
            ))
        })
        .collect();
    let mut out = Vec::new();
    for (key, image) in &ni.spec.images {
        for t in &image.tags {
            let report = ni
                .status
                .as_ref()
                .and_then(|s| s.image_statuses.get(key))
                .and_then(|s| s.tags.iter().find(|r| r.tag == t.tag))
                .filter(|r| r.version == t.version);
            out.push(held_tag(key, t, report, &sizes));
        }
    }
    out
}

/// One tag of a NodeImage with its current report and the kubelet's size of it.
fn held_tag(
    key: &str,
    t: &kruise_api::ImageTagSpec,
    current: Option<&kruise_api::ImageTagStatus>,
    sizes: &[(Vec<String>, u64)],
) -> Held {
    let reference = kruise_api::imageref::pull_reference(key, &t.tag);
    let by_digest = t.digest.as_ref().map(|d| format!("{key}@{d}"));
    let size = sizes
        .iter()
        .find(|(names, _)| {
            names.iter().any(|n| {
                n.ends_with(&reference) || by_digest.as_ref().is_some_and(|d| n.ends_with(d))
            })
        })
        .map(|(_, s)| *s);
    let owners = t
        .owner_references
        .iter()
        .map(|o| {
            let ns = o.namespace.as_deref().unwrap_or_default();
            let name = o.name.as_deref().unwrap_or_default();
            format!("{}/{ns}/{name}", o.kind.as_deref().unwrap_or("?"))
        })
        .collect();
    Held {
        image: key.to_string(),
        tag: t.tag.clone(),
        owners,
        phase: current.map_or("NotReported".into(), |r| format!("{:?}", r.phase)),
        progress: current.map_or(0, |r| r.progress),
        pin: t.pin,
        pinned: current.is_some_and(|r| r.pinned),
        digest: t.digest.clone(),
        size,
        message: current.and_then(|r| r.message.clone()),
    }
}

/// `node NODE` as a table, under a line naming the NodeImage's fill.
pub fn held_lines(node: &str, held: &[Held], images: usize) -> Vec<String> {
    let mut out = vec![format!(
        "NodeImage {node}: {images} of {} images",
        kruise_api::constants::MAX_IMAGES_PER_NODEIMAGE
    )];
    let rows: Vec<Vec<String>> = held
        .iter()
        .map(|h| {
            vec![
                format!("{}:{}", h.image, h.tag),
                h.phase.clone(),
                format!("{}%", h.progress),
                match (h.pin, h.pinned) {
                    (_, true) => "pinned".into(),
                    (true, false) => "pin asked".into(),
                    _ => "-".into(),
                },
                h.size.map_or("-".into(), bytes),
                h.digest
                    .as_deref()
                    .map_or("-".into(), kruise_api::short_digest),
                h.owners.join(","),
                h.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.extend(table(
        &[
            "IMAGE", "PHASE", "PROGRESS", "PIN", "SIZE", "DIGEST", "OWNERS", "MESSAGE",
        ],
        &rows,
    ));
    out
}

fn activity_rows(map: &std::collections::BTreeMap<String, Activity>) -> Vec<Vec<String>> {
    map.iter()
        .map(|(k, a)| {
            let avg = if a.pulling > 0 {
                a.progress / a.pulling as u64
            } else {
                0
            };
            vec![
                k.clone(),
                a.pulling.to_string(),
                a.waiting.to_string(),
                format!("{avg}%"),
                a.images.iter().cloned().collect::<Vec<_>>().join(","),
            ]
        })
        .collect()
}

/// `top`: per registry, then per job.
pub fn top_lines(t: &Top) -> Vec<String> {
    if t.registries.is_empty() {
        return vec!["nothing is pulling or waiting to pull".into()];
    }
    let mut out = table(
        &["REGISTRY", "PULLING", "WAITING", "AVG", "IMAGES"],
        &activity_rows(&t.registries),
    );
    out.push(String::new());
    out.extend(table(
        &["JOB", "PULLING", "WAITING", "AVG", "IMAGES"],
        &activity_rows(&t.jobs),
    ));
    out
}
