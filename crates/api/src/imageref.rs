//! Image references: parse (distribution grammar, `docker.io/library` expansion), normalise to the
//! NodeImage key and tag OpenKruise uses, and turn a NodeImage entry back into a pullable reference.
//!
//! OpenKruise stores a digest reference as the tag `sha256:…` and then joins `name:sha256:…`, which
//! no runtime accepts (its issue #2534). Here a digest keeps its `@`: `name@sha256:…` is stored as
//! tag `sha256:…` and `name:v1@sha256:…` as tag `v1@sha256:…`, and [`pull_reference`] rebuilds
//! exactly the reference the user wrote, in its normalised form.

use std::fmt;

use oci_spec::distribution::{ParseError, Reference};

const DOCKER_HUB: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";

/// The distribution reference grammar as one anchored RE2/`regex` pattern, for CEL rules in the
/// CRDs. It avoids backslashes so that it survives CEL string literals unescaped. Digests are
/// restricted to the algorithms runtimes verify, with their exact lower-case hex lengths.
pub const IMAGE_REFERENCE_PATTERN: &str = concat!(
    "^",
    // optional domain: components joined by dots, optional port, then a slash
    "(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])",
    "(?:[.](?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*",
    "(?::[0-9]+)?/)?",
    // lower-case path components
    "[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*",
    "(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*)*",
    // optional tag, optional digest
    "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?",
    "(?:@(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}))?",
    "$"
);

/// Why a string is not an image reference, in words that say how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} contains upper-case letters in its repository name; repository names must be lower-case")]
    Uppercase(String),
    #[error("image reference {0:?} has a malformed digest; use sha256: followed by 64 lower-case hex digits")]
    Digest(String),
    #[error("image reference {0:?} has a repository name longer than 255 characters")]
    TooLong(String),
    #[error("image reference {0:?} is not valid; expected [registry[:port]/]name[:tag][@sha256:<64 hex>]")]
    Format(String),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses `s` the way the Docker CLI and containerd do: a missing registry means `docker.io`,
    /// a one-component name on Docker Hub gets `library/`, and a reference with neither tag nor
    /// digest gets `latest`.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let reference = Reference::try_from(s).map_err(|e| classify(s, e))?;
        if let Some(d) = reference.digest() {
            let hex = d.split_once(':').map(|(_, h)| h).unwrap_or_default();
            if !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(ImageRefError::Digest(s.to_string()));
            }
        }
        let registry = match reference.registry() {
            "index.docker.io" => DOCKER_HUB.to_string(),
            r => r.to_string(),
        };
        // oci-spec leaves a bare tag on digest references unless the user wrote one.
        let tag = match (reference.tag(), reference.digest()) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository: reference.repository().to_string(),
            tag,
            digest: reference.digest().map(str::to_string),
        })
    }

    /// Rebuilds a reference from a NodeImage image key and one of its tags.
    pub fn from_node_image(key: &str, tag: &str) -> Result<Self, ImageRefError> {
        Self::parse(&pull_reference(key, tag))
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The NodeImage `spec.images` key: Docker's "familiar" name (`nginx`, `team/app`,
    /// `registry.example.com:5000/team/app`), as OpenKruise keys it.
    pub fn node_image_key(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The NodeImage tag string: the tag, the digest, or `tag@digest`.
    pub fn node_image_tag(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => format!("{t}@{d}"),
            (None, Some(d)) => d.clone(),
            (Some(t), None) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// `registry/repository`, the name registries and credential lookups use.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// True when the runtime should be asked for this image by digest.
    pub fn is_digest(&self) -> bool {
        self.digest.is_some()
    }
}

impl fmt::Display for ImageRef {
    /// The fully qualified, pullable form: `docker.io/library/nginx:1.25`, `host:5000/a@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Joins a NodeImage key and tag into a reference string: `key@sha256:…` for a digest tag,
/// `key:tag` otherwise (which also covers `key:v1@sha256:…`).
pub fn pull_reference(key: &str, tag: &str) -> String {
    if is_digest_tag(tag) {
        format!("{key}@{tag}")
    } else {
        format!("{key}:{tag}")
    }
}

/// `sha256:` and 64 lower-case hex digits: a digest the manager writes into NodeImages.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A NodeImage tag that is a bare digest (`sha256:…`), not a tag name.
pub fn is_digest_tag(tag: &str) -> bool {
    // Tag names cannot contain ':', digests always do.
    !tag.contains('@') && tag.contains(':')
}

fn classify(s: &str, e: ParseError) -> ImageRefError {
    match e {
        ParseError::NameEmpty => ImageRefError::Empty,
        ParseError::NameTooLong => ImageRefError::TooLong(s.to_string()),
        ParseError::DigestInvalidFormat
        | ParseError::DigestInvalidLength
        | ParseError::DigestUnsupported => ImageRefError::Digest(s.to_string()),
        ParseError::NameContainsUppercase => ImageRefError::Uppercase(s.to_string()),
        _ => {
            if let Some((name, _)) = s.split_once('@') {
                if Reference::try_from(name).is_ok() {
                    return ImageRefError::Digest(s.to_string());
                }
            }
            let name = s.split(['@']).next().unwrap_or(s);
            let lowered = format!("{}{}", name.to_lowercase(), &s[name.len()..]);
            if lowered != s && Reference::try_from(lowered.as_str()).is_ok() {
                ImageRefError::Uppercase(s.to_string())
            } else {
                ImageRefError::Format(s.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests;
