//! Pull credentials from the secrets a NodeImage references (copies the manager keeps in
//! `kruise-daemon-config`), read fresh for every pull round so a rotated secret is used at once.
//! A secret that cannot be read is named in the tag's message rather than silently skipped.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kruise_cri::DockerKeyring;
use kube::{Api, Client};

use crate::desired::TagTask;
use crate::worker::{BoxFuture, Credentials};

pub struct SecretCredentials {
    pub client: Client,
}

impl Credentials for SecretCredentials {
    fn keyring<'a>(&'a self, task: &'a TagTask) -> BoxFuture<'a, (DockerKeyring, Vec<String>)> {
        Box::pin(async move {
            let mut ring = DockerKeyring::new();
            let mut notes = Vec::new();
            for r in &task.pull_secrets {
                let (Some(ns), Some(name)) = (r.namespace.as_deref(), r.name.as_deref()) else {
                    continue;
                };
                let id = format!("{ns}/{name}");
                let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
                match api.get(name).await {
                    Ok(secret) => {
                        let data: BTreeMap<String, Vec<u8>> = secret
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect();
                        if let Err(e) =
                            ring.add_secret(&id, secret.type_.as_deref().unwrap_or("Opaque"), &data)
                        {
                            notes.push(e.to_string());
                        }
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        notes.push(format!("pull secret {id} not found"))
                    }
                    Err(e) => notes.push(format!("pull secret {id} could not be read: {e}")),
                }
            }
            (ring, notes)
        })
    }
}
