//! What kruise reads from registries, through `oci-client` (ORAS): a tag's digest, by one
//! manifest `HEAD` (which registries such as Docker Hub do not count as a pull), and an image's
//! compressed size for this node's platform, from its manifest. Credentials are tried in turn,
//! then anonymous access, as the kubelet tries pull secrets. Plain HTTP is used for loopback
//! registries (as Docker and containerd do) and for the hosts given as insecure; HTTPS otherwise.

use std::time::Duration;

use kruise_api::imageref::ImageRef;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// One credential for a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// A registry token (`registrytoken` in a docker config).
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// Why the registry gave no answer, in words that say what to check.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the registry refused the credentials (or asked for some and got none): {0}")]
    Unauthorized(String),
    #[error("the registry has no such image: {0}")]
    NotFound(String),
    #[error("the registry could not be reached: {0}")]
    Unreachable(String),
    #[error("no answer from the registry within {0:?}")]
    Timeout(Duration),
    #[error("the registry's answer could not be used: {0}")]
    Other(String),
}

impl RegistryError {
    fn from_oci(e: OciDistributionError) -> Self {
        let text = e.to_string();
        match &e {
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => Self::Unauthorized(text),
            OciDistributionError::ImageManifestNotFoundError(_) => Self::NotFound(text),
            OciDistributionError::ServerError { code: 404, .. } => Self::NotFound(text),
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => Self::Unauthorized(text),
            OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
                Self::Unreachable(text)
            }
            _ if text.contains("401") || text.contains("UNAUTHORIZED") => Self::Unauthorized(text),
            _ if text.contains("404") || text.contains("MANIFEST_UNKNOWN") => Self::NotFound(text),
            _ => Self::Other(text),
        }
    }

    fn unauthorized(&self) -> bool {
        matches!(self, Self::Unauthorized(_))
    }
}

/// An image's compressed bytes for one platform: its config and layers, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSize {
    /// The platform manifest's digest.
    pub manifest: String,
    /// `(digest, size)` of the config and each layer.
    pub blobs: Vec<(String, u64)>,
}

impl ImageSize {
    pub fn total(&self) -> u64 {
        self.blobs.iter().map(|(_, s)| s).sum()
    }
}

/// Reads from registries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registries {
    /// Hosts (`host:port`) spoken to over plain HTTP besides loopback ones.
    insecure: Vec<String>,
    timeout: Duration,
}

/// Each registry call's deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Registries {
    pub fn new(insecure: Vec<String>) -> Self {
        // reqwest's rustls needs a process-wide crypto provider; kube uses ring too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            insecure,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// One client per call: `oci-client` keeps the first credential it was given per registry,
    /// and different jobs bring different secrets.
    fn client(&self, registry: &str) -> Client {
        let mut plain = self.insecure.clone();
        if is_loopback(registry) {
            plain.push(registry.to_string());
        }
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(self.timeout),
            user_agent: concat!("kruise/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    /// The digest `image` (a tag reference) points at now: `sha256:…`.
    pub async fn resolve_digest(
        &self,
        image: &ImageRef,
        credentials: &[Credential],
    ) -> Result<String, RegistryError> {
        let reference = reference(image)?;
        self.with_credentials(credentials, |auth| {
            let client = self.client(image.registry());
            let reference = reference.clone();
            async move { client.fetch_manifest_digest(&reference, &auth).await }
        })
        .await
    }

    /// The compressed size of `image` for this machine's platform (an index is resolved to it).
    pub async fn image_size(
        &self,
        image: &ImageRef,
        credentials: &[Credential],
    ) -> Result<ImageSize, RegistryError> {
        let reference = reference(image)?;
        let (manifest, digest) = self
            .with_credentials(credentials, |auth| {
                let client = self.client(image.registry());
                let reference = reference.clone();
                async move { client.pull_image_manifest(&reference, &auth).await }
            })
            .await?;
        let blobs = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| (d.digest.clone(), d.size.max(0) as u64))
            .collect();
        Ok(ImageSize {
            manifest: digest,
            blobs,
        })
    }

    /// Runs `call` with each credential in turn while the registry refuses them, then anonymously.
    async fn with_credentials<T, F, Fut>(
        &self,
        credentials: &[Credential],
        call: F,
    ) -> Result<T, RegistryError>
    where
        F: Fn(RegistryAuth) -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let auths = credentials
            .iter()
            .map(|c| match c {
                Credential::Basic { username, password } => {
                    RegistryAuth::Basic(username.clone(), password.clone())
                }
                Credential::Bearer(t) => RegistryAuth::Bearer(t.clone()),
            })
            .chain(std::iter::once(RegistryAuth::Anonymous));
        let mut last = None;
        for auth in auths {
            let answer = tokio::time::timeout(self.timeout, call(auth)).await;
            let error = match answer {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => RegistryError::from_oci(e),
                Err(_) => RegistryError::Timeout(self.timeout),
            };
            if !error.unauthorized() {
                return Err(error);
            }
            last = Some(error);
        }
        Err(last.expect("anonymous access is always tried"))
    }
}

fn reference(image: &ImageRef) -> Result<Reference, RegistryError> {
    let text = image.to_string();
    Reference::try_from(text.as_str())
        .map_err(|e| RegistryError::Other(format!("{text} is not a reference: {e}")))
}

/// `localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The credentials of `keyring` (pull secrets, chosen as the kubelet chooses them) for the image
/// `name` (`registry/repository`), most specific first.
pub fn credentials_for(keyring: &kruise_cri::DockerKeyring, name: &str) -> Vec<Credential> {
    keyring
        .lookup(name)
        .into_iter()
        .filter_map(|(a, _)| {
            if !a.registry_token.is_empty() {
                Some(Credential::Bearer(a.registry_token))
            } else if !a.username.is_empty() || !a.password.is_empty() {
                Some(Credential::Basic {
                    username: a.username,
                    password: a.password,
                })
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_registries_are_spoken_to_over_plain_http() {
        for (registry, plain) in [
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("registry.example.com", false),
            ("10.0.0.1:5000", false),
            ("docker.io", false),
        ] {
            assert_eq!(super::is_loopback(registry), plain, "{registry}");
        }
    }

    #[test]
    fn credentials_never_print_their_secret() {
        let c = super::Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
