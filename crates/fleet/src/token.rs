//! Enrolment tokens, as `kubeadm join` has them: one string carrying a one-time
//! secret, the SHA-256 fingerprint of the coordinator's CA (so that the joining host
//! trusts the right coordinator from its first connection), and optionally the
//! coordinator's URL. The coordinator stores only the secret's hash.

use base64::Engine;
use rand::RngCore;

use crate::{Error, Result};

const PREFIX: &str = "kura1.";

#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub secret: [u8; 32],
    pub ca_fingerprint: [u8; 32],
    pub url: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(ca {}, url {:?})", hex::encode(self.ca_fingerprint), self.url)
    }
}

impl Token {
    /// A token with a fresh random secret.
    pub fn new(ca_fingerprint: [u8; 32], url: Option<String>) -> Token {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Token { secret, ca_fingerprint, url }
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(64 + self.url.as_ref().map_or(0, |u| u.len()));
        bytes.extend_from_slice(&self.secret);
        bytes.extend_from_slice(&self.ca_fingerprint);
        if let Some(u) = &self.url {
            bytes.extend_from_slice(u.as_bytes());
        }
        format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn parse(text: &str) -> Result<Token> {
        let bad = |why: &str| Error::invalid("enrolment token", why.to_string());
        let body = text.trim().strip_prefix(PREFIX).ok_or_else(|| {
            bad("it does not start with \"kura1.\": copy the whole token `kura agent enroll` printed")
        })?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("it is not valid base64url: it was cut or changed while copying"))?;
        if bytes.len() < 64 {
            return Err(bad("it is too short: it was cut while copying"));
        }
        let mut secret = [0u8; 32];
        let mut ca_fingerprint = [0u8; 32];
        secret.copy_from_slice(&bytes[..32]);
        ca_fingerprint.copy_from_slice(&bytes[32..64]);
        let url = match &bytes[64..] {
            [] => None,
            rest => Some(String::from_utf8(rest.to_vec()).map_err(|_| bad("its URL part is not UTF-8"))?),
        };
        Ok(Token { secret, ca_fingerprint, url })
    }

    /// What the coordinator stores: the secret's SHA-256, hex.
    pub fn secret_hash(&self) -> String {
        hash_secret(&hex::encode(self.secret))
    }
}

/// The stored hash of a secret sent as hex in a join request.
pub fn hash_secret(secret_hex: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, secret_hex.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_url() {
        let t = Token::new([9; 32], Some("https://c:9443".into()));
        assert_eq!(Token::parse(&t.encode()).unwrap(), t);
        let t = Token::new([9; 32], None);
        assert_eq!(Token::parse(&format!(" {}\n", t.encode())).unwrap(), t);
    }

    #[test]
    fn damaged_tokens_are_refused_with_a_reason() {
        let t = Token::new([1; 32], None).encode();
        assert!(Token::parse(&t[..22]).unwrap_err().to_string().contains("too short"));
        assert!(Token::parse("abc").unwrap_err().to_string().contains("kura1."));
        assert!(Token::parse("kura1.@@@").unwrap_err().to_string().contains("base64url"));
    }

    #[test]
    fn secret_never_shows_in_debug_and_hash_matches_join_form() {
        let t = Token::new([1; 32], None);
        assert!(!format!("{t:?}").contains(&hex::encode(t.secret)));
        assert_eq!(t.secret_hash(), hash_secret(&hex::encode(t.secret)));
    }
}
