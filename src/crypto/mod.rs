//! Encryption and ids. Pure and synchronous.
//!
//! * Every stored object is `nonce (24 bytes) || XChaCha20-Poly1305 ciphertext || tag (16)`.
//!   Nonces are random: with 192-bit nonces collisions are not a concern.
//! * Blob ids are blake3 keyed hashes of the plaintext with a key separate from the
//!   encryption key, so ids reveal nothing about content to someone without the key.
//! * The master key is wrapped by a key derived from a passphrase with argon2id.

use chacha20poly1305::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::BlobId;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes that encryption adds to a plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The repository master key: one half encrypts, the other keys blob ids.
#[derive(Clone)]
pub struct MasterKey {
    enc: [u8; 32],
    id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = MasterKey { enc: [0; 32], id: [0; 32] };
        OsRng.fill_bytes(&mut k.enc);
        OsRng.fill_bytes(&mut k.id);
        k
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.enc);
        out[32..].copy_from_slice(&self.id);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != 64 {
            return Err(Error::invalid("master key", "must be 64 bytes"));
        }
        let mut k = MasterKey { enc: [0; 32], id: [0; 32] };
        k.enc.copy_from_slice(&b[..32]);
        k.id.copy_from_slice(&b[32..]);
        Ok(k)
    }

    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    /// A key for one purpose, derived from the whole master key (blake3 `derive_key`
    /// with `context`): whoever lacks the master key cannot compute it.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.to_bytes())
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.enc, plaintext)
    }

    /// `object` names what is being decrypted, for the error message.
    pub fn decrypt(&self, data: &[u8], object: &str) -> Result<Vec<u8>> {
        open(&self.enc, data).ok_or_else(|| Error::corrupt(object, "authentication failed"))
    }
}

/// Encrypts with a fresh random nonce. The output is `nonce || ciphertext || tag`.
pub fn seal(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(&nonce, b"", &mut out[NONCE_LEN..])
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    out.extend_from_slice(&tag);
    out
}

/// Decrypts and authenticates; `None` when the data was damaged or the key is wrong.
pub fn open(key: &[u8; 32], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < OVERHEAD {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let (nonce, rest) = data.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = ct.to_vec();
    cipher.decrypt_in_place_detached(XNonce::from_slice(nonce), b"", &mut buf, Tag::from_slice(tag)).ok()?;
    Some(buf)
}

/// argon2id parameters, stored beside each wrapped key so they can change over time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Base64 (standard alphabet) of 16 random bytes.
    pub salt: String,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about 0.1-0.3 s on a current core.
    pub fn new_random() -> Self {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        KdfParams { algorithm: "argon2id".into(), m_cost: 64 * 1024, t_cost: 3, p_cost: 1, salt: b64().encode(salt) }
    }

    pub fn derive(&self, passphrase: &[u8]) -> Result<[u8; 32]> {
        if self.algorithm != "argon2id" {
            return Err(Error::invalid("key file", format!("unknown kdf {:?}", self.algorithm)));
        }
        let salt =
            b64().decode(&self.salt).map_err(|e| Error::invalid("key file", format!("salt is not base64: {e}")))?;
        let params = argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::invalid("key file", format!("argon2 parameters: {e}")))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(passphrase, &salt, &mut out)
            .map_err(|e| Error::invalid("key file", format!("argon2: {e}")))?;
        Ok(out)
    }
}

pub fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}
use base64::Engine as _;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tamper_is_detected() {
        let k = MasterKey::generate();
        let mut ct = k.encrypt(b"hello");
        assert_eq!(k.decrypt(&ct, "x").unwrap(), b"hello");
        ct[30] ^= 1;
        assert!(k.decrypt(&ct, "x").is_err());
        assert!(k.decrypt(b"short", "x").is_err());
        let other = MasterKey::generate();
        assert!(other.decrypt(&k.encrypt(b"hello"), "x").is_err());
    }

    #[test]
    fn ids_are_keyed() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        let back = MasterKey::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(back.blob_id(b"x"), a.blob_id(b"x"));
    }

    #[test]
    fn kdf_is_deterministic_per_salt() {
        let mut p = KdfParams::new_random();
        p.m_cost = 1024; // keep the test fast
        p.t_cost = 1;
        assert_eq!(p.derive(b"pw").unwrap(), p.derive(b"pw").unwrap());
        assert_ne!(p.derive(b"pw").unwrap(), p.derive(b"pw2").unwrap());
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let k = MasterKey::generate();
            let ct = k.encrypt(&data);
            prop_assert_eq!(ct.len(), data.len() + OVERHEAD);
            prop_assert_eq!(k.decrypt(&ct, "x").unwrap(), data);
        }
    }
}
