//! One digest per job: the job's tag is resolved once, by the manager, with a manifest `HEAD`
//! (registries such as Docker Hub do not count it as a pull) and the job's own pull secrets, and
//! every NodeImage entry of the job carries that digest, so every node ends on the same image
//! even when the tag moves during the rollout (OpenKruise #1814). When the manager cannot reach
//! the registry, the job says so in `status.digestMessage` and the nodes resolve the tag
//! themselves, as before.

use k8s_openapi::api::core::v1::Secret;
use kruise_api::imageref::ImageRef;
use kruise_cri::DockerKeyring;
use kruise_registry::Registries;
use kube::{Api, Client};
use serde_json::{json, Value};

/// What resolving gave: the status fields to merge and the Event to publish.
pub struct Resolved {
    pub status: Value,
    pub event: crate::engine::JobEvent,
}

/// Resolves `image` (a tag reference) with the secrets `pull_secrets` of `namespace`.
pub async fn resolve(
    client: &Client,
    registries: &Registries,
    key: &str,
    namespace: &str,
    image: &str,
    pull_secrets: &[String],
    desired: i32,
) -> Resolved {
    let (keyring, notes) = keyring(client, namespace, pull_secrets).await;
    let answer = match ImageRef::parse(image) {
        Ok(r) => {
            let creds = kruise_registry::credentials_for(&keyring, &r.name());
            registries
                .resolve_digest(&r, &creds)
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let event = |warning, reason: &'static str, note: String| crate::engine::JobEvent {
        job: key.to_string(),
        warning,
        reason,
        note,
    };
    match answer {
        Ok(digest) => {
            tracing::info!(job = key, %image, %digest, "resolved the tag; every node pulls this digest");
            Resolved {
                status: json!({"status": {
                    "desired": desired,
                    "digest": digest,
                    "shortDigest": kruise_api::short_digest(&digest),
                    "digestMessage": null,
                }}),
                event: event(
                    false,
                    kruise_api::constants::REASON_DIGEST_RESOLVED,
                    format!("{image} resolved to {digest}; every node pulls this digest"),
                ),
            }
        }
        Err(e) => {
            let mut why = format!(
                "the manager could not resolve {image} to a digest ({e}); each node resolves the \
                 tag itself, so nodes may end on different images if the tag moves"
            );
            if !notes.is_empty() {
                why.push_str(&format!(" ({})", notes.join("; ")));
            }
            tracing::warn!(job = key, %image, error = %e, "could not resolve the tag; the nodes resolve it");
            Resolved {
                status: json!({"status": {"desired": desired, "digestMessage": why}}),
                event: event(
                    true,
                    kruise_api::constants::REASON_DIGEST_RESOLVED,
                    why.clone(),
                ),
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
