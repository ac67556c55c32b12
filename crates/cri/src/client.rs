//! One method per CRI call the daemon makes, each with a deadline. Metadata calls get a short
//! default deadline; `PullImage` takes the caller's (the tag's `timeoutSeconds`), which tonic sends
//! to the runtime as `grpc-timeout` so the runtime stops pulling too, and enforces locally.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::Channel;

use crate::connect::MAX_DECODE_MESSAGE_SIZE;
use crate::error::CriError;
use crate::proto::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    AuthConfig, FilesystemUsage, Image, ImageFsInfoRequest, ImageSpec, ImageStatusRequest,
    ListImagesRequest, PodSandboxConfig, PodSandboxMetadata, PullImageRequest, RemoveImageRequest,
    VersionRequest,
};

/// Deadline of ImageStatus, ListImages, RemoveImage, ImageFsInfo and Version by default.
pub const DEFAULT_METADATA_TIMEOUT: Duration = Duration::from_secs(30);
/// The CRI API version this client speaks.
pub const CRI_API_VERSION: &str = "v1";

/// What the runtime says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// e.g. `containerd`.
    pub runtime_name: String,
    /// e.g. `1.6.20~ds1`.
    pub runtime_version: String,
    /// e.g. `v1`.
    pub runtime_api_version: String,
}

/// A pull: the reference, credentials, and the sandbox labels and annotations to pass along.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    pub image: String,
    pub auth: Option<AuthConfig>,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

/// A CRI client on one runtime socket. Cheap to clone: clones share one connection.
#[derive(Debug, Clone)]
pub struct CriClient {
    channel: Channel,
    images: ImageServiceClient<Channel>,
    runtime: RuntimeServiceClient<Channel>,
    metadata_timeout: Duration,
    endpoint: String,
}

impl CriClient {
    pub fn new(channel: Channel, endpoint: impl Into<String>) -> Self {
        Self {
            channel: channel.clone(),
            images: ImageServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_DECODE_MESSAGE_SIZE),
            runtime: RuntimeServiceClient::new(channel)
                .max_decoding_message_size(MAX_DECODE_MESSAGE_SIZE),
            metadata_timeout: DEFAULT_METADATA_TIMEOUT,
            endpoint: endpoint.into(),
        }
    }

    /// Overrides the deadline of metadata calls.
    pub fn with_metadata_timeout(mut self, timeout: Duration) -> Self {
        self.metadata_timeout = timeout;
        self
    }

    /// The connection, for other services on the same socket (containerd's content store).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The endpoint this client dials, as `unix:///…`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        req
    }

    pub async fn version(&self) -> Result<RuntimeVersion, CriError> {
        let req = self.request(
            VersionRequest {
                version: CRI_API_VERSION.into(),
            },
            self.metadata_timeout,
        );
        let resp = self
            .runtime
            .clone()
            .version(req)
            .await
            .map_err(|s| CriError::from_status("Version", &s))?;
        let v = resp.into_inner();
        Ok(RuntimeVersion {
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            runtime_api_version: v.runtime_api_version,
        })
    }

    /// Pulls `pull.image` and returns the runtime's image reference (the image ID). `timeout`
    /// bounds the whole call; without one only dropping the future stops it, which also cancels
    /// the call at the runtime.
    pub async fn pull_image(
        &self,
        pull: PullRequest,
        timeout: Option<Duration>,
    ) -> Result<String, CriError> {
        let msg = PullImageRequest {
            image: Some(image_spec(&pull.image)),
            auth: pull.auth,
            sandbox_config: Some(PodSandboxConfig {
                // Some runtimes dereference the metadata; OpenKruise sends a sandbox config for
                // the same reason.
                metadata: Some(PodSandboxMetadata::default()),
                labels: pull.labels,
                annotations: pull.annotations,
            }),
        };
        let mut req = tonic::Request::new(msg);
        if let Some(t) = timeout {
            req.set_timeout(t);
        }
        let resp = self
            .images
            .clone()
            .pull_image(req)
            .await
            .map_err(|s| CriError::from_status("PullImage", &s))?;
        let image_ref = resp.into_inner().image_ref;
        if image_ref.is_empty() {
            return Err(CriError::protocol(
                "PullImage",
                format!(
                    "runtime returned an empty image reference for {}",
                    pull.image
                ),
            ));
        }
        Ok(image_ref)
    }

    /// The image if the runtime has it (by tag, digest reference or ID), `None` otherwise.
    pub async fn image_status(&self, image: &str) -> Result<Option<Image>, CriError> {
        let req = self.request(
            ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            },
            self.metadata_timeout,
        );
        let resp = self
            .images
            .clone()
            .image_status(req)
            .await
            .map_err(|s| CriError::from_status("ImageStatus", &s))?;
        Ok(resp.into_inner().image)
    }

    pub async fn list_images(&self) -> Result<Vec<Image>, CriError> {
        let req = self.request(ListImagesRequest { filter: None }, self.metadata_timeout);
        let resp = self
            .images
            .clone()
            .list_images(req)
            .await
            .map_err(|s| CriError::from_status("ListImages", &s))?;
        Ok(resp.into_inner().images)
    }

    /// Removes the image (all its tags); removing a missing image succeeds.
    pub async fn remove_image(&self, image: &str) -> Result<(), CriError> {
        let req = self.request(
            RemoveImageRequest {
                image: Some(image_spec(image)),
            },
            self.metadata_timeout,
        );
        self.images
            .clone()
            .remove_image(req)
            .await
            .map_err(|s| CriError::from_status("RemoveImage", &s))?;
        Ok(())
    }

    pub async fn image_fs_info(&self) -> Result<Vec<FilesystemUsage>, CriError> {
        let req = self.request(ImageFsInfoRequest {}, self.metadata_timeout);
        let resp = self
            .images
            .clone()
            .image_fs_info(req)
            .await
            .map_err(|s| CriError::from_status("ImageFsInfo", &s))?;
        Ok(resp.into_inner().image_filesystems)
    }
}

fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
