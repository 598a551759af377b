//! `kura agent join URL --token T`: make a key pair here, check the coordinator
//! against the CA fingerprint in the token, send the public key with the token,
//! store the certificate it signs.

use std::path::Path;

use kura_fleet::pki::{fingerprint, generate_client_key, pem_to_der};
use kura_fleet::proto::{JoinReply, JoinRequest, PROTOCOL_VERSION};
use kura_fleet::token::Token;

use crate::identity::{client, post};
use crate::{AgentError, Result};
use kura_store::private_file;

/// Joins and writes the identity into `dir`; returns the coordinator's answer.
pub fn join(url: Option<&str>, token: &str, dir: &Path) -> Result<JoinReply> {
    let token = Token::parse(token)?;
    let url = url
        .map(str::to_string)
        .or_else(|| token.url.clone())
        .ok_or_else(|| AgentError::Invalid("give the coordinator's URL (the token carries none)".into()))?;
    if !url.starts_with("https://") {
        return Err(AgentError::Invalid(format!("{url:?} is not an https:// URL")));
    }
    if dir.join("agent.pem").exists() {
        return Err(AgentError::Invalid(format!(
            "{} already holds an identity: use another --dir, or remove it after revoking it",
            dir.display()
        )));
    }
    let (key_pem, public_key) = generate_client_key()?;
    let http = client(kura_fleet::tls::pinned_client(token.ca_fingerprint)?)?;
    let req = JoinRequest {
        version: PROTOCOL_VERSION,
        secret: hex::encode(token.secret),
        public_key: hex::encode(public_key),
    };
    let reply: JoinReply = post(&http, &url, "/v1/join", &req)?
        .ok_or_else(|| AgentError::Invalid("the coordinator sent an empty answer".into()))?;
    if fingerprint(&pem_to_der(&reply.ca_pem)?) != token.ca_fingerprint {
        return Err(AgentError::Invalid("the CA the coordinator sent does not match the token's fingerprint".into()));
    }
    private_file::create_dir(dir)?;
    private_file::write(&dir.join("agent.key"), key_pem.as_bytes())?;
    private_file::write(&dir.join("agent.pem"), reply.certificate_pem.as_bytes())?;
    private_file::write(&dir.join("ca.pem"), reply.ca_pem.as_bytes())?;
    private_file::write(&dir.join("coordinator"), url.as_bytes())?;
    Ok(reply)
}
