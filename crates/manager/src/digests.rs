//! One digest per job: the job's tag is resolved once, by the manager, with a manifest `HEAD`
//! (registries such as Docker Hub do not count it as a pull) and the job's own pull secrets, and
//! every NodeImage entry of the job carries that digest, so every node ends on the same image
//! even when the tag moves during the rollout (OpenKruise #1814). When the manager cannot reach
//! the registry, the job says so in `status.digestMessage` and the nodes resolve the tag
//! themselves, as before.

use k8s_openapi::api::core::v1::Secret;
use kruise_api::constants::{REASON_DIGEST_MOVED, REASON_DIGEST_RESOLVED};
use kruise_api::imageref::ImageRef;
use kruise_cri::DockerKeyring;
use kruise_registry::Registries;
use kube::{Api, Client};
use serde_json::{json, Value};

/// What resolving gave: the status fields to merge and the Event to publish.
pub struct Resolved {
    pub status: Value,
    pub event: Option<crate::engine::JobEvent>,
}

/// One resolution the engine asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub uid: String,
    /// `namespace/name` of the job.
    pub key: String,
    pub namespace: String,
    pub name: String,
    /// The job's `spec.image`.
    pub image: String,
    pub pull_secrets: Vec<String>,
    /// The job's `status.desired` (a status written for the first time must carry it).
    pub desired: i32,
    /// The digest the job has (a periodic check), to tell a moved tag.
    pub current: Option<String>,
}

/// Resolves the request's image with its pull secrets.
pub async fn resolve(client: &Client, registries: &Registries, req: &Request) -> Resolved {
    let (keyring, notes) = keyring(client, &req.namespace, &req.pull_secrets).await;
    let answer = match ImageRef::parse(&req.image) {
        Ok(r) => {
            let creds = kruise_registry::credentials_for(&keyring, &r.name());
            registries
                .resolve_digest(&r, &creds)
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    // Only a digest every runtime takes goes into the NodeImages.
    let answer = answer.and_then(|d| {
        if kruise_api::imageref::is_sha256_digest(&d) {
            Ok(d)
        } else {
            Err(format!(
                "the registry answered with the digest {d:?}, not sha256:<64 hex>"
            ))
        }
    });
    outcome(req, answer, &notes)
}

/// What the registry's answer means for the job: its status fields and Event. Pure.
pub fn outcome(req: &Request, answer: Result<String, String>, notes: &[String]) -> Resolved {
    let (image, desired, key) = (&req.image, req.desired, &req.key);
    let event = |warning, reason: &'static str, note: String| {
        Some(crate::engine::JobEvent {
            job: key.to_string(),
            warning,
            reason,
            note,
        })
    };
    let resolved = |digest: &str| {
        json!({"status": {
            "desired": desired,
            "resolvedImage": image,
            "digest": digest,
            "shortDigest": kruise_api::short_digest(digest),
            "digestMessage": null,
        }})
    };
    match (answer, req.current.as_deref()) {
        (Ok(digest), Some(current)) if current == digest => Resolved {
            // A note left by an earlier failed try is stale now.
            status: json!({"status": {"desired": desired, "digestMessage": null}}),
            event: None,
        },
        (Ok(digest), Some(from)) => {
            tracing::info!(job = %key, %image, %from, to = %digest, "the tag moved; rolling the new digest across the nodes");
            let note = format!("{image} moved from {from} to {digest}; the nodes pull the new digest at the job's parallelism");
            Resolved {
                status: resolved(&digest),
                event: event(false, REASON_DIGEST_MOVED, note),
            }
        }
        // A periodic check that could not reach the registry: the nodes keep the digest they have.
        (Err(e), Some(_)) => {
            tracing::warn!(job = %key, %image, error = %e, "could not check whether the tag moved; keeping the digest");
            Resolved {
                status: json!({"status": {"desired": desired}}),
                event: None,
            }
        }
        (Ok(digest), None) => {
            tracing::info!(job = %key, %image, %digest, "resolved the tag; every node pulls this digest");
            let note = format!("{image} resolved to {digest}; every node pulls this digest");
            Resolved {
                status: resolved(&digest),
                event: event(false, REASON_DIGEST_RESOLVED, note),
            }
        }
        (Err(e), None) => {
            tracing::warn!(job = %key, %image, error = %e, "could not resolve the tag; the nodes resolve it");
            let mut why = format!(
                "the manager could not resolve {image} to a digest ({e}); each node resolves the \
                 tag itself, so nodes may end on different images if the tag moves"
            );
            if !notes.is_empty() {
                why.push_str(&format!(" ({})", notes.join("; ")));
            }
            Resolved {
                status: json!({"status": {"desired": desired, "resolvedImage": image, "digestMessage": why}}),
                event: event(true, REASON_DIGEST_RESOLVED, why),
            }
        }
    }
}

/// The job's pull secrets as a keyring, and a note per secret that could not be used.
async fn keyring(
    client: &Client,
    namespace: &str,
    names: &[String],
) -> (DockerKeyring, Vec<String>) {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut keyring = DockerKeyring::new();
    let mut notes = Vec::new();
    for name in names {
        match crate::writer::timed(api.get_opt(name)).await {
            Ok(Some(s)) => {
                let type_ = s.type_.clone().unwrap_or_default();
                let data = s.data.unwrap_or_default();
                let data: std::collections::BTreeMap<String, Vec<u8>> =
                    data.into_iter().map(|(k, v)| (k, v.0)).collect();
                if let Err(e) = keyring.add_secret(name, &type_, &data) {
                    notes.push(format!("pull secret {name}: {e}"));
                }
            }
            Ok(None) => notes.push(format!("pull secret {name} not found")),
            Err(e) => notes.push(format!("pull secret {name}: {e}")),
        }
    }
    (keyring, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(current: Option<&str>) -> Request {
        Request {
            uid: "u".into(),
            key: "ns/j".into(),
            namespace: "ns".into(),
            name: "j".into(),
            image: "nginx:1.25".into(),
            pull_secrets: vec![],
            desired: 3,
            current: current.map(str::to_string),
        }
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn a_first_resolution_writes_the_digest_for_the_image() {
        let r = outcome(&req(None), Ok(D1.into()), &[]);
        assert_eq!(r.status["status"]["digest"], D1);
        assert_eq!(r.status["status"]["shortDigest"], "sha256:111111111111");
        assert_eq!(r.status["status"]["resolvedImage"], "nginx:1.25");
        assert_eq!(r.status["status"]["desired"], 3);
        assert_eq!(r.event.unwrap().reason, REASON_DIGEST_RESOLVED);
    }

    #[test]
    fn a_moved_tag_says_from_which_digest_to_which() {
        let r = outcome(&req(Some(D1)), Ok(D2.into()), &[]);
        assert_eq!(r.status["status"]["digest"], D2);
        let e = r.event.unwrap();
        assert_eq!(e.reason, REASON_DIGEST_MOVED);
        assert!(e.note.contains(D1) && e.note.contains(D2), "{}", e.note);
        // Unchanged, or the registry away during a check: nothing moves, nothing is said.
        for answer in [Ok(D1.to_string()), Err("unreachable".to_string())] {
            let r = outcome(&req(Some(D1)), answer, &[]);
            assert!(r.event.is_none());
            assert!(r.status["status"].get("digest").is_none());
        }
    }

    #[test]
    fn an_unreachable_registry_is_said_once_with_the_secrets_notes() {
        let notes = vec!["pull secret s not found".to_string()];
        let r = outcome(&req(None), Err("connection refused".into()), &notes);
        let why = r.status["status"]["digestMessage"].as_str().unwrap();
        assert!(
            why.contains("connection refused") && why.contains("pull secret s not found"),
            "{why}"
        );
        assert!(r.status["status"].get("digest").is_none());
        assert!(r.event.unwrap().warning);
    }
}
