//! Follows this node's NodeImage and keeps one worker per tag in line with it: starts workers
//! for new tags and versions, stops (cancels) workers whose tag left the spec or changed version,
//! hands workers their tag's other changes, and stops everything when the NodeImage is gone.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kruise_api::NodeImage;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio_util::sync::CancellationToken;

use crate::desired::{desired_tags, finished_statuses, plan, Action, TagKey, TagTask};
use crate::runtime::ImageRuntime;
use crate::status::{StatusSender, StatusUpdate};
use crate::worker::{self, Worker, WorkerContext};

pub struct Controller<R> {
    ctx: Arc<WorkerContext<R>>,
    workers: BTreeMap<TagKey, Worker>,
    status: StatusSender,
    observed: bool,
}

impl<R: ImageRuntime> Controller<R> {
    pub fn new(ctx: Arc<WorkerContext<R>>) -> Self {
        let status = ctx.status.clone();
        Self {
            ctx,
            workers: BTreeMap::new(),
            status,
            observed: false,
        }
    }

    /// Brings the workers in line with the NodeImage (`None`: it does not exist).
    pub async fn apply(&mut self, ni: Option<&NodeImage>) {
        if !self.observed {
            self.observed = true;
            let _ = self
                .status
                .send(StatusUpdate::Observed(ni.and_then(|n| n.status.clone())))
                .await;
        }
        let Some(ni) = ni else {
            if !self.workers.is_empty() {
                tracing::info!(
                    tags = self.workers.len(),
                    "NodeImage is gone; stopping every worker"
                );
            }
            for (key, w) in std::mem::take(&mut self.workers) {
                w.stop().await;
                let _ = self
                    .status
                    .send(StatusUpdate::Tag { key, status: None })
                    .await;
            }
            let _ = self.status.send(StatusUpdate::Observed(None)).await;
            self.want_pins(std::iter::empty());
            return;
        };
        let desired = desired_tags(ni);
        let running: BTreeMap<TagKey, TagTask> = self
            .workers
            .iter()
            .map(|(k, w)| (k.clone(), w.task()))
            .collect();
        for action in plan(&running, &desired, &finished_statuses(ni)) {
            match action {
                Action::Stop { key, removed } => {
                    if let Some(w) = self.workers.remove(&key) {
                        tracing::info!(image = %key.0, tag = %key.1, removed, "stopping worker");
                        w.stop().await;
                    }
                    if removed {
                        let _ = self
                            .status
                            .send(StatusUpdate::Tag { key, status: None })
                            .await;
                    }
                }
                Action::Update { task } => {
                    if let Some(w) = self.workers.get(&task.key()) {
                        tracing::debug!(image = %task.image, tag = %task.tag, "the tag's entry changed; handing it to its worker");
                        w.update(*task);
                    }
                }
                Action::Start { task, adopt } => {
                    tracing::debug!(image = %task.image, tag = %task.tag, version = task.version, adopted = adopt.is_some(), "starting worker");
                    self.workers
                        .insert(task.key(), worker::spawn(self.ctx.clone(), *task, adopt));
                }
            }
        }
        self.want_pins(desired.values());
        let _ = self
            .status
            .send(StatusUpdate::Desired(desired.len() as i32))
            .await;
    }

    /// Tells the pin keeper which images the tags want pinned now.
    fn want_pins<'a>(&self, tasks: impl Iterator<Item = &'a TagTask>) {
        let on = self.ctx.guarantees.pin;
        let wanted: std::collections::BTreeSet<String> = tasks
            .filter(|t| t.pin && on)
            .filter_map(|t| kruise_api::imageref::ImageRef::parse(&t.pod_reference()).ok())
            .map(|r| r.to_string())
            .collect();
        self.ctx.guarantees.wanted_pins.send_if_modified(|w| {
            let changed = w.as_ref() != Some(&wanted);
            *w = Some(wanted);
            changed
        });
    }

    /// Cancels every worker at once and waits for them.
    pub async fn stop_all(&mut self) {
        let workers = std::mem::take(&mut self.workers);
        futures::future::join_all(workers.into_values().map(Worker::stop)).await;
    }

    /// Follows the NodeImage named `node` until `shutdown`; `on_synced` runs after the first
    /// complete view (the daemon is ready then).
    pub async fn run(
        &mut self,
        api: Api<NodeImage>,
        node: &str,
        server: &str,
        shutdown: CancellationToken,
        on_synced: impl Fn(),
    ) {
        let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut current: Option<NodeImage> = None;
        let mut seen_in_list = false;
        let mut failures = kruise_observe::api::RetryLog::default();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = events.next() => match e { Some(e) => e, None => return },
            };
            if event.is_ok() {
                failures.recovered("watching the NodeImage");
            }
            match event {
                Ok(watcher::Event::Init) => {
                    // A relist: take the status as the server has it as the new baseline.
                    seen_in_list = false;
                    self.observed = false;
                }
                Ok(watcher::Event::InitApply(ni)) => {
                    seen_in_list = true;
                    current = Some(ni);
                }
                Ok(watcher::Event::InitDone) => {
                    if !seen_in_list {
                        current = None;
                    }
                    self.apply(current.as_ref()).await;
                    on_synced();
                }
                Ok(watcher::Event::Apply(ni)) => {
                    self.apply(Some(&ni)).await;
                    current = Some(ni);
                }
                Ok(watcher::Event::Delete(_)) => {
                    current = None;
                    self.apply(None).await;
                }
                // kube's watcher backs off on its own (up to about a minute).
                Err(e) => failures.failed("watching the NodeImage", server, &e, None),
            }
        }
    }
}
