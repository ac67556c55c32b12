//! Who may read blobs from this daemon: a caller presenting a service-account token with the
//! peer audience (`--peer-audience`), which the API server's TokenReview accepts as one of the
//! daemon service accounts (`--peer-service-accounts`). The node name, when the token is bound
//! to a pod or node, comes from the review and names the caller in logs. Answers are cached per
//! token (accepted for 5 minutes, refused for 30 seconds), so a copy of many blobs costs one
//! review. Any daemon of the installation can already read every copied pull secret, so
//! serving blobs to any of them grants nothing new.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use sha2::{Digest, Sha256};

use crate::worker::BoxFuture;

/// The node-name claim of a bound service-account token.
const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// How long an accepted token is trusted without asking again (tokens live an hour or more).
const ACCEPTED_FOR: Duration = Duration::from_secs(300);
/// How long a refused token is refused without asking again.
const REFUSED_FOR: Duration = Duration::from_secs(30);
/// Tokens remembered at most; beyond it, expired and refused ones go first.
const CACHED_TOKENS: usize = 1024;
/// TokenReviews in flight at most: strangers sending made-up tokens cannot flood the API server.
const REVIEWS_AT_ONCE: usize = 4;

/// A caller the API server vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `system:serviceaccount:NS:NAME`.
    pub user: String,
    /// The caller's node, when its token is bound to one.
    pub node: Option<String>,
}

/// Why a caller is turned away, as the HTTP answer says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 401: no token, or one the API server does not accept for this audience.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a valid token of an account that is not a daemon of this installation.
    #[error("{0}")]
    Forbidden(String),
    /// 503: the API server could not be asked.
    #[error("{0}")]
    Unavailable(String),
}

/// What the API server says of a token (one TokenReview).
pub trait Reviewer: Send + Sync {
    fn review<'a>(&'a self, token: &'a str, audience: &'a str) -> BoxFuture<'a, Review>;
}

/// A TokenReview's answer.
#[derive(Debug, Clone)]
pub enum Review {
    Authenticated {
        user: String,
        extra: HashMap<String, Vec<String>>,
    },
    Refused(String),
    Failed(String),
}

/// TokenReviews through the API server.
pub struct KubeReviewer(pub kube::Client);

impl Reviewer for KubeReviewer {
    fn review<'a>(&'a self, token: &'a str, audience: &'a str) -> BoxFuture<'a, Review> {
        Box::pin(async move {
            let api: kube::Api<TokenReview> = kube::Api::all(self.0.clone());
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: Some(vec![audience.to_string()]),
                },
                ..Default::default()
            };
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                api.create(&PostParams::default(), &review),
            )
            .await;
            let status = match answer {
                Err(_) => return Review::Failed("no TokenReview answer within 10s".into()),
                Ok(Err(e)) => return Review::Failed(format!("TokenReview: {e}")),
                Ok(Ok(r)) => r.status.unwrap_or_default(),
            };
            // The API server says which of the asked audiences the token is valid for; one that
            // answers for none of ours is not trusted (as the TokenReview API advises).
            let audiences = status.audiences.clone().unwrap_or_default();
            if !audiences.is_empty() && !audiences.iter().any(|a| a == audience) {
                return Review::Refused(format!("the token is valid for {audiences:?} only"));
            }
            match (status.authenticated, status.user) {
                (Some(true), Some(user)) => Review::Authenticated {
                    user: user.username.unwrap_or_default(),
                    extra: user.extra.unwrap_or_default().into_iter().collect(),
                },
                _ => Review::Refused(status.error.unwrap_or_else(|| "not authenticated".into())),
            }
        })
    }
}

/// Checks callers, caching the API server's answers.
pub struct Authenticator {
    reviewer: Box<dyn Reviewer>,
    audience: String,
    /// Usernames accepted: `system:serviceaccount:NS:NAME`.
    allowed: Vec<String>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    reviews: tokio::sync::Semaphore,
}

/// A review's answer and until when it stands, by the token's sha256.
type Cached = (Instant, Result<Caller, Refusal>);

impl Authenticator {
    /// `accounts` as `NAMESPACE:NAME`.
    pub fn new(reviewer: Box<dyn Reviewer>, audience: String, accounts: &[String]) -> Self {
        let allowed = accounts
            .iter()
            .map(|a| format!("system:serviceaccount:{a}"))
            .collect();
        Self {
            reviewer,
            audience,
            allowed,
            cache: Mutex::new(HashMap::new()),
            reviews: tokio::sync::Semaphore::new(REVIEWS_AT_ONCE),
        }
    }

    /// The caller behind an `Authorization` header value, or why it is refused.
    pub async fn check(&self, authorization: Option<&str>) -> Result<Caller, Refusal> {
        let Some(token) = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(Refusal::Unauthenticated(
                "a bearer token of a kruise-daemon service account is required".into(),
            ));
        };
        // Service-account tokens are JWTs: three base64url parts. Anything else is refused
        // without asking the API server.
        let parts: Vec<&str> = token.split('.').collect();
        let base64url = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        };
        if parts.len() != 3 || !parts.iter().all(base64url) {
            return Err(Refusal::Unauthenticated(
                "the bearer token is not a service-account token".into(),
            ));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((until, answer)) = self.cache.lock().expect("not poisoned").get(&key) {
            if Instant::now() < *until {
                return answer.clone();
            }
        }
        let answer = {
            let Ok(_turn) = self.reviews.acquire().await else {
                return Err(Refusal::Unavailable("shutting down".into()));
            };
            self.decide(self.reviewer.review(token, &self.audience).await)
        };
        let keep = match &answer {
            Ok(_) => ACCEPTED_FOR,
            Err(Refusal::Unavailable(_)) => return answer,
            Err(_) => REFUSED_FOR,
        };
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= CACHED_TOKENS {
            let now = Instant::now();
            cache.retain(|_, (until, answer)| *until > now && answer.is_ok());
            if cache.len() >= CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now() + keep, answer.clone()));
        answer
    }

    fn decide(&self, review: Review) -> Result<Caller, Refusal> {
        match review {
            Review::Failed(e) => Err(Refusal::Unavailable(format!(
                "the API server could not review the token: {e}"
            ))),
            Review::Refused(e) => Err(Refusal::Unauthenticated(format!(
                "the token is not valid for the audience {:?}: {e}",
                self.audience
            ))),
            Review::Authenticated { user, .. } if !self.allowed.contains(&user) => {
                Err(Refusal::Forbidden(format!(
                    "{user} is not a kruise-daemon service account of this installation"
                )))
            }
            Review::Authenticated { user, extra } => Ok(Caller {
                user,
                node: extra.get(NODE_NAME_EXTRA).and_then(|n| n.first().cloned()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Scripted(Review, Arc<AtomicUsize>);

    impl Reviewer for Scripted {
        fn review<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Review> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { self.0.clone() })
        }
    }

    fn auth(review: Review) -> (Authenticator, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let reviewer = Box::new(Scripted(review, calls.clone()));
        let accounts = ["kruise-system:kruise-daemon".to_string()];
        (
            Authenticator::new(reviewer, "kruise-daemon-peer".into(), &accounts),
            calls,
        )
    }

    fn daemon() -> Review {
        Review::Authenticated {
            user: "system:serviceaccount:kruise-system:kruise-daemon".into(),
            extra: HashMap::from([(NODE_NAME_EXTRA.to_string(), vec!["node-7".to_string()])]),
        }
    }

    #[tokio::test]
    async fn a_daemon_token_is_accepted_once_reviewed_and_then_from_the_cache() {
        let (a, calls) = auth(daemon());
        for _ in 0..3 {
            let caller = a.check(Some("Bearer a.b.c")).await.expect("accepted");
            assert_eq!(caller.node.as_deref(), Some("node-7"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one TokenReview per token");
    }

    #[tokio::test]
    async fn callers_without_a_daemon_token_are_refused_with_the_right_answer() {
        let (a, calls) = auth(daemon());
        assert!(matches!(
            a.check(None).await,
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check(Some("Basic dXNlcjpwdw==")).await,
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check(Some("Bearer not-a-jwt")).await,
            Err(Refusal::Unauthenticated(_))
        ));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "no review without a service-account token"
        );
        let (a, _) = auth(Review::Refused(
            "token audiences [\"api\"] is invalid".into(),
        ));
        assert!(matches!(
            a.check(Some("Bearer x.y.z")).await,
            Err(Refusal::Unauthenticated(_))
        ));
        let (a, _) = auth(Review::Authenticated {
            user: "system:serviceaccount:default:default".into(),
            extra: HashMap::new(),
        });
        let refused = a.check(Some("Bearer x.y.z")).await.unwrap_err();
        assert!(matches!(refused, Refusal::Forbidden(_)), "{refused:?}");
        assert!(refused.to_string().contains("default:default"));
    }

    #[tokio::test]
    async fn an_api_server_failure_is_not_cached() {
        let (a, calls) = auth(Review::Failed("connection refused".into()));
        for _ in 0..2 {
            assert!(matches!(
                a.check(Some("Bearer x.y.z")).await,
                Err(Refusal::Unavailable(_))
            ));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
