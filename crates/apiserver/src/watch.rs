//! Watch from a `resourceVersion`: history replayed, then live changes, selector-aware (an object
//! that stops matching arrives as DELETED), bookmarks on request, and an end when the fault
//! switch drops all watches. A resourceVersion older than the history gets what kube-apiserver's
//! watch cache sends: an open stream with one `ERROR` event, a Status `410 Expired` "too old
//! resource version: <asked> (<oldest it can serve from>)". Lists are in `list`.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::catalog::ResourceInfo;
use crate::errors::{ApiError, ApiResult};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{present, Change, EventType, Store};

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
            && self.labels.matches(obj.pointer("/metadata/labels"))
            && self.fields.matches(obj)
    }
}

pub struct WatchOptions {
    pub resource_version: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    /// `as=PartialObjectMetadata`: objects as their metadata only.
    pub metadata_only: bool,
}

/// Interval of bookmarks on watches that ask for them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

fn line(type_: &str, object: Value) -> Result<bytes::Bytes, std::io::Error> {
    let mut s = json!({"type": type_, "object": object}).to_string();
    s.push('\n');
    Ok(bytes::Bytes::from(s))
}

/// The watch event a change gives this watcher, if any.
fn translate(filter: &Filter, c: &Change) -> Option<(EventType, Value)> {
    let now = filter.matches(&c.object);
    match c.type_ {
        EventType::Added | EventType::Deleted => now.then(|| (c.type_, c.object.clone())),
        EventType::Modified => {
            let before = c.old.as_ref().is_some_and(|o| filter.matches(o));
            match (before, now) {
                (true, true) => Some((EventType::Modified, c.object.clone())),
                (false, true) => Some((EventType::Added, c.object.clone())),
                (true, false) => Some((EventType::Deleted, c.object.clone())),
                (false, false) => None,
            }
        }
    }
}

pub fn watch(
    store: Arc<Store>,
    info: Arc<ResourceInfo>,
    version: String,
    filter: Filter,
    opts: WatchOptions,
    mut dropped: tokio::sync::watch::Receiver<u64>,
) -> ApiResult<impl Stream<Item = Result<bytes::Bytes, std::io::Error>>> {
    let gr = info.storage_key();
    let (initial, backlog, mut rx, start_rv, too_old) = {
        let st = store.lock();
        let rx = store.changes.subscribe();
        let from =
            match opts.resource_version.as_deref() {
                None | Some("") | Some("0") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?),
            };
        let mut initial = Vec::new();
        if from.is_none() || opts.send_initial_events {
            for obj in st.objects.get(&gr).into_iter().flat_map(|m| m.values()) {
                if filter.matches(obj) {
                    initial.push(obj.clone());
                }
            }
        }
        let too_old = from.is_some_and(|rv| rv < st.compacted);
        let backlog: Vec<Arc<Change>> = match from {
            Some(rv) if !opts.send_initial_events && !too_old => st
                .history
                .iter()
                .filter(|c| c.rv > rv && c.gr == gr)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        (initial, backlog, rx, st.rv, too_old.then_some(st.compacted))
    };
    let _ = dropped.borrow_and_update();
    Ok(async_stream_like(move |tx| async move {
        if let Some(oldest) = too_old {
            let status = ApiError::gone(format!(
                "too old resource version: {} ({oldest})",
                opts.resource_version.unwrap_or_default(),
            ))
            .to_status();
            let _ = tx.send(line("ERROR", status)).await;
            return;
        }
        let bookmark = |rv: u64, initial_end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            line(
                "BOOKMARK",
                json!({"kind": info.kind, "apiVersion": info.api_version(&version), "metadata": meta}),
            )
        };
        let metadata_only = opts.metadata_only;
        let present = |info: &ResourceInfo, version: &str, obj: Value| {
            let shown = present(info, version, obj);
            if metadata_only {
                crate::store::metadata_only(shown)
            } else {
                shown
            }
        };
        for obj in initial {
            if tx
                .send(line("ADDED", present(&info, &version, obj)))
                .await
                .is_err()
            {
                return;
            }
        }
        if opts.send_initial_events && tx.send(bookmark(start_rv, true)).await.is_err() {
            return;
        }
        let mut last = start_rv;
        for c in backlog {
            last = last.max(c.rv);
            if let Some((t, obj)) = translate(&filter, &c) {
                if tx
                    .send(line(t.as_str(), present(&info, &version, obj)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let deadline = opts.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = dropped.changed() => return,
                _ = ticker.tick(), if opts.bookmarks => {
                    let rv = store.lock().rv;
                    if tx.send(bookmark(rv, false)).await.is_err() {
                        return;
                    }
                }
                recv = rx.recv() => match recv {
                    Ok(c) => {
                        if c.gr != gr || c.rv <= last {
                            continue;
                        }
                        last = c.rv;
                        if let Some((t, obj)) = translate(&filter, &c) {
                            if tx.send(line(t.as_str(), present(&info, &version, obj))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // A watcher that cannot keep up is closed, and relists, as on a real server.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
            }
        }
    }))
}

/// A stream fed by a spawned task through a small channel.
fn async_stream_like<F, Fut>(f: F) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
