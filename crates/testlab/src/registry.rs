//! `docker-registry` (distribution 2.8) on 127.0.0.1, optionally with htpasswd (bcrypt) auth.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::image::{BuiltImage, PushedImage};
use crate::process::Service;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

pub struct Registry {
    dir: PathBuf,
    port: u16,
    credentials: Option<Credentials>,
    service: Option<Service>,
}

impl Registry {
    /// Starts a registry with its data under `dir`, on a free port.
    pub fn start(dir: &Path, credentials: Option<Credentials>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("data"))?;
        let port = crate::free_port()?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
            data = dir.join("data").display()
        );
        if let Some(c) = &credentials {
            let htpasswd = dir.join("htpasswd");
            let status = Command::new("htpasswd")
                .args(["-Bbc"])
                .arg(&htpasswd)
                .args([&c.username, &c.password])
                .output()?;
            anyhow::ensure!(
                status.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&status.stderr)
            );
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kruise-lab\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config)?;
        let mut registry = Self {
            dir: dir.to_path_buf(),
            port,
            credentials,
            service: None,
        };
        registry.start_again()?;
        Ok(registry)
    }

    /// Starts the registry (again) on the same port with the same data, after [`Registry::stop`].
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(self.dir.join("config.yml"));
        let mut service = Service::spawn("docker-registry", cmd, &self.dir.join("log"))?;
        let port = self.port;
        service.wait_ready(Duration::from_secs(20), || {
            http_status(port, "/") == Some(200)
        })?;
        self.service = Some(service);
        Ok(())
    }

    /// Stops the registry; pulls then fail with "connection refused".
    pub fn stop(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.stop(Duration::from_secs(5));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Pushes a built OCI layout tag with skopeo.
    pub(crate) fn push(
        &self,
        image: &BuiltImage,
        repo: &str,
        tag: &str,
    ) -> anyhow::Result<PushedImage> {
        let reference = format!("{}/{repo}:{tag}", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false"]);
        if let Some(c) = &self.credentials {
            cmd.arg("--dest-creds")
                .arg(format!("{}:{}", c.username, c.password));
        }
        cmd.arg(format!("oci:{}:{tag}", image.layout.display()))
            .arg(format!("docker://{reference}"));
        let out = cmd.output()?;
        anyhow::ensure!(
            out.status.success(),
            "skopeo push of {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(PushedImage {
            reference: reference.clone(),
            digest_reference: format!("{}/{repo}@{}", self.host(), image.manifest_digest),
            manifest_digest: image.manifest_digest.clone(),
            config_digest: image.config_digest.clone(),
            size: image.size,
        })
    }
}

/// The status code of a plain HTTP GET, or None if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
