//! The container runtime side of kruise-daemon: a CRI v1 image client over the runtime's unix
//! socket (every call with a deadline), detection of which runtime a node runs, classification
//! of runtime errors into causes a user can act on, and registry credentials chosen from
//! `dockerconfigjson`/`dockercfg` secrets the way the kubelet chooses them, and, under
//! containerd, a pull's byte progress from its content store.

pub mod auth;
pub mod client;
pub mod connect;
pub mod detect;
pub mod error;
pub mod feed;
pub mod images;
pub mod progress;

/// Generated CRI v1 messages and clients (`runtime.v1`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

/// Generated client of containerd's content service (the read-only subset pull progress needs).
pub mod content_proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("containerd.services.content.v1");
}

/// Generated client of containerd's leases service (peer copies are leased until pulled).
pub mod leases_proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("containerd.services.leases.v1");
}

/// Generated client of containerd's images service (labels and names: pins, digest pulls named).
pub mod images_proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("containerd.services.images.v1");
}

pub use auth::{AuthError, DockerKeyring};
pub use client::{CriClient, PullRequest, RuntimeVersion};
pub use detect::{detect, DetectError, DetectedRuntime, RuntimeKind};
pub use error::{CriError, CriErrorKind};
pub use feed::{BlobFeed, FeedError, Lease};
pub use images::{ImageStore, StoredImage};
pub use progress::{ContentStore, PullProgress};
