//! AES-256-GCM, the cipher of repositories created where the CPU has AES
//! instructions (docs/FORMAT.md, "Ciphers").
//!
//! A sealed object is `nonce (12 random bytes) || ciphertext || tag (16)`. The key is
//! derived from the master key's encryption half, so no key is ever used with two
//! algorithms (the repository config and key files stay XChaCha20-Poly1305).
//! Sealing and opening use `ring` (hardware AES and carry-less multiplication);
//! the header-less scan of `repair` uses the RustCrypto block cipher and GHASH,
//! which allow extending one authenticator over many candidate ends.

use aes::cipher::{BlockEncrypt, KeyInit as _};
use ghash::universal_hash::UniversalHash;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::TAG_LEN;

pub const NONCE_LEN: usize = 12;
/// Bytes that AES-256-GCM sealing adds to a plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const KEY_CONTEXT: &str = "kura 2026-12 AES-256-GCM object key";

/// Whether this CPU runs AES-256-GCM in hardware: AES rounds and carry-less
/// multiplication (x86 AES-NI and PCLMULQDQ, ARMv8 AES and PMULL).
pub fn hardware_accelerated() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}

/// The nonce at the start of a sealed object; `None` when it is too short to be one.
fn nonce_of(data: &[u8]) -> Option<[u8; NONCE_LEN]> {
    (data.len() >= OVERHEAD).then(|| data[..NONCE_LEN].try_into().expect("length checked"))
}

/// The AES-256-GCM key of a repository, expanded once.
#[derive(Clone)]
pub struct GcmKey {
    key: [u8; 32],
    expanded: LessSafeKey,
}

impl GcmKey {
    /// The object key for the master key's encryption half `enc`.
    pub fn new(enc: &[u8; 32]) -> Self {
        let key = blake3::derive_key(KEY_CONTEXT, enc);
        let unbound = UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key fits AES-256-GCM");
        GcmKey { key, expanded: LessSafeKey::new(unbound) }
    }

    /// Encrypts with a fresh random 96-bit nonce: `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .expanded
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut out[NONCE_LEN..])
            .expect("AES-256-GCM sealing cannot fail below 64 GiB");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Decrypts and authenticates; `None` when damaged or sealed with another key.
    pub fn open(&self, data: &[u8]) -> Option<Vec<u8>> {
        let nonce = nonce_of(data)?;
        let mut buf = data[NONCE_LEN..].to_vec();
        let plain_len = self.open_with(nonce, &mut buf)?.len();
        buf.truncate(plain_len);
        Some(buf)
    }

    /// Opens `data` (nonce, ciphertext, tag) where it lies; the plaintext is the
    /// returned part of it.
    pub fn open_in_place<'a>(&self, data: &'a mut [u8]) -> Option<&'a mut [u8]> {
        let nonce = nonce_of(data)?;
        self.open_with(nonce, &mut data[NONCE_LEN..])
    }

    fn open_with<'a>(&self, nonce: [u8; NONCE_LEN], ciphertext_and_tag: &'a mut [u8]) -> Option<&'a mut [u8]> {
        self.expanded.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), ciphertext_and_tag).ok()
    }

    /// Length of the sealed object at the start of `data` when its end is not known
    /// (see `MasterKey::sealed_len_at`): GHASH over the whole blocks before each
    /// candidate end is kept and extended, so a scan is linear in its bytes.
    pub fn sealed_len_at(&self, data: &[u8]) -> Option<usize> {
        if data.len() < OVERHEAD {
            return None;
        }
        let aes = aes::Aes256::new(&self.key.into());
        let mut h = aes::Block::default();
        aes.encrypt_block(&mut h);
        // J0 = nonce || 0^31 || 1; the tag is GHASH xor AES(J0).
        let mut mask = aes::Block::default();
        mask[..NONCE_LEN].copy_from_slice(&data[..NONCE_LEN]);
        mask[15] = 1;
        aes.encrypt_block(&mut mask);
        let mut whole = ghash::GHash::new(&h);
        let body = &data[NONCE_LEN..];
        let mut absorbed = 0;
        for ct_len in 0..=body.len() - TAG_LEN {
            while absorbed + 16 <= ct_len {
                whole.update(&[*ghash::Block::from_slice(&body[absorbed..absorbed + 16])]);
                absorbed += 16;
            }
            let mut mac = whole.clone();
            if ct_len > absorbed {
                mac.update_padded(&body[absorbed..ct_len]);
            }
            let mut lengths = [0u8; 16]; // bit lengths: no associated data, then the ciphertext
            lengths[8..].copy_from_slice(&(ct_len as u64 * 8).to_be_bytes());
            mac.update(&[lengths.into()]);
            let mut tag = mac.finalize();
            tag.iter_mut().zip(mask.iter()).for_each(|(t, m)| *t ^= m);
            if tag.as_slice() == &body[ct_len..ct_len + TAG_LEN] {
                return Some(NONCE_LEN + ct_len + TAG_LEN);
            }
        }
        None
    }
}
