//! Key files: the master key wrapped by passphrase-derived keys. Any key file
//! unlocks the repository; `kura key` adds and removes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Kind};
use crate::crypto::{b64, open, seal, KdfParams, MasterKey};
use crate::error::{Error, Result};
use crate::types::FileId;
use base64::Engine as _;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub created: DateTime<Utc>,
    pub host: String,
    pub username: String,
    pub kdf: KdfParams,
    /// base64 of seal(argon2id(passphrase), master key bytes).
    pub data: String,
}

/// Wraps the master key with a new passphrase and stores it; returns its name.
pub fn add_key(backend: &dyn Backend, master: &MasterKey, passphrase: &[u8]) -> Result<String> {
    add_key_with(backend, master, passphrase, KdfParams::new_random())
}

/// `add_key` with chosen KDF parameters (tests use cheap ones).
pub fn add_key_with(backend: &dyn Backend, master: &MasterKey, passphrase: &[u8], kdf: KdfParams) -> Result<String> {
    let kek = kdf.derive(passphrase)?;
    let kf = KeyFile {
        created: Utc::now(),
        host: crate::host_name(),
        username: crate::user_name(),
        kdf,
        data: b64().encode(seal(&kek, &master.to_bytes())),
    };
    let bytes = serde_json::to_vec_pretty(&kf).expect("key files serialize");
    let name = FileId(*blake3::hash(&bytes).as_bytes()).to_hex();
    backend.put(Kind::Key, &name, &bytes)?;
    Ok(name)
}

pub fn load_key(backend: &dyn Backend, name: &str) -> Result<KeyFile> {
    let bytes = backend.get(Kind::Key, name)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(format!("key {name}"), e.to_string()))
}

/// Tries every key file; returns the master key and the name of the key that opened it.
pub fn unlock(backend: &dyn Backend, passphrase: &[u8]) -> Result<(MasterKey, String)> {
    let keys = backend.list(Kind::Key)?;
    if keys.is_empty() {
        return Err(Error::NoRepository { repo: backend.location() });
    }
    for (name, _) in keys {
        let kf = match load_key(backend, &name) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(key = %name, error = %e, "skipping unreadable key file");
                continue;
            }
        };
        let kek = kf.kdf.derive(passphrase)?;
        let Ok(sealed) = b64().decode(&kf.data) else { continue };
        if let Some(plain) = open(&kek, &sealed) {
            return Ok((MasterKey::from_bytes(&plain)?, name));
        }
    }
    Err(Error::WrongPassphrase { repo: backend.location() })
}
