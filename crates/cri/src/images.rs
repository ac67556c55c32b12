//! containerd's image records in the CRI namespace (`k8s.io`), through its images service on the
//! runtime's socket: what CRI cannot do. A label pins an image against the kubelet's image GC
//! (`io.cri-containerd.pinned=pinned`, read live by containerd 1.7.10+ and 2.x), and an image
//! pulled by digest gets its tag's name (`name:tag` pointing at the same target), which is what
//! CRI's own pull of `name:tag` would have left, so the kubelet finds `name:tag` without pulling.
//! CRI sees both changes through containerd's `/images/` events.

use std::collections::HashMap;
use std::time::Duration;

use tonic::transport::Channel;

use crate::error::CriError;
use crate::images_proto::{
    images_client::ImagesClient, CreateImageRequest, FieldMask, GetImageRequest, Image,
    ListImagesRequest, UpdateImageRequest,
};
use crate::progress::{err, request};

/// containerd's CRI plugin marks the images it manages with this label; an image named here
/// carries it too, as CRI's pull would have.
pub const CRI_MANAGED_LABEL: (&str, &str) = ("io.cri-containerd.image", "managed");

/// One image record: its name, labels and the digest and size of what it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub target_digest: String,
    pub target_media_type: String,
    pub target_size: i64,
}

impl From<Image> for StoredImage {
    fn from(i: Image) -> Self {
        let target = i.target.unwrap_or_default();
        Self {
            name: i.name,
            labels: i.labels,
            target_digest: target.digest,
            target_media_type: target.media_type,
            target_size: target.size,
        }
    }
}

/// containerd's images service in the CRI namespace.
#[derive(Debug, Clone)]
pub struct ImageStore {
    client: ImagesClient<Channel>,
}

/// Image record calls are small; this bounds each one.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl ImageStore {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: ImagesClient::new(channel),
        }
    }

    /// Whether the runtime serves the images service (containerd does, CRI-O does not).
    pub async fn available(&self) -> bool {
        let r = timed(ListImagesRequest {
            filters: vec!["name==kruise.invalid/probe".into()],
        });
        match self.client.clone().list(r).await {
            Ok(_) => true,
            Err(s) => s.code() != tonic::Code::Unimplemented,
        }
    }

    /// The image named `name` (fully qualified: `docker.io/library/nginx:1.25`), if any.
    pub async fn get(&self, name: &str) -> Result<Option<StoredImage>, CriError> {
        let r = timed(GetImageRequest { name: name.into() });
        match self.client.clone().get(r).await {
            Ok(resp) => Ok(resp.into_inner().image.map(StoredImage::from)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(err("images.Get")(s)),
        }
    }

    /// Images carrying `label` with `value`.
    pub async fn with_label(&self, label: &str, value: &str) -> Result<Vec<StoredImage>, CriError> {
        let r = timed(ListImagesRequest {
            filters: vec![format!("labels.\"{label}\"=={value}")],
        });
        let resp = self
            .client
            .clone()
            .list(r)
            .await
            .map_err(err("images.List"))?;
        Ok(resp
            .into_inner()
            .images
            .into_iter()
            .map(StoredImage::from)
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) each label, leaving the image's other labels as they
    /// are. `Ok(false)` when no image has that name.
    pub async fn set_labels(
        &self,
        name: &str,
        labels: &[(&str, Option<&str>)],
    ) -> Result<bool, CriError> {
        // containerd (1.7) dereferences the target of every image it is sent, whatever the mask
        // says, and crashes on a missing one: always send the current target.
        let Some(current) = self.get(name).await? else {
            return Ok(false);
        };
        let image = Image {
            name: name.into(),
            labels: labels
                .iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
                .collect(),
            target: Some(descriptor(&current)),
            ..Default::default()
        };
        let mask = FieldMask {
            paths: labels.iter().map(|(k, _)| format!("labels.{k}")).collect(),
        };
        let r = timed(UpdateImageRequest {
            image: Some(image),
            update_mask: Some(mask),
        });
        match self.client.clone().update(r).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(err("images.Update")(s)),
        }
    }

    /// Makes `name` point at what `like` points at (creating it, or, with `move_existing`,
    /// moving it), labelled as CRI labels what it pulls. Returns whether anything changed;
    /// `Ok(None)` when `like` is missing.
    pub async fn name_like(
        &self,
        name: &str,
        like: &str,
        move_existing: bool,
    ) -> Result<Option<bool>, CriError> {
        let Some(source) = self.get(like).await? else {
            return Ok(None);
        };
        let target = descriptor(&source);
        let managed = HashMap::from([(
            CRI_MANAGED_LABEL.0.to_string(),
            CRI_MANAGED_LABEL.1.to_string(),
        )]);
        match self.get(name).await? {
            Some(current) if current.target_digest == source.target_digest => Ok(Some(false)),
            // Named since (a kubelet pull of a newer image under the tag): left as it is.
            Some(_) if !move_existing => Ok(Some(false)),
            Some(_) => {
                let image = Image {
                    name: name.into(),
                    target: Some(target),
                    labels: managed,
                    ..Default::default()
                };
                let mask = FieldMask {
                    paths: vec!["target".into(), format!("labels.{}", CRI_MANAGED_LABEL.0)],
                };
                let r = timed(UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(mask),
                });
                self.client
                    .clone()
                    .update(r)
                    .await
                    .map_err(err("images.Update"))?;
                Ok(Some(true))
            }
            None => {
                let image = Image {
                    name: name.into(),
                    target: Some(target),
                    labels: managed,
                    ..Default::default()
                };
                let r = timed(CreateImageRequest { image: Some(image) });
                match self.client.clone().create(r).await {
                    Ok(_) => Ok(Some(true)),
                    // Named meanwhile (a kubelet pull of the same tag): look again next time.
                    Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(Some(false)),
                    Err(s) => Err(err("images.Create")(s)),
                }
            }
        }
    }
}

fn descriptor(image: &StoredImage) -> crate::images_proto::Descriptor {
    crate::images_proto::Descriptor {
        media_type: image.target_media_type.clone(),
        digest: image.target_digest.clone(),
        size: image.target_size,
        annotations: HashMap::new(),
    }
}

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut r = request(message);
    r.set_timeout(CALL_TIMEOUT);
    r
}
