//! Nodes that copy images from each other, for the peer-to-peer tests and benchmark: each node
//! gets a containerd of its own (its own root, state and socket) and a daemon serving blobs on
//! a loopback address of its own (`127.A.B.n`, the Node's InternalIP), all on one port, as
//! daemons on real nodes share `--peer-port`. The daemons present a token of a ServiceAccount
//! the test creates, with an audience of the test's own, requested from the API server as the
//! kubelet requests projected tokens.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kruise_testlab::Containerd;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use crate::system::{System, DEADLINE};
use crate::{DaemonOptions, Process};

/// One test's peer settings: the port every daemon serves on, the loopback network its nodes
/// live in, and the daemons' service account and token.
pub struct PeerSetup {
    pub port: u16,
    /// `127.A.B.` of this test (random, so tests running at once never share an address).
    pub network: String,
    pub audience: String,
    /// `namespace:name` of the daemons' ServiceAccount.
    pub account: String,
    pub token_file: PathBuf,
    next_host: u8,
}

impl PeerSetup {
    /// The manager's flags for this setup.
    pub fn manager_args(&self, registry_budget: u32, fanout: u32) -> Vec<String> {
        vec![
            "--peer-port".into(),
            self.port.to_string(),
            "--registry-budget".into(),
            registry_budget.to_string(),
            "--peer-fanout".into(),
            fanout.to_string(),
        ]
    }

    /// A daemon's peer flags, serving on `ip`.
    pub fn daemon_args(&self, ip: &str) -> Vec<String> {
        [
            ("--peer-port", self.port.to_string()),
            ("--peer-bind-address", ip.to_string()),
            ("--peer-audience", self.audience.clone()),
            ("--peer-service-accounts", self.account.clone()),
            ("--peer-token-file", self.token_file.display().to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }
}

/// A node of a peer test.
pub struct PeerNode {
    pub name: String,
    pub ip: String,
    /// Its entry in [`System::runtimes`].
    pub runtime: usize,
}

impl System {
    /// Creates the daemons' ServiceAccount (labelled, in the test's namespace) and writes a
    /// token for it with the test's audience.
    pub async fn peer_setup(&self) -> PeerSetup {
        let name = self.cluster.name("daemon");
        let sa: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": self.cluster.labelled(json!({}))},
        }))
        .unwrap();
        let api: Api<ServiceAccount> = Api::namespaced(self.cluster.client.clone(), &self.ns);
        api.create(&PostParams::default(), &sa)
            .await
            .expect("the daemons' ServiceAccount created");
        let audience = self.cluster.name("peer");
        let token = self.token_for(&name, &audience).await;
        let token_file = self.logs.path().join("peer-token");
        std::fs::write(&token_file, token).expect("token file written");
        PeerSetup {
            port: kruise_testlab::free_port().expect("a free port"),
            network: format!("127.{}.{}.", fastrand::u8(1..=254), fastrand::u8(1..=254)),
            audience,
            account: format!("{}:{name}", self.ns),
            token_file,
            next_host: 1,
        }
    }

    /// A token of the ServiceAccount `name` in the test's namespace for `audience`.
    pub async fn token_for(&self, name: &str, audience: &str) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.cluster.client.clone(), &self.ns);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_string()],
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        api.create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("a token for the ServiceAccount")
            .status
            .expect("the TokenRequest has a status")
            .token
    }

    /// A Ready Node at the next address of `setup`'s network, with a containerd of its own
    /// (trusting the registries and proxies on `registry_ports`) and a daemon serving peers.
    pub async fn add_peer_node(
        &mut self,
        setup: &mut PeerSetup,
        prefix: &str,
        labels: Value,
        registry_ports: &[u16],
        extra: &[&str],
    ) -> PeerNode {
        let name = self.cluster.name(prefix);
        let ip = format!("{}{}", setup.network, setup.next_host);
        setup.next_host += 1;
        let dir = self.logs.path().join(format!("containerd-{name}"));
        std::fs::create_dir_all(&dir).expect("containerd directory");
        let runtime = Containerd::start(&dir, registry_ports).expect("a containerd for the node");
        let endpoint = format!("unix://{}", runtime.socket().display());
        self.runtimes.push(runtime);
        self.create_node_at(&name, labels, &ip).await;
        let mut opts = DaemonOptions::local(&name, endpoint);
        opts.extra_args = setup.daemon_args(&ip);
        opts.extra_args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Process::daemon(self.cluster.kubeconfig(), &opts, self.logs.path());
        d.wait_ready(DEADLINE).await;
        self.daemons.push(d);
        PeerNode {
            name,
            ip,
            runtime: self.runtimes.len() - 1,
        }
    }

    /// Creates the Ready Node `name` with InternalIP `ip` and waits for the manager to create its
    /// NodeImage (or, without a manager, creates it).
    async fn create_node_at(&self, name: &str, labels: Value, ip: &str) {
        self.cluster.create_node(name, labels).await;
        // A real API server ignores the status of a created Node: it is set through /status.
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z", "reason": "KubeletReady", "message": "e2e"}],
        }});
        let nodes: Api<Node> = Api::all(self.cluster.client.clone());
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status patched");
        if self.manager.is_none() {
            self.images.create(name).await;
            return;
        }
        crate::wait_for(
            &format!("the manager to create NodeImage {name}"),
            DEADLINE,
            || async {
                self.images
                    .api
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .map(|_| ())
            },
        )
        .await;
    }
}
