//! `status --watch`: read, summarise and redraw until every job is finished; in place on a
//! terminal, as plain lines (only when they change) otherwise.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use kube::Client;

use crate::args::{Args, Format, StatusArgs};
use crate::model::Snapshot;
use crate::status::{summarize, JobSummary, Sample};
use crate::{cluster, EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT};

/// How far back the observed rate reaches: long enough to smooth, short enough to follow.
const RATE_WINDOW_SECS: i64 = 60;

/// The named jobs of `ns`, or every job of `ns` (every namespace when `ns` is `None`).
pub async fn resolve(
    client: &Client,
    ns: Option<&str>,
    names: &[String],
) -> anyhow::Result<Vec<kruise_api::ImagePullJob>> {
    if names.is_empty() {
        return cluster::jobs(client, ns).await;
    }
    let ns = ns.unwrap_or("default");
    let mut out = Vec::new();
    for n in names {
        out.push(cluster::job(client, ns, n).await?);
    }
    Ok(out)
}

/// A snapshot of `jobs`, every NodeImage, and the Nodes that report the images' sizes.
pub async fn snapshot(
    client: &Client,
    args: &Args,
    jobs: Vec<kruise_api::ImagePullJob>,
) -> anyhow::Result<Snapshot> {
    let mut snap = cluster::empty(args);
    snap.jobs = jobs;
    snap.node_images = cluster::node_images(client).await?;
    snap.nodes = cluster::nodes(client, &cluster::size_sources(&snap)).await?;
    snap.now = k8s_openapi::jiff::Timestamp::now();
    Ok(snap)
}

/// Per job, its recent samples: the rate is taken from the oldest within the window.
#[derive(Default)]
pub struct Rates(BTreeMap<String, VecDeque<Sample>>);

impl Rates {
    /// The sample to measure from for `key` at `now`, after recording `now`'s.
    pub fn observe(&mut self, key: &str, now: Sample) -> Option<Sample> {
        let q = self.0.entry(key.to_string()).or_default();
        while q
            .front()
            .is_some_and(|s| now.0.as_second() - s.0.as_second() > RATE_WINDOW_SECS)
        {
            q.pop_front();
        }
        let from = q.front().copied();
        q.push_back(now);
        from
    }
}

/// The exit code once every summary is finished, or `None` to keep watching.
pub fn verdict(summaries: &[JobSummary]) -> Option<i32> {
    if summaries.is_empty() || !summaries.iter().all(|s| s.finished) {
        return None;
    }
    Some(if summaries.iter().any(|s| s.failed > 0) {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// Summaries of this round: one per job, the rate over the window.
fn round(snap: &Snapshot, rates: &mut Rates) -> Vec<JobSummary> {
    snap.jobs
        .iter()
        .map(|j| {
            let mut s = summarize(snap, j, None);
            if let Some(from) = rates.observe(&s.key(), (snap.now, s.done)) {
                crate::status::measure(&mut s, from, snap.now);
            }
            s
        })
        .collect()
}

/// Reads failing this many times in a row end the watch (an API server restart is ridden out).
const MAX_READ_FAILURES: u32 = 5;

/// The watched jobs afresh and a snapshot of them. `Ok(Err(_))`: a read failed and may be
/// retried; `Err(_)`: a job is gone, which ends the watch.
async fn read(
    client: &Client,
    args: &Args,
    watched: &[kruise_api::ImagePullJob],
) -> anyhow::Result<Result<Snapshot, anyhow::Error>> {
    let mut jobs = Vec::new();
    for j in watched {
        let (ns, name) = (
            j.metadata.namespace.clone().unwrap_or_default(),
            j.metadata.name.clone().unwrap_or_default(),
        );
        match kube::Api::<kruise_api::ImagePullJob>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await
        {
            Ok(Some(j)) => jobs.push(j),
            Ok(None) => anyhow::bail!(
                "ImagePullJob {ns}/{name} went away before it finished (deleted, or its ttlSecondsAfterFinished passed)"
            ),
            Err(e) => return Ok(Err(anyhow::Error::new(e).context(format!("reading ImagePullJob {ns}/{name}")))),
        }
    }
    Ok(snapshot(client, args, jobs).await)
}

/// Where the lines go: redrawn in place on a terminal, printed when they change otherwise.
struct Screen {
    tty: bool,
    drawn: usize,
    last: Vec<String>,
}

impl Screen {
    fn show(&mut self, lines: Vec<String>) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if !self.tty && lines == self.last {
            return Ok(());
        }
        if self.tty && self.drawn > 0 {
            write!(out, "\x1b[{}A\x1b[J", self.drawn)?;
        }
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        out.flush()?;
        self.drawn = lines.len();
        self.last = lines;
        Ok(())
    }
}

pub async fn run(client: &Client, args: &Args, s: &StatusArgs, ns: &str) -> anyhow::Result<i32> {
    let scope = (!s.all_namespaces).then_some(ns);
    let watched = resolve(client, scope, &s.jobs).await?;
    if watched.is_empty() {
        eprintln!("no ImagePullJobs to watch");
        return Ok(EXIT_ERROR);
    }
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal() && s.output.format == Format::Text;
    let mut screen = Screen {
        tty,
        drawn: 0,
        last: Vec::new(),
    };
    let (mut rates, mut failures) = (Rates::default(), 0);
    loop {
        match read(client, args, &watched).await? {
            Ok(snap) => {
                failures = 0;
                let summaries = round(&snap, &mut rates);
                screen.show(match s.output.format {
                    Format::Json => vec![serde_json::to_string(&summaries)?],
                    Format::Text => summaries
                        .iter()
                        .flat_map(crate::render::status_lines)
                        .collect(),
                })?;
                if let Some(code) = verdict(&summaries) {
                    return Ok(code);
                }
            }
            Err(e) if failures + 1 >= MAX_READ_FAILURES => return Err(e),
            Err(e) => {
                failures += 1;
                eprintln!("warning: {e:#} (attempt {failures} of {MAX_READ_FAILURES}; retrying)");
            }
        }
        if let Some(t) = s.timeout.filter(|t| started.elapsed() >= *t) {
            eprintln!("gave up after --timeout {t:?}; the jobs are still running");
            return Ok(EXIT_TIMEOUT);
        }
        tokio::time::sleep(s.interval).await;
    }
}
