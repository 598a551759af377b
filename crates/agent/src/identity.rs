//! The agent's directory: `agent.key` (0600, made on this host), `agent.pem`, `ca.pem`,
//! `coordinator` (the URL), `tasks/` (held tasks and unreported results). 0700.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{AgentError, Result};

pub struct Identity {
    pub dir: PathBuf,
    pub url: String,
    pub client: reqwest::blocking::Client,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))
}

/// An HTTPS client with this TLS config (long polls need a long timeout).
pub fn client(tls: rustls::ClientConfig) -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| AgentError::Invalid(format!("HTTPS client: {e}")))
}

impl Identity {
    pub fn load(dir: &Path) -> Result<Identity> {
        let key = dir.join("agent.key");
        if !key.exists() {
            return Err(AgentError::Invalid(format!(
                "{} holds no agent identity: run `kura agent join URL --token T --dir {}` first",
                dir.display(),
                dir.display()
            )));
        }
        let (key, cert, ca) = (read(&key)?, read(&dir.join("agent.pem"))?, read(&dir.join("ca.pem"))?);
        let url = read(&dir.join("coordinator"))?.trim().to_string();
        let tls = kura_fleet::tls::client_config(&ca, Some((&cert, &key)))?;
        Ok(Identity { dir: dir.to_path_buf(), url, client: client(tls)? })
    }

    /// POSTs `body` to `path`; a non-2xx answer is `Refused` with the coordinator's sentence.
    pub fn post<T: Serialize, R: DeserializeOwned>(&self, path: &str, body: &T) -> Result<Option<R>> {
        post(&self.client, &self.url, path, body)
    }
}

pub fn post<T: Serialize, R: DeserializeOwned>(
    client: &reqwest::blocking::Client,
    url: &str,
    path: &str,
    body: &T,
) -> Result<Option<R>> {
    let full = format!("{}{path}", url.trim_end_matches('/'));
    let resp = client
        .post(&full)
        .json(body)
        .send()
        .map_err(|e| AgentError::Unreachable { url: url.to_string(), cause: chain(&e) })?;
    let status = resp.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(None);
    }
    let text = resp.text().map_err(|e| AgentError::Unreachable { url: url.to_string(), cause: chain(&e) })?;
    if !status.is_success() {
        let message = serde_json::from_str::<kura_fleet::proto::ErrorReply>(&text).map(|e| e.error).unwrap_or(text);
        return Err(AgentError::Refused { status: status.as_u16(), message });
    }
    serde_json::from_str(&text).map(Some).map_err(|e| AgentError::Invalid(format!("answer from {full}: {e}")))
}

/// An error with its causes (reqwest hides the TLS reason in its sources).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
