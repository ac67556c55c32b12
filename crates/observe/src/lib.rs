//! What kruise-manager and kruise-daemon share at their edges: structured logging (text or JSON),
//! the admin HTTP server (`/metrics` in Prometheus text format, `/healthz`, `/readyz`), and the
//! shutdown signal (SIGTERM or SIGINT) as a cancellation token, reaching the API server, and the
//! executables' allocator.

pub mod alloc;
pub mod api;
pub mod supervise;

pub use supervise::{fault, Supervisor};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Log output flags, the same on both binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter: a level (`info`, `debug`) or a tracing directive list
    /// (`info,kruise_daemon=debug`). `RUST_LOG`, when set, wins.
    #[arg(long, env = "KRUISE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// `text` for people, `json` for log pipelines.
    #[arg(long, env = "KRUISE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Runs a binary's `run` on a multi-threaded runtime, with fault injection read first (test
/// builds only). A blocking call left running cannot hold up the exit for more than a second.
pub fn block_on(run: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    supervise::init_faults();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Installs the global tracing subscriber.
pub fn init_logging(args: &LogArgs) -> anyhow::Result<()> {
    let mut filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => tracing_subscriber::EnvFilter::try_new(v)?,
        _ => tracing_subscriber::EnvFilter::try_new(&args.log_level)
            .map_err(|e| anyhow::anyhow!("--log-level {:?}: {e}", args.log_level))?,
    };
    // kube logs every failed request as "failed with error client error (Connect)", without the
    // server or the cause; the binaries log those failures themselves, with both (api::RetryLog).
    if !args.log_level.contains("kube_client") {
        filter = filter.add_directive("kube_client::client::builder=off".parse()?);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if args.log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// Readiness the process reports on `/readyz`; liveness (`/healthz`) is "the server answers and
/// no supervised task has failed".
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Mutex<Registry>>,
    readiness: Readiness,
    supervisor: Supervisor,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown` is cancelled. Binding
/// happens before this returns, so a taken port is an error at start-up, not a silent gap.
pub async fn serve_admin(
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    readiness: Readiness,
    supervisor: Supervisor,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the admin server to {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthy))
        .route("/readyz", get(ready))
        .with_state(AdminState {
            registry,
            readiness,
            supervisor,
        });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok((local, task))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = String::new();
    let encoded = {
        let registry = state.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut body, &registry)
    };
    match encoded {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn healthy(State(state): State<AdminState>) -> impl IntoResponse {
    match state.supervisor.cause() {
        None => (StatusCode::OK, "ok".to_string()),
        Some(cause) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unhealthy: {cause}"),
        ),
    }
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// What a binary has once its process plumbing is up.
pub struct Started<M> {
    pub shutdown: CancellationToken,
    /// Every long-lived task and thread of the binary runs under it.
    pub supervisor: Supervisor,
    pub readiness: Readiness,
    pub metrics: Arc<M>,
    /// The admin server; finishes after `shutdown`.
    pub admin: tokio::task::JoinHandle<()>,
    pub addr: SocketAddr,
}

/// Installs the signal handler, registers the binary's metrics under `prefix`, and serves the
/// admin endpoints on `addr` (not ready until the binary says so).
pub async fn start<M>(
    prefix: &str,
    addr: SocketAddr,
    metrics: impl FnOnce(&mut Registry) -> M,
) -> anyhow::Result<Started<M>> {
    let shutdown = shutdown_on_signal();
    let supervisor = Supervisor::new(shutdown.clone());
    let mut registry = Registry::with_prefix(prefix);
    let metrics = Arc::new(metrics(&mut registry));
    let readiness = Readiness::default();
    let (addr, admin) = serve_admin(
        addr,
        Arc::new(Mutex::new(registry)),
        readiness.clone(),
        supervisor.clone(),
        shutdown.clone(),
    )
    .await?;
    Ok(Started {
        shutdown,
        supervisor,
        readiness,
        metrics,
        admin,
        addr,
    })
}

/// A token cancelled on the first SIGTERM or SIGINT; a second signal exits at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; stopping (send it again to exit now)");
        trigger.cancel();
        wait_for_signal().await;
        tracing::warn!("second shutdown signal; exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A duration flag: `90s`, `30m`, `24h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || format!("{s:?} is not a duration like 90s, 30m or 24h");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn healthz_fails_with_the_cause_once_a_supervised_task_failed() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new(shutdown.clone());
        let registry = Arc::new(Mutex::new(Registry::default()));
        let any_port = "127.0.0.1:0".parse().unwrap();
        let (addr, _server) = serve_admin(
            any_port,
            registry,
            Readiness::default(),
            supervisor.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        supervisor.fail("the engine panicked: boom".into());
        let answer = get(addr, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(
            answer.ends_with("unhealthy: the engine panicked: boom"),
            "{answer}"
        );
        shutdown.cancel();
    }

    #[test]
    fn durations() {
        assert_eq!(
            super::parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            super::parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            super::parse_duration("24h"),
            Ok(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(
            super::parse_duration("7"),
            Ok(std::time::Duration::from_secs(7))
        );
        assert!(super::parse_duration("soon")
            .unwrap_err()
            .contains("like 90s"));
        assert!(super::parse_duration("5d").is_err());
    }
}
