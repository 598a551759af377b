//! Key files: the master key wrapped by passphrase-derived keys. Any key file
//! unlocks the repository; `kura key` adds and removes them.

use std::path::Path;

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

/// A passphrase from a file: its content without the trailing newline. An empty one
/// is refused (the CLI's --password-file and the daemon's config both read through
/// this), so an empty file is never mistaken for a wrong passphrase.
pub fn read_password_file(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read(path).map_err(|cause| Error::PasswordFile { path: path.to_path_buf(), cause })?;
    let mut pass = text.as_slice();
    while let Some(rest) = pass.strip_suffix(b"\n").or_else(|| pass.strip_suffix(b"\r")) {
        pass = rest;
    }
    if pass.is_empty() {
        return Err(Error::EmptyPasswordFile { path: path.to_path_buf() });
    }
    Ok(pass.to_vec())
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
///
/// A key file is named by the hash of its bytes, so damage is told apart from a wrong
/// passphrase: when no intact key opens and some are damaged, the error names those.
pub fn unlock(backend: &dyn Backend, passphrase: &[u8]) -> Result<(MasterKey, String)> {
    let keys = backend.list(Kind::Key)?;
    if keys.is_empty() {
        return Err(Error::NoRepository { repo: backend.location() });
    }
    let mut damaged = Vec::new();
    for (name, _) in keys {
        let kf = match load_key_checked(backend, &name) {
            Ok(k) => k,
            Err(Error::Backend(e)) if e.is_not_found() => continue, // removed meanwhile
            Err(Error::Corrupt { object, reason }) => {
                tracing::warn!(key = %name, %reason, "skipping damaged key file");
                damaged.push(format!("{object}: {reason}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let kek = kf.kdf.derive(passphrase)?;
        let Ok(sealed) = b64().decode(&kf.data) else {
            damaged.push(format!("key {name}: its data is not base64"));
            continue;
        };
        if let Some(plain) = open(&kek, &sealed) {
            return Ok((MasterKey::from_bytes(&plain)?, name));
        }
    }
    if damaged.is_empty() {
        Err(Error::WrongPassphrase { repo: backend.location() })
    } else {
        Err(Error::DamagedKeys { repo: backend.location(), damaged })
    }
}

/// A key file whose content matches its name (the hash `add_key` gave it) and parses.
fn load_key_checked(backend: &dyn Backend, name: &str) -> Result<KeyFile> {
    let bytes = backend.get(Kind::Key, name)?;
    if blake3::hash(&bytes).to_hex().as_str() != name {
        return Err(Error::corrupt(format!("key {name}"), "its content does not match its name"));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(format!("key {name}"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::read_password_file;
    use crate::error::Error;

    #[test]
    fn password_files_lose_trailing_newlines_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        std::fs::write(&f, "secret\r\n").unwrap();
        assert_eq!(read_password_file(&f).unwrap(), b"secret");
        for empty in ["", "\n", "\r\n\n"] {
            std::fs::write(&f, empty).unwrap();
            let e = read_password_file(&f).unwrap_err();
            assert!(matches!(e, Error::EmptyPasswordFile { .. }), "{e}");
            assert_eq!(
                e.to_string(),
                format!("password file {} is empty: write the repository passphrase into it", f.display())
            );
        }
        let e = read_password_file(&dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read password file"), "{e}");
    }
}
