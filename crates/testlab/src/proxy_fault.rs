//! The HTTP faults [`crate::SlowProxy`] injects into the registry's answers, which requests they
//! hit and for how long, and the parsing of the request heads the proxy needs to decide that.
//! containerd reaches a loopback registry over plain HTTP/1.1 and sends one request at a time
//! on a connection, so a request's head is enough to know what the next response answers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the proxy does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers `429 Too Many Requests` with `Retry-After: <secs>` (and a registry error body, as
    /// Docker Hub does) instead of forwarding the request.
    TooManyRequests { retry_after_secs: u64 },
    /// Answers with this server error (500, 502, 503, 504) instead of forwarding the request.
    Status(u16),
    /// Forwards a blob `GET`, then cuts the connection after this many bytes of its response
    /// (headers included): a registry or load balancer dropping mid-layer. Responses shorter than
    /// that pass whole and do not count.
    CutBlobAfter(u64),
    /// Holds the request this long before forwarding it, sending nothing meanwhile (a registry
    /// that answers slowly); a client that gives up first closes the connection.
    Stall(Duration),
}

/// Which requests a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Any,
    /// `/v2/<name>/manifests/<reference>`
    Manifests,
    /// `/v2/<name>/blobs/<digest>`
    Blobs,
}

/// How long a fault lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lasting {
    /// For the next N requests it hits (for [`Fault::CutBlobAfter`]: N cuts).
    Requests(usize),
    /// For this long from now.
    For(Duration),
    /// Until [`crate::SlowProxy::clear_fault`].
    UntilCleared,
}

/// The one fault in force, with how much of it is left.
#[derive(Debug)]
struct Rule {
    fault: Fault,
    target: Target,
    left: Option<usize>,
    until: Option<Instant>,
}

/// The fault settings shared by the proxy's connections, and what they did.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rule: Mutex<Option<Rule>>,
    injected: Mutex<usize>,
}

impl Faults {
    pub(crate) fn set(&self, fault: Fault, target: Target, lasting: Lasting) {
        let (left, until) = match lasting {
            Lasting::Requests(n) => (Some(n), None),
            Lasting::For(d) => (None, Some(Instant::now() + d)),
            Lasting::UntilCleared => (None, None),
        };
        *self.rule.lock().unwrap() = Some(Rule {
            fault,
            target,
            left,
            until,
        });
    }

    pub(crate) fn clear(&self) {
        *self.rule.lock().unwrap() = None;
    }

    pub(crate) fn injected(&self) -> usize {
        *self.injected.lock().unwrap()
    }

    /// The fault for `request`, if one is in force and hits it. An answer or a stall is used up
    /// here; a cut only when it happens ([`Faults::claim_cut`]).
    pub(crate) fn for_request(&self, request: &RequestHead) -> Option<Fault> {
        let mut rule = self.rule.lock().unwrap();
        let r = rule.as_mut()?;
        let live = r.left != Some(0) && r.until.is_none_or(|u| Instant::now() < u);
        let hits = match r.target {
            Target::Any => true,
            Target::Manifests => request.is_manifest(),
            Target::Blobs => request.is_blob(),
        };
        if !live || !hits {
            return None;
        }
        if let Fault::CutBlobAfter(_) = r.fault {
            return (request.method == "GET" && request.is_blob()).then_some(r.fault);
        }
        if let Some(left) = r.left.as_mut() {
            *left -= 1;
        }
        *self.injected.lock().unwrap() += 1;
        Some(r.fault)
    }

    /// Whether an armed cut may still happen (the fault is still in force with cuts left); if
    /// so it is counted.
    pub(crate) fn claim_cut(&self) -> bool {
        let mut rule = self.rule.lock().unwrap();
        let Some(r) = rule.as_mut() else { return false };
        let live = matches!(r.fault, Fault::CutBlobAfter(_))
            && r.left != Some(0)
            && r.until.is_none_or(|u| Instant::now() < u);
        if live {
            if let Some(left) = r.left.as_mut() {
                *left -= 1;
            }
            *self.injected.lock().unwrap() += 1;
        }
        live
    }
}

/// The parts of an HTTP/1.1 request head the proxy acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub method: String,
    pub path: String,
    /// Bytes of body after the head (`Content-Length`).
    pub body: u64,
    /// The body is chunked: the proxy stops parsing this connection and only forwards.
    pub chunked: bool,
    /// The `Range` header (`bytes=1048576-`): containerd resuming a blob it was reading.
    pub range: Option<String>,
}

impl RequestHead {
    /// Parses a complete head (up to and including the blank line).
    pub(crate) fn parse(head: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines = text.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
        let mut body = 0;
        let mut chunked = false;
        let mut range = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                body = value.parse().ok()?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("range") {
                range = Some(value.to_string());
            }
        }
        Some(Self {
            method,
            path,
            body,
            chunked,
            range,
        })
    }

    pub(crate) fn is_manifest(&self) -> bool {
        self.path.starts_with("/v2/") && self.path.contains("/manifests/")
    }

    pub(crate) fn is_blob(&self) -> bool {
        self.path.starts_with("/v2/") && self.path.contains("/blobs/")
    }

    /// `METHOD path`, and ` Range: bytes=N-` when asked for, as the proxy's log keeps it.
    pub(crate) fn line(&self) -> String {
        match &self.range {
            Some(r) => format!("{} {} Range: {r}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// Where a request head ends in `buf` (the index after its blank line), if it is complete.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The bytes of an injected answer to `request`: the status with a registry error body (as
/// distribution and Docker Hub send), `Connection: close`, no body for `HEAD`.
pub(crate) fn response(fault: Fault, request: &RequestHead) -> Vec<u8> {
    let (status, reason, code, extra) = match fault {
        Fault::TooManyRequests { retry_after_secs } => (
            429,
            "Too Many Requests",
            "TOOMANYREQUESTS",
            format!("Retry-After: {retry_after_secs}\r\n"),
        ),
        Fault::Status(status) => {
            let reason = match status {
                500 => "Internal Server Error",
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                504 => "Gateway Timeout",
                _ => "Injected",
            };
            (status, reason, "UNAVAILABLE", String::new())
        }
        Fault::CutBlobAfter(_) | Fault::Stall(_) => unreachable!("forwarded, not answered"),
    };
    let body = format!(
        r#"{{"errors":[{{"code":"{code}","message":"injected by the lab's proxy","detail":null}}]}}"#
    );
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if request.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str) -> RequestHead {
        RequestHead {
            method: method.into(),
            path: path.into(),
            body: 0,
            chunked: false,
            range: None,
        }
    }

    #[test]
    fn parses_what_containerd_sends() {
        let raw = b"HEAD /v2/lab/a/manifests/v1 HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nAccept: */*\r\n\r\nrest";
        let end = head_end(raw).unwrap();
        assert_eq!(&raw[end..], b"rest");
        let h = RequestHead::parse(&raw[..end]).unwrap();
        assert_eq!(h, head("HEAD", "/v2/lab/a/manifests/v1"));
        assert!(h.is_manifest() && !h.is_blob());
        let put = RequestHead::parse(b"PUT /v2/x HTTP/1.1\r\ncontent-length: 12\r\n\r\n").unwrap();
        let resumed =
            RequestHead::parse(b"GET /v2/a/blobs/sha256:00 HTTP/1.1\r\nRange: bytes=10-\r\n\r\n");
        assert_eq!(
            resumed.unwrap().line(),
            "GET /v2/a/blobs/sha256:00 Range: bytes=10-"
        );
        assert_eq!((put.body, put.chunked), (12, false));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn a_counted_fault_hits_only_its_target_and_runs_out() {
        let f = Faults::default();
        f.set(Fault::Status(503), Target::Manifests, Lasting::Requests(2));
        let blob = head("GET", "/v2/lab/a/blobs/sha256:00");
        let manifest = head("GET", "/v2/lab/a/manifests/v1");
        assert_eq!(f.for_request(&blob), None);
        assert_eq!(f.for_request(&manifest), Some(Fault::Status(503)));
        assert_eq!(f.for_request(&manifest), Some(Fault::Status(503)));
        assert_eq!(f.for_request(&manifest), None);
        assert_eq!(f.injected(), 2);
    }

    #[test]
    fn a_timed_fault_ends_and_a_cleared_one_is_gone() {
        let f = Faults::default();
        f.set(
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            Target::Any,
            Lasting::For(Duration::ZERO),
        );
        assert_eq!(f.for_request(&head("HEAD", "/v2/a/manifests/v1")), None);
        f.set(Fault::Status(500), Target::Any, Lasting::UntilCleared);
        assert!(f.for_request(&head("GET", "/v2/")).is_some());
        f.clear();
        assert_eq!(f.for_request(&head("GET", "/v2/")), None);
    }

    #[test]
    fn cuts_are_armed_on_blob_gets_and_counted_when_they_happen() {
        let f = Faults::default();
        f.set(Fault::CutBlobAfter(10), Target::Blobs, Lasting::Requests(1));
        let blob = head("GET", "/v2/lab/a/blobs/sha256:00");
        assert_eq!(f.for_request(&blob), Some(Fault::CutBlobAfter(10)));
        assert_eq!(f.for_request(&head("HEAD", &blob.path)), None);
        assert_eq!(f.injected(), 0, "armed, not yet cut");
        assert!(f.claim_cut());
        assert!(!f.claim_cut(), "one cut only");
        assert_eq!(f.for_request(&blob), None);
        assert_eq!(f.injected(), 1);
    }

    #[test]
    fn a_429_carries_retry_after_and_a_registry_error() {
        let fault = Fault::TooManyRequests {
            retry_after_secs: 7,
        };
        let get = String::from_utf8(response(fault, &head("GET", "/v2/a/manifests/v1"))).unwrap();
        assert!(get.starts_with("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n"));
        assert!(get.ends_with(
            r#""code":"TOOMANYREQUESTS","message":"injected by the lab's proxy","detail":null}]}"#
        ));
        let head_only = response(fault, &head("HEAD", "/v2/a/manifests/v1"));
        assert!(head_only.ends_with(b"\r\n\r\n"), "no body for HEAD");
    }
}
