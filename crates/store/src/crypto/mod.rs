//! Encryption and ids. Pure and synchronous.
//!
//! * Every stored object is `nonce || ciphertext || tag (16)`, sealed with the
//!   repository's [`Cipher`]: XChaCha20-Poly1305 (24-byte nonce) or AES-256-GCM
//!   (12-byte nonce, see `gcm`). Nonces are random; docs/FORMAT.md bounds the risk.
//!   The repository config and key files are always XChaCha20-Poly1305: they are
//!   read before the cipher is known.
//! * Blob ids are blake3 keyed hashes of the plaintext with a key separate from the
//!   encryption key, so ids reveal nothing about content to someone without the key.
//! * The master key is wrapped by a key derived from a passphrase with argon2id.

pub mod gcm;

use chacha20poly1305::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::BlobId;

/// XChaCha20-Poly1305's nonce.
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// The most bytes that encryption adds to a plaintext, whatever the cipher.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// The fewest bytes that encryption adds to a plaintext, whatever the cipher.
pub const MIN_OVERHEAD: usize = gcm::OVERHEAD;

/// The AEAD that seals a repository's objects, recorded in its config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cipher {
    /// XChaCha20-Poly1305: every repository before ciphers were a choice.
    #[default]
    Xchacha20,
    /// AES-256-GCM: fastest where the CPU has AES instructions.
    Aes256gcm,
}

impl Cipher {
    /// What a new repository uses on this machine: AES-256-GCM when the CPU runs it
    /// in hardware, else XChaCha20-Poly1305 (fast in software everywhere).
    pub fn for_this_cpu() -> Self {
        if gcm::hardware_accelerated() {
            Cipher::Aes256gcm
        } else {
            Cipher::Xchacha20
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Cipher::default()
    }

    pub fn name(self) -> &'static str {
        match self {
            Cipher::Xchacha20 => "xchacha20",
            Cipher::Aes256gcm => "aes256gcm",
        }
    }

    /// Bytes that sealing adds to a plaintext.
    pub fn overhead(self) -> usize {
        match self {
            Cipher::Xchacha20 => OVERHEAD,
            Cipher::Aes256gcm => gcm::OVERHEAD,
        }
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Cipher {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "xchacha20" => Ok(Cipher::Xchacha20),
            "aes256gcm" => Ok(Cipher::Aes256gcm),
            _ => Err(Error::invalid("cipher", format!("{s:?} is not a cipher (aes256gcm or xchacha20)"))),
        }
    }
}

/// The repository master key: one half encrypts, the other keys blob ids. It seals
/// with XChaCha20-Poly1305 until `with_cipher` names the repository's cipher.
#[derive(Clone)]
pub struct MasterKey {
    enc: [u8; 32],
    id: [u8; 32],
    /// Set for AES-256-GCM repositories.
    gcm: Option<gcm::GcmKey>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = MasterKey { enc: [0; 32], id: [0; 32], gcm: None };
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
        let mut k = MasterKey { enc: [0; 32], id: [0; 32], gcm: None };
        k.enc.copy_from_slice(&b[..32]);
        k.id.copy_from_slice(&b[32..]);
        Ok(k)
    }

    /// The same key, sealing and opening objects with `cipher`.
    pub fn with_cipher(mut self, cipher: Cipher) -> Self {
        self.gcm = match cipher {
            Cipher::Xchacha20 => None,
            Cipher::Aes256gcm => Some(gcm::GcmKey::new(&self.enc)),
        };
        self
    }

    pub fn cipher(&self) -> Cipher {
        if self.gcm.is_some() {
            Cipher::Aes256gcm
        } else {
            Cipher::Xchacha20
        }
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
        match &self.gcm {
            Some(g) => g.seal(plaintext),
            None => seal(&self.enc, plaintext),
        }
    }

    /// Seals the repository config: always XChaCha20-Poly1305, whatever the cipher,
    /// since the config is what names the cipher.
    pub fn encrypt_config(&self, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.enc, plaintext)
    }

    pub fn decrypt_config(&self, data: &[u8]) -> Result<Vec<u8>> {
        open(&self.enc, data).ok_or_else(|| Error::corrupt("repository config", "authentication failed"))
    }

    /// Length of the sealed object at the start of `data` (nonce, ciphertext, tag),
    /// when its end is not known: what `repair` uses to find blobs in a pack whose
    /// header is lost. Every end position is tried. The Poly1305 state over the
    /// whole 16-byte blocks before a candidate end is kept and extended, so each
    /// candidate costs a constant amount of work and a scan is linear in the bytes
    /// it covers. `None` when no prefix authenticates.
    pub fn sealed_len_at(&self, data: &[u8]) -> Option<usize> {
        if let Some(g) = &self.gcm {
            return g.sealed_len_at(data);
        }
        use chacha20::cipher::{KeyIvInit, StreamCipher};
        use poly1305::universal_hash::{KeyInit as _, UniversalHash};
        if data.len() < OVERHEAD {
            return None;
        }
        let mut cipher = chacha20::XChaCha20::new((&self.enc).into(), XNonce::from_slice(&data[..NONCE_LEN]));
        // As in XChaCha20-Poly1305: the MAC key is the first 32 keystream bytes.
        let mut mac_key = [0u8; 32];
        cipher.apply_keystream(&mut mac_key);
        let mut whole = poly1305::Poly1305::new(poly1305::Key::from_slice(&mac_key));
        let body = &data[NONCE_LEN..];
        let mut absorbed = 0;
        for ct_len in 0..=body.len() - TAG_LEN {
            while absorbed + 16 <= ct_len {
                whole.update(&[*poly1305::Block::from_slice(&body[absorbed..absorbed + 16])]);
                absorbed += 16;
            }
            let mut mac = whole.clone();
            if ct_len > absorbed {
                mac.update_padded(&body[absorbed..ct_len]);
            }
            let mut lengths = [0u8; 16]; // no associated data, then the ciphertext length
            lengths[8..].copy_from_slice(&(ct_len as u64).to_le_bytes());
            mac.update(&[lengths.into()]);
            if mac.finalize().as_slice() == &body[ct_len..ct_len + TAG_LEN] {
                return Some(NONCE_LEN + ct_len + TAG_LEN);
            }
        }
        None
    }

    /// `object` names what is being decrypted, for the error message.
    pub fn decrypt(&self, data: &[u8], object: &str) -> Result<Vec<u8>> {
        let plain = match &self.gcm {
            Some(g) => g.open(data),
            None => open(&self.enc, data),
        };
        plain.ok_or_else(|| Error::corrupt(object, "authentication failed"))
    }

    /// Like `decrypt`, where the sealed bytes lie: no copy, no allocation. The
    /// plaintext is the returned part of `data`.
    pub fn decrypt_in_place<'a>(&self, data: &'a mut [u8], object: &str) -> Result<&'a mut [u8]> {
        let plain = match &self.gcm {
            Some(g) => g.open_in_place(data),
            None => open_in_place(&self.enc, data),
        };
        plain.ok_or_else(|| Error::corrupt(object, "authentication failed"))
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
    let (nonce, rest) = data.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = ct.to_vec();
    open_detached(key, nonce, &mut buf, tag)?;
    Some(buf)
}

/// Opens `data` (nonce, ciphertext, tag) where it lies; the plaintext is the
/// returned part of it.
pub fn open_in_place<'a>(key: &[u8; 32], data: &'a mut [u8]) -> Option<&'a mut [u8]> {
    if data.len() < OVERHEAD {
        return None;
    }
    let (head, tag) = data.split_at_mut(data.len() - TAG_LEN);
    let (nonce, ct) = head.split_at_mut(NONCE_LEN);
    open_detached(key, nonce, ct, tag)?;
    Some(ct)
}

fn open_detached(key: &[u8; 32], nonce: &[u8], ct: &mut [u8], tag: &[u8]) -> Option<()> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher.decrypt_in_place_detached(XNonce::from_slice(nonce), b"", ct, Tag::from_slice(tag)).ok()
}

/// argon2's working memory (64 MiB with the default parameters), zeroed, backed by
/// huge pages where the kernel offers them on request (Linux's transparent huge
/// pages in `madvise` mode): 32 page faults instead of 16,384 on every unlock, which
/// was a fifth of its time.
fn kdf_memory(blocks: usize) -> Vec<argon2::Block> {
    let mut v = Vec::<argon2::Block>::with_capacity(blocks);
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = v.as_ptr() as usize;
        let end = start + blocks * std::mem::size_of::<argon2::Block>();
        let (from, to) = ((start + PAGE - 1) & !(PAGE - 1), end & !(PAGE - 1));
        if to > from {
            // SAFETY: [from, to) lies inside v's allocation, which nothing has touched
            // yet; MADV_HUGEPAGE changes only how the kernel backs it. A refusal
            // (an old kernel, huge pages off) leaves ordinary pages: ignored.
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
        }
    }
    v.resize(blocks, argon2::Block::default());
    v
}

/// Upper bounds for key files' argon2 parameters (see `KdfParams::validate`).
pub const KDF_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
pub const KDF_MAX_PASSES: u32 = 64;
pub const KDF_MAX_LANES: u32 = 64;

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

    /// Bounds a key file's parameters before any derivation runs: a hostile or damaged
    /// key file must not make kura allocate terabytes or spin for hours. The limits
    /// are far above what `kura init` and `kura key add` write (64 MiB, 3 passes).
    pub fn validate(&self) -> Result<()> {
        if self.algorithm != "argon2id" {
            return Err(Error::invalid("key file", format!("unknown kdf {:?}", self.algorithm)));
        }
        let bad = |what: &str| Err(Error::invalid("key file", format!("argon2 {what} is out of bounds")));
        if self.m_cost > KDF_MAX_MEMORY_KIB {
            return bad(&format!("memory {} KiB (at most {KDF_MAX_MEMORY_KIB})", self.m_cost));
        }
        if self.t_cost == 0 || self.t_cost > KDF_MAX_PASSES {
            return bad(&format!("passes {} (1 to {KDF_MAX_PASSES})", self.t_cost));
        }
        if self.p_cost == 0 || self.p_cost > KDF_MAX_LANES {
            return bad(&format!("lanes {} (1 to {KDF_MAX_LANES})", self.p_cost));
        }
        Ok(())
    }

    pub fn derive(&self, passphrase: &[u8]) -> Result<[u8; 32]> {
        self.validate()?;
        let salt =
            b64().decode(&self.salt).map_err(|e| Error::invalid("key file", format!("salt is not base64: {e}")))?;
        let params = argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::invalid("key file", format!("argon2 parameters: {e}")))?;
        let blocks = kdf_memory(params.block_count());
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into_with_memory(passphrase, &salt, &mut out, blocks)
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

    fn both_ciphers() -> [MasterKey; 2] {
        [MasterKey::generate(), MasterKey::generate().with_cipher(Cipher::Aes256gcm)]
    }

    #[test]
    fn sealed_lengths_are_found_without_a_header() {
        for k in both_ciphers() {
            sealed_lengths_found(&k);
        }
    }

    fn sealed_lengths_found(k: &MasterKey) {
        let parts: Vec<Vec<u8>> = [0usize, 1, 15, 16, 17, 32, 1000].iter().map(|&n| k.encrypt(&vec![7u8; n])).collect();
        let mut all: Vec<u8> = parts.concat();
        all.extend_from_slice(&[0xAA; 50]);
        let mut at = 0;
        for p in &parts {
            assert_eq!(k.sealed_len_at(&all[at..]), Some(p.len()));
            at += p.len();
        }
        assert_eq!(k.sealed_len_at(&all[at..]), None);
        let mut bad = parts[6].clone();
        bad[100] ^= 1;
        assert_eq!(k.sealed_len_at(&bad), None);
        assert_eq!(MasterKey::generate().sealed_len_at(&parts[6]), None);
        assert_eq!(MasterKey::generate().with_cipher(k.cipher()).sealed_len_at(&parts[6]), None);
    }

    #[test]
    fn tamper_is_detected() {
        for k in both_ciphers() {
            let mut ct = k.encrypt(b"hello");
            assert_eq!(ct.len(), 5 + k.cipher().overhead());
            assert_eq!(k.decrypt(&ct, "x").unwrap(), b"hello");
            ct[20] ^= 1;
            assert!(k.decrypt(&ct, "x").is_err());
            assert!(k.decrypt(b"short", "x").is_err());
            let other = MasterKey::generate().with_cipher(k.cipher());
            assert!(other.decrypt(&k.encrypt(b"hello"), "x").is_err());
        }
    }

    #[test]
    fn ciphers_do_not_open_each_other() {
        let x = MasterKey::generate();
        let a = x.clone().with_cipher(Cipher::Aes256gcm);
        assert_eq!((x.cipher(), a.cipher()), (Cipher::Xchacha20, Cipher::Aes256gcm));
        assert!(a.decrypt(&x.encrypt(b"some data"), "x").is_err());
        assert!(x.decrypt(&a.encrypt(b"some data"), "x").is_err());
        // Back to XChaCha20 with the same master key: what it sealed opens again.
        let back = a.clone().with_cipher(Cipher::Xchacha20);
        assert_eq!(back.decrypt(&x.encrypt(b"abc"), "x").unwrap(), b"abc");
        assert_eq!("aes256gcm".parse::<Cipher>().unwrap(), Cipher::Aes256gcm);
        assert!("aes".parse::<Cipher>().is_err());
    }

    /// A known-answer check of the AES-256-GCM construction that the repair scan
    /// re-implements: a fixed key and nonce must give the same tag through `ring`
    /// (sealing) and through the block cipher plus GHASH (the scan).
    #[test]
    fn gcm_scan_agrees_with_sealing_on_every_length() {
        let k = MasterKey::generate().with_cipher(Cipher::Aes256gcm);
        for n in 0..70 {
            let ct = k.encrypt(&vec![n as u8; n]);
            let mut padded = ct.clone();
            padded.extend_from_slice(&[0u8; 40]);
            assert_eq!(k.sealed_len_at(&padded), Some(ct.len()), "plaintext of {n} bytes");
        }
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
            for k in both_ciphers() {
                let ct = k.encrypt(&data);
                prop_assert_eq!(ct.len(), data.len() + k.cipher().overhead());
                prop_assert_eq!(k.decrypt(&ct, "x").unwrap(), data.clone());
            }
        }
    }
}
