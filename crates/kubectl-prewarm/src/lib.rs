//! `kubectl prewarm`, a kubectl plugin (krew conventions: the executable `kubectl-prewarm` on
//! the PATH) for image pre-warming: `status` (progress, throughput, ETA, `--watch` until done),
//! `nodes` (one row per target node), `why` (the one reason a node is not done), `node` (what a
//! node holds and for whom) and `top` (what is pulling now). It reads only what the API serves
//! (ImagePullJobs, NodeImages, Nodes), so it works on clusters running OpenKruise's controllers
//! too. Decisions come from the manager's own code ([`model`]); rendering is pure ([`render`]).

pub mod args;
pub mod cluster;
pub mod model;
pub mod render;
pub mod status;
pub mod watch;
pub mod why;

#[cfg(test)]
mod tests;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;
use kube::Client;

use args::{Args, Command, Format};

/// Exit codes: all done and nothing failed; a node failed; the command could not run; `--watch`
/// gave up at `--timeout`.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;
pub const EXIT_TIMEOUT: i32 = 3;

/// Parses `args` (the first is the program's name), runs the command, returns the exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args = Args::parse_from(args);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_ERROR
        }
    }
}

/// Runs one command; the exit code it asks for.
pub async fn run(args: Args) -> anyhow::Result<i32> {
    let (client, default_ns) = cluster::client(&args).await?;
    let ns = args.namespace.clone().unwrap_or(default_ns);
    match &args.command {
        Command::Status(s) if s.watch => watch::run(&client, &args, s, &ns).await,
        Command::Status(s) => {
            let scope = (!s.all_namespaces).then(|| ns.clone());
            let jobs = watch::resolve(&client, scope.as_deref(), &s.jobs).await?;
            let snap = watch::snapshot(&client, &args, jobs).await?;
            let summaries: Vec<_> = snap
                .jobs
                .iter()
                .map(|j| status::summarize(&snap, j, None))
                .collect();
            print_status(&summaries, s.output.format)?;
            Ok(if summaries.iter().any(|s| s.failed > 0) {
                EXIT_FAILED
            } else {
                EXIT_OK
            })
        }
        Command::Nodes(n) => nodes(&client, &args, n, &ns).await,
        Command::Why(w) => why(&client, &args, w, &ns).await,
        Command::Node(n) => node(&client, &args, n).await,
        Command::Top(o) => {
            let mut snap = cluster::empty(&args);
            snap.node_images = cluster::node_images(&client).await?;
            let t = status::top(&snap);
            emit(o.format, &t, || render::top_lines(&t))?;
            Ok(EXIT_OK)
        }
    }
}

/// Prints `value` as JSON, or the lines `text` makes.
fn emit<T: serde::Serialize>(
    format: Format,
    value: &T,
    text: impl FnOnce() -> Vec<String>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        Format::Text => {
            for line in text() {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

pub fn print_status(summaries: &[status::JobSummary], format: Format) -> anyhow::Result<()> {
    if summaries.is_empty() && format == Format::Text {
        println!("no ImagePullJobs");
        return Ok(());
    }
    emit(format, &summaries, || {
        summaries.iter().flat_map(render::status_lines).collect()
    })
}

async fn nodes(client: &Client, args: &Args, n: &args::NodesArgs, ns: &str) -> anyhow::Result<i32> {
    let job = cluster::job(client, ns, &n.job).await?;
    let snap = watch::snapshot(client, args, vec![job]).await?;
    let a = model::analyse(&snap, &snap.jobs[0]);
    let rows: Vec<_> = model::rows(&snap, &a)
        .into_iter()
        .filter(|r| !n.failed || r.phase == model::Phase::Failed)
        .filter(|r| !n.pulling || r.phase == model::Phase::Pulling)
        .collect();
    emit(n.output.format, &rows, || {
        render::node_rows(&rows, snap.now)
    })?;
    Ok(EXIT_OK)
}

async fn why(client: &Client, args: &Args, w: &args::WhyArgs, ns: &str) -> anyhow::Result<i32> {
    let job = cluster::job(client, ns, &w.job).await?;
    let mut snap = cluster::empty(args);
    snap.node_images = cluster::node_images(client).await?;
    snap.nodes = cluster::nodes(client, [&w.node]).await?;
    let uid = job.metadata.uid.clone();
    snap.jobs = vec![job];
    let others = cluster::other_jobs(client, ns).await?;
    snap.jobs
        .extend(others.into_iter().filter(|j| j.metadata.uid != uid));
    let reason = why::why(&snap, &snap.jobs[0], &w.node);
    let text = why::explain(&reason, &snap);
    let mut value = serde_json::to_value(&reason)?;
    value["message"] = serde_json::Value::String(text.clone());
    emit(w.output.format, &value, || {
        vec![format!("{} on {}: {text}", w.job, w.node)]
    })?;
    Ok(EXIT_OK)
}

async fn node(client: &Client, args: &Args, n: &args::NodeArgs) -> anyhow::Result<i32> {
    let mut snap = cluster::empty(args);
    let ni = kube::Api::<kruise_api::NodeImage>::all(client.clone())
        .get_opt(&n.node)
        .await
        .with_context(|| format!("reading NodeImage {}", n.node))?
        .with_context(|| {
            format!("no NodeImage {0}: the manager creates one per Ready node; `kubectl prewarm why JOB {0}` says why there is none", n.node)
        })?;
    let images = ni.spec.images.len();
    snap.node_images.insert(n.node.clone(), ni);
    snap.nodes = cluster::nodes(client, [&n.node]).await?;
    let held = render::held(&snap, &n.node);
    emit(n.output.format, &held, || {
        render::held_lines(&n.node, &held, images)
    })?;
    Ok(EXIT_OK)
}
