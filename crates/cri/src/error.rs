//! Runtime errors sorted into causes a user can act on.
//!
//! containerd's codes are coarse: only "not found" is `NOT_FOUND`; auth, network, parse and
//! registry 5xx errors all arrive as `UNKNOWN` with a message. So the cause is read from the
//! message (substrings, since the wording differs between runtime versions), and the runtime's own
//! message is always kept for the user.

use std::fmt;

use tonic::Code;

/// What went wrong, as a short label for metrics and a phrase for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CriErrorKind {
    /// The registry has no such repository, tag or digest.
    NotFound,
    /// The registry refused the credentials, or asked for some and got none.
    Unauthorized,
    /// The registry could not be reached (refused, DNS, network, TLS, dropped connection).
    RegistryUnreachable,
    /// The registry refused for now: `429 Too Many Requests` (see [`classify`] for the words).
    RateLimited,
    /// The registry answered with a server error.
    RegistryError,
    /// The runtime rejected the reference.
    InvalidReference,
    /// The node has no space left for the image.
    NoSpace,
    /// The call's deadline passed.
    Timeout,
    /// The call was cancelled by its caller.
    Cancelled,
    /// The runtime socket did not answer.
    RuntimeUnavailable,
    /// The runtime does not serve CRI v1 (or its CRI plugin failed to load).
    Unimplemented,
    /// Anything else; the message says what.
    Other,
}

impl CriErrorKind {
    /// Stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            CriErrorKind::NotFound => "not_found",
            CriErrorKind::Unauthorized => "unauthorized",
            CriErrorKind::RegistryUnreachable => "registry_unreachable",
            CriErrorKind::RateLimited => "rate_limited",
            CriErrorKind::RegistryError => "registry_error",
            CriErrorKind::InvalidReference => "invalid_reference",
            CriErrorKind::NoSpace => "no_space",
            CriErrorKind::Timeout => "timeout",
            CriErrorKind::Cancelled => "cancelled",
            CriErrorKind::RuntimeUnavailable => "runtime_unavailable",
            CriErrorKind::Unimplemented => "unimplemented",
            CriErrorKind::Other => "other",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            CriErrorKind::NotFound => "image not found in the registry",
            CriErrorKind::Unauthorized => {
                "the registry refused the credentials (check the job's pullSecrets)"
            }
            CriErrorKind::RegistryUnreachable => "the registry is unreachable",
            CriErrorKind::RateLimited => "rate-limited by the registry",
            CriErrorKind::RegistryError => "the registry answered with a server error",
            CriErrorKind::InvalidReference => "the runtime rejected the image reference",
            CriErrorKind::NoSpace => "no space left on the node's image filesystem",
            CriErrorKind::Timeout => "timed out",
            CriErrorKind::Cancelled => "cancelled",
            CriErrorKind::RuntimeUnavailable => {
                "the container runtime is not answering on its socket"
            }
            CriErrorKind::Unimplemented => {
                "the container runtime does not serve the CRI v1 image API"
            }
            CriErrorKind::Other => "the container runtime reported an error",
        }
    }

    /// Worth retrying: the same call may succeed later without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            CriErrorKind::RegistryUnreachable
                | CriErrorKind::RateLimited
                | CriErrorKind::RegistryError
                | CriErrorKind::Timeout
                | CriErrorKind::RuntimeUnavailable
                | CriErrorKind::Other
        )
    }
}

/// A failed CRI call: which call, why, and the runtime's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CriError {
    pub kind: CriErrorKind,
    /// The CRI method, e.g. `PullImage`.
    pub call: &'static str,
    pub code: Code,
    /// The runtime's message, unchanged.
    pub message: String,
}

impl fmt::Display for CriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.phrase(), self.message)
    }
}

impl CriError {
    pub fn from_status(call: &'static str, status: &tonic::Status) -> Self {
        let message = status.message().to_string();
        Self {
            kind: classify(status.code(), &message),
            call,
            code: status.code(),
            message,
        }
    }

    /// A response the runtime should never send (an empty image ref from PullImage).
    pub fn protocol(call: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: CriErrorKind::Other,
            call,
            code: Code::Internal,
            message: message.into(),
        }
    }
}

/// Sorts a status into a cause. Public for the tests that pin containerd's wording.
///
/// A `429 Too Many Requests` reaches containerd 1.6.20, which retries it at once a few times and
/// then answers `UNKNOWN` with the status line, never the `Retry-After` header:
/// - on the manifest: `failed to pull and unpack image "R": failed to resolve reference "R":
///   pulling from host H failed with status code [manifests v1]: 429 Too Many Requests`;
/// - on a blob: `failed to pull and unpack image "R": failed to copy: httpReadSeeker: failed
///   open: unexpected status code http://H/v2/NAME/blobs/sha256:…: 429 Too Many Requests -
///   Server message: toomanyrequests: <the registry's message>`.
pub fn classify(code: Code, message: &str) -> CriErrorKind {
    let m = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    match code {
        Code::DeadlineExceeded => return CriErrorKind::Timeout,
        // tonic reports its own expired deadline as Cancelled("Timeout expired").
        Code::Cancelled if has(&["timeout expired", "deadline"]) => return CriErrorKind::Timeout,
        Code::Cancelled => return CriErrorKind::Cancelled,
        Code::Unavailable => return CriErrorKind::RuntimeUnavailable,
        Code::Unimplemented => return CriErrorKind::Unimplemented,
        Code::NotFound => return CriErrorKind::NotFound,
        Code::Unauthenticated | Code::PermissionDenied => return CriErrorKind::Unauthorized,
        _ => {}
    }
    if has(&["no space left on device", "disk quota exceeded"]) {
        CriErrorKind::NoSpace
    } else if has(&["429 too many requests", "toomanyrequests"]) {
        CriErrorKind::RateLimited
    } else if has(&[
        "401 unauthorized",
        "403 forbidden",
        "unauthorized",
        "authentication required",
        "requested access to the resource is denied",
    ]) {
        CriErrorKind::Unauthorized
    } else if has(&[
        "invalid reference format",
        "failed to parse image reference",
    ]) {
        CriErrorKind::InvalidReference
    } else if has(&[
        "connection refused",
        "no such host",
        "network is unreachable",
        "no route to host",
        "i/o timeout",
        "tls handshake",
        "connection reset",
        "unexpected eof",
        "dial tcp",
    ]) {
        CriErrorKind::RegistryUnreachable
    } else if has(&[": not found", " not found"]) {
        CriErrorKind::NotFound
    } else if has(&["500 ", "502 ", "503 ", "504 ", "unexpected status code"]) {
        CriErrorKind::RegistryError
    } else if has(&["context deadline exceeded", "context canceled"]) {
        CriErrorKind::Timeout
    } else {
        CriErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact messages containerd 1.6.20 returns (docs/cri-lab.md) land in the right cause.
    #[test]
    fn containerd_messages_are_classified() {
        let r = "127.0.0.1:5001/lab/multi:v2";
        let cases = [
            (Code::Unknown, format!("failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": pulling from host 127.0.0.1:5001 failed with status code [manifests v1]: 401 Unauthorized"), CriErrorKind::Unauthorized),
            (Code::NotFound, format!("failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": {r}: not found"), CriErrorKind::NotFound),
            (Code::Unknown, "failed to parse image reference \"127.0.0.1:5001/lab/UPPER:v1\": invalid reference format: repository name must be lowercase".into(), CriErrorKind::InvalidReference),
            (Code::Unknown, format!("failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": failed to do request: Head \"http://127.0.0.1:5001/v2/lab/multi/manifests/v2\": dial tcp 127.0.0.1:5001: connect: connection refused"), CriErrorKind::RegistryUnreachable),
            (Code::Unknown, "... failed to do request: Head \"https://nonexistent.invalid/v2/lab/x/manifests/v1\": dial tcp: lookup nonexistent.invalid on 10.255.255.53:53: no such host".into(), CriErrorKind::RegistryUnreachable),
            (Code::DeadlineExceeded, "Deadline Exceeded".into(), CriErrorKind::Timeout),
            (Code::Cancelled, "Timeout expired".into(), CriErrorKind::Timeout),
            (Code::Unknown, format!("failed to pull and unpack image \"{r}\": failed to read expected number of bytes: unexpected EOF"), CriErrorKind::RegistryUnreachable),
            (Code::Unknown, "... failed to copy: httpReadSeeker: failed open: unexpected status code http://127.0.0.1:5001/v2/lab/huge/blobs/sha256:00: 500 Injected - Server message: unknown: injected by slowproxy".into(), CriErrorKind::RegistryError),
            (Code::Unknown, format!("failed to resolve reference \"{r}\": pulling from host 127.0.0.1:5001 failed with status code [manifests v1]: 503 Injected"), CriErrorKind::RegistryError),
            (Code::Unavailable, "Stream removed (Socket closed)".into(), CriErrorKind::RuntimeUnavailable),
            (Code::Unimplemented, "unknown service runtime.v1.ImageService".into(), CriErrorKind::Unimplemented),
            (Code::Unknown, format!("failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": pulling from host 127.0.0.1:5001 failed with status code [manifests v1]: 429 Too Many Requests"), CriErrorKind::RateLimited),
            (Code::Unknown, format!("failed to pull and unpack image \"{r}\": failed to copy: httpReadSeeker: failed open: unexpected status code http://127.0.0.1:5001/v2/lab/multi/blobs/sha256:f66b: 429 Too Many Requests - Server message: toomanyrequests: injected by the lab's proxy"), CriErrorKind::RateLimited),
            (Code::Unknown, format!("failed to pull and unpack image \"{r}\": failed to copy: httpReadSeeker: failed open: failed to do request: Get \"http://127.0.0.1:5001/v2/lab/multi/blobs/sha256:f66b\": net/http: HTTP/1.x transport connection broken: unexpected EOF"), CriErrorKind::RegistryUnreachable),
            (Code::Unknown, "failed to extract layer sha256:00: write /var/lib/containerd/x: no space left on device: unknown".into(), CriErrorKind::NoSpace),
        ];
        for (code, message, want) in cases {
            assert_eq!(classify(code, &message), want, "{code:?} {message}");
        }
    }

    #[test]
    fn display_says_the_cause_then_the_runtime_message() {
        let e = CriError::from_status("PullImage", &tonic::Status::not_found("x:1: not found"));
        assert_eq!(
            e.to_string(),
            "image not found in the registry: x:1: not found"
        );
        assert_eq!(e.kind.label(), "not_found");
        assert!(!e.kind.is_transient());
    }
}
