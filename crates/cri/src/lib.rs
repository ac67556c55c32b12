//! The container runtime side of kruise-daemon: a CRI v1 image client over the runtime's unix
//! socket (every call with a deadline), detection of which runtime a node runs, classification
//! of runtime errors into causes a user can act on, and registry credentials chosen from
//! `dockerconfigjson`/`dockercfg` secrets the way the kubelet chooses them.

pub mod auth;
pub mod client;
pub mod connect;
pub mod detect;
pub mod error;

/// Generated CRI v1 messages and clients (`runtime.v1`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

pub use auth::{AuthError, DockerKeyring};
pub use client::{CriClient, PullRequest, RuntimeVersion};
pub use detect::{detect, DetectError, DetectedRuntime, RuntimeKind};
pub use error::{CriError, CriErrorKind};
