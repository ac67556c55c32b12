//! Registry credentials from `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`
//! secrets, chosen for an image the way the kubelet's credential keyring chooses them:
//!
//! - keys may carry a scheme, a path and `/v1/` or `/v2/` suffixes (`https://index.docker.io/v1/`);
//! - a key matches an image when the hosts have as many dot-separated parts and each part matches
//!   as a glob (`*.example.com`), the ports are equal, and the key's path is a prefix of the
//!   image's repository path;
//! - more specific keys come first (reverse lexical order), and every match is returned so the
//!   caller can try each in turn;
//! - an image on Docker Hub (`docker.io/...`) falls back to credentials stored for
//!   `index.docker.io`, Docker's own key for the Hub;
//! - `auth` (base64 `user:password`) is decoded when `username`/`password` are absent.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::proto::AuthConfig;

pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const DOCKER_CFG_TYPE: &str = "kubernetes.io/dockercfg";
pub const DOCKER_CFG_KEY: &str = ".dockercfg";

const DOCKER_HUB_LEGACY_HOST: &str = "index.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("secret {secret} has type {type_:?}; use kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg")]
    UnsupportedType { secret: String, type_: String },
    #[error("secret {secret} has no {key} key")]
    MissingKey { secret: String, key: &'static str },
    #[error("secret {secret}: {key} is not valid JSON: {reason}")]
    Malformed {
        secret: String,
        key: &'static str,
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
    #[serde(default, rename = "registrytoken")]
    registry_token: String,
}

/// Credentials keyed by registry location, in lookup order.
#[derive(Debug, Clone, Default)]
pub struct DockerKeyring {
    /// (normalised key, credentials, the secret they came from)
    entries: Vec<(String, AuthConfig, String)>,
}

impl DockerKeyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the credentials of one secret. `secret` names it in errors (`namespace/name`).
    pub fn add_secret(
        &mut self,
        secret: &str,
        type_: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), AuthError> {
        let (key, nested) = match type_ {
            DOCKER_CONFIG_JSON_TYPE => (DOCKER_CONFIG_JSON_KEY, true),
            DOCKER_CFG_TYPE => (DOCKER_CFG_KEY, false),
            other => {
                return Err(AuthError::UnsupportedType {
                    secret: secret.into(),
                    type_: other.into(),
                })
            }
        };
        let raw = data.get(key).ok_or_else(|| AuthError::MissingKey {
            secret: secret.into(),
            key,
        })?;
        let malformed = |e: serde_json::Error| AuthError::Malformed {
            secret: secret.into(),
            key,
            reason: e.to_string(),
        };
        let auths = if nested {
            serde_json::from_slice::<DockerConfigJson>(raw)
                .map_err(malformed)?
                .auths
        } else {
            serde_json::from_slice::<BTreeMap<String, DockerConfigEntry>>(raw).map_err(malformed)?
        };
        for (location, entry) in auths {
            let key = normalise_key(&location);
            self.entries
                .push((key, to_auth_config(entry), secret.to_string()));
        }
        // Stable sort: equal keys keep the order their secrets were added in.
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(())
    }

    /// Every credential that applies to `image` (a normalised name such as
    /// `docker.io/library/nginx` or `registry.example.com:5000/team/app`), most specific first,
    /// each with the secret it came from. Empty means: pull anonymously.
    pub fn lookup(&self, image: &str) -> Vec<(AuthConfig, String)> {
        let name = image.split(['@']).next().unwrap_or(image);
        let mut found: Vec<(AuthConfig, String)> = self
            .entries
            .iter()
            .filter(|(key, _, _)| url_matches(key, name))
            .map(|(_, auth, secret)| (auth.clone(), secret.clone()))
            .collect();
        if found.is_empty() && is_docker_hub(name) {
            found = self
                .entries
                .iter()
                .filter(|(key, _, _)| key == DOCKER_HUB_LEGACY_HOST)
                .map(|(_, auth, secret)| (auth.clone(), secret.clone()))
                .collect();
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `quay.io/coreos` stays.
fn normalise_key(location: &str) -> String {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path
        .strip_prefix("/v2")
        .or_else(|| path.strip_prefix("/v1"))
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path);
    if path.is_empty() || path == "/" {
        host.to_string()
    } else {
        format!("{host}{path}")
    }
}

fn split_host_path(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn split_port(host: &str) -> (&str, &str) {
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
        _ => (host, ""),
    }
}

/// kubelet's `URLsMatch`: same number of host parts, each a glob match; equal ports; path prefix.
fn url_matches(key: &str, image: &str) -> bool {
    let (key_host, key_path) = split_host_path(key);
    let (image_host, image_path) = split_host_path(image);
    let (key_host, key_port) = split_port(key_host);
    let (image_host, image_port) = split_port(image_host);
    if key_port != image_port {
        return false;
    }
    let key_parts: Vec<&str> = key_host.split('.').collect();
    let image_parts: Vec<&str> = image_host.split('.').collect();
    key_parts.len() == image_parts.len()
        && key_parts
            .iter()
            .zip(&image_parts)
            .all(|(g, t)| glob_match(g, t))
        && image_path.starts_with(key_path)
}

/// `filepath.Match` for one host part: `*` any run of characters, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

fn is_docker_hub(image: &str) -> bool {
    let first = image.split('/').next().unwrap_or_default();
    first == "docker.io" || first == DOCKER_HUB_LEGACY_HOST
}

fn to_auth_config(mut e: DockerConfigEntry) -> AuthConfig {
    if e.username.is_empty() && e.password.is_empty() && !e.auth.is_empty() {
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(e.auth.trim()) {
            if let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':') {
                e.username = u.to_string();
                e.password = p.to_string();
            }
        }
    }
    AuthConfig {
        username: e.username,
        password: e.password,
        auth: e.auth,
        // containerd parses a non-empty server_address as a URL and refuses `host:port` without a
        // scheme ("first path segment in URL cannot contain colon"); the kubelet leaves it empty
        // for secrets too, and the runtime takes the registry from the image reference.
        server_address: String::new(),
        identity_token: e.identity_token,
        registry_token: e.registry_token,
    }
}

#[cfg(test)]
mod tests;
