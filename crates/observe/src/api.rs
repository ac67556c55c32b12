//! Reaching the Kubernetes API server, and saying why not: which server, and the underlying
//! cause (refused, TLS, DNS, timeout), once in full and then briefly while it stays the same.

use std::error::Error;
use std::time::Duration;

/// A client for the API server of `KUBECONFIG` (or in-cluster), with that server's URL. Requests
/// carry `User-Agent: <agent>/<version>`, so audit logs and the API server's metrics name the
/// binary that made them.
pub async fn client(agent: &str, version: &str) -> anyhow::Result<(kube::Client, String)> {
    let mut config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!(
            "connecting to the Kubernetes API (in-cluster or KUBECONFIG): {}",
            error_chain(&e)
        )
    })?;
    let url = config.cluster_url.to_string();
    let user_agent = format!("{agent}/{version}");
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_str(&user_agent)
            .map_err(|e| anyhow::anyhow!("User-Agent {user_agent:?}: {e}"))?,
    ));
    let client = kube::Client::try_from(config).map_err(|e| {
        anyhow::anyhow!(
            "connecting to the Kubernetes API at {url}: {}",
            error_chain(&e)
        )
    })?;
    Ok((client, url.trim_end_matches('/').to_string()))
}

/// An error with its causes on one line (`kube` errors hide the cause that says what happened,
/// such as "Connection refused", in their source chain). A cause already in the text is skipped.
pub fn error_chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let m = s.to_string();
        if !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        source = s.source();
    }
    text
}

/// Logs a failure that repeats (an API server that cannot be reached, a watch that keeps
/// failing): in full, with the server and the cause, when it first happens or its cause changes;
/// as one short line per retry while it stays the same; and once more when it recovers.
#[derive(Debug, Default)]
pub struct RetryLog {
    last: Option<String>,
    repeats: u32,
}

impl RetryLog {
    pub fn failed(&mut self, what: &str, server: &str, e: &dyn Error, retry_in: Option<Duration>) {
        let cause = error_chain(e);
        let when =
            retry_in.map_or_else(|| "retrying".to_string(), |d| format!("retrying in {d:?}"));
        if self.last.as_deref() == Some(cause.as_str()) {
            self.repeats += 1;
            tracing::warn!(attempt = self.repeats + 1, "{what}: still failing; {when}");
        } else {
            tracing::error!(server, error = %cause, "{what} failed; {when}");
            self.last = Some(cause);
            self.repeats = 0;
        }
    }

    pub fn recovered(&mut self, what: &str) {
        if self.last.take().is_some() {
            tracing::info!(attempts = self.repeats + 1, "{what}: working again");
        }
        self.repeats = 0;
    }
}

/// Doubles a retry delay up to `max`.
pub fn backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_are_joined_once() {
        let e = E(
            "ServiceError: client error (Connect)",
            Some(Box::new(E(
                "client error (Connect)",
                Some(Box::new(E("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "ServiceError: client error (Connect): Connection refused (os error 111)"
        );
    }
}
