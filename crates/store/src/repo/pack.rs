//! Pack files: many encrypted blobs and one encrypted header. Pure.
//!
//! ```text
//! pack   = blob_1 || ... || blob_n || seal(header) || header_len (u32 LE, sealed length)
//! header = n * entry, entry = type u8 | flags u8 | length u32 LE | raw_length u32 LE | id [32]
//! ```
//! Blob offsets are implicit: blob i starts where blob i-1 ended. Only the header's
//! sealed length is visible from outside; blob sizes stay encrypted.

use crate::crypto::{MasterKey, MIN_OVERHEAD};
use crate::error::{Error, Result};
use crate::types::{BlobId, BlobType, PackId};

pub const ENTRY_LEN: usize = 42;
const FLAG_COMPRESSED: u8 = 1;

/// One blob's place in a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: BlobId,
    pub blob_type: BlobType,
    pub offset: u32,
    /// Stored (encrypted) length.
    pub length: u32,
    /// Plaintext length before compression.
    pub raw_length: u32,
    pub compressed: bool,
}

/// Where a pack's bytes start in memory: a page boundary, so that the local
/// backend can write them with direct I/O (`backend::local`), without copying them
/// into the page cache.
pub const PACK_ALIGN: usize = 4096;

/// Accumulates sealed blobs in memory until the pack is big enough.
#[derive(Default)]
pub struct PackBuilder {
    /// `buf[..start]` is padding that puts the pack's first byte on a `PACK_ALIGN`
    /// boundary (kept while the reserved capacity suffices).
    buf: Vec<u8>,
    start: usize,
    entries: Vec<PackEntry>,
}

/// A finished pack's bytes (see `PackBuilder::finish`).
pub struct PackBytes {
    buf: Vec<u8>,
    start: usize,
}

impl std::ops::Deref for PackBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

impl PackBuilder {
    pub fn new(capacity: usize) -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(capacity + PACK_ALIGN);
        let start = buf.as_ptr().align_offset(PACK_ALIGN).min(PACK_ALIGN);
        buf.resize(start, 0);
        PackBuilder { buf, start, entries: Vec::new() }
    }

    pub fn add(&mut self, id: BlobId, blob_type: BlobType, sealed: &[u8], raw_length: u32, compressed: bool) {
        self.entries.push(PackEntry {
            id,
            blob_type,
            offset: (self.buf.len() - self.start) as u32,
            length: sealed.len() as u32,
            raw_length,
            compressed,
        });
        self.buf.extend_from_slice(sealed);
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the header and returns the pack's id, bytes and entries.
    pub fn finish(mut self, key: &MasterKey) -> (PackId, PackBytes, Vec<PackEntry>) {
        let mut header = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            header.push(match e.blob_type {
                BlobType::Data => 0,
                BlobType::Tree => 1,
            });
            header.push(if e.compressed { FLAG_COMPRESSED } else { 0 });
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.raw_length.to_le_bytes());
            header.extend_from_slice(&e.id.0);
        }
        let sealed = key.encrypt(&header);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = PackId(*blake3::hash(&self.buf[self.start..]).as_bytes());
        (id, PackBytes { buf: self.buf, start: self.start }, self.entries)
    }
}

/// Length of the sealed header, from the pack's last 4 bytes.
pub fn header_len(tail: &[u8], pack: &str) -> Result<u32> {
    let b: [u8; 4] = tail
        .get(tail.len().saturating_sub(4)..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("pack {pack}"), "too short to hold a header"))?;
    Ok(u32::from_le_bytes(b))
}

/// Decrypts and parses a sealed header; checks that the blobs fit in `pack_size`.
pub fn parse_header(key: &MasterKey, sealed: &[u8], pack: &str, pack_size: u64) -> Result<Vec<PackEntry>> {
    let object = format!("pack {pack} header");
    let plain = key.decrypt(sealed, &object)?;
    if plain.len() % ENTRY_LEN != 0 {
        return Err(Error::corrupt(object, "header length is not a whole number of entries"));
    }
    let mut offset: u64 = 0;
    let mut out = Vec::with_capacity(plain.len() / ENTRY_LEN);
    for e in plain.chunks_exact(ENTRY_LEN) {
        let blob_type = match e[0] {
            0 => BlobType::Data,
            1 => BlobType::Tree,
            t => return Err(Error::corrupt(object, format!("unknown blob type {t}"))),
        };
        let length = u32::from_le_bytes(e[2..6].try_into().unwrap());
        let raw_length = u32::from_le_bytes(e[6..10].try_into().unwrap());
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[10..42]);
        if (length as usize) < MIN_OVERHEAD {
            return Err(Error::corrupt(object, "blob shorter than its encryption overhead"));
        }
        out.push(PackEntry {
            id: BlobId(id),
            blob_type,
            offset: offset as u32,
            length,
            raw_length,
            compressed: e[1] & FLAG_COMPRESSED != 0,
        });
        offset += length as u64;
    }
    if offset + sealed.len() as u64 + 4 != pack_size {
        return Err(Error::corrupt(object, "blob lengths do not add up to the pack size"));
    }
    Ok(out)
}

/// Decrypts, decompresses and verifies one blob. The id check catches a blob
/// swapped for another validly-encrypted one.
pub fn open_blob(key: &MasterKey, e: &PackEntry, sealed: &[u8], pack: &PackId) -> Result<Vec<u8>> {
    let object = format!("blob {} in pack {}", e.id, pack);
    let plain = key.decrypt(sealed, &object)?;
    let data = if e.compressed { crate::compress::decompress(&plain, e.raw_length as usize, &object)? } else { plain };
    check_blob(key, e, &data, object)?;
    Ok(data)
}

/// Like `open_blob`, for a reader that owns the sealed bytes and opens many blobs
/// (restore): decrypts them where they lie and decompresses into `scratch`, whose
/// memory is kept between blobs. Returns the plaintext, in `sealed` or `scratch`.
pub fn open_blob_in<'a>(
    key: &MasterKey,
    e: &PackEntry,
    sealed: &'a mut [u8],
    scratch: &'a mut Vec<u8>,
    pack: &PackId,
) -> Result<&'a [u8]> {
    let object = format!("blob {} in pack {}", e.id, pack);
    let plain = key.decrypt_in_place(sealed, &object)?;
    let data: &[u8] = if e.compressed {
        crate::compress::decompress_into(plain, e.raw_length as usize, scratch, &object)?;
        scratch
    } else {
        plain
    };
    check_blob(key, e, data, object)?;
    Ok(data)
}

/// A blob's plaintext must have the length and the id its entry records.
fn check_blob(key: &MasterKey, e: &PackEntry, data: &[u8], object: String) -> Result<()> {
    if data.len() != e.raw_length as usize || key.blob_id(data) != e.id {
        return Err(Error::corrupt(object, "content does not match its id"));
    }
    Ok(())
}

/// Finds the blobs of a pack whose header is lost (truncated, or damaged) and no
/// index names: blob 1 starts at byte 0, each blob's end is found by
/// `MasterKey::sealed_len_at`, and the next blob starts there. The scan stops at the
/// first bytes that do not authenticate (a damaged blob, or what is left of the
/// header): blobs behind a damaged one are found only through index entries.
///
/// A found blob's id is computed from its plaintext, and it is a tree when that
/// parses as one. The header flag that said whether it was compressed is lost:
/// when the plaintext is a zstd frame that decodes, the blob is listed twice, once
/// decompressed and once raw (a small `.zst` file is stored raw). One reading is
/// the blob a tree names; the other becomes an unused blob that prune removes.
pub fn scan(key: &MasterKey, bytes: &[u8]) -> Vec<PackEntry> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(len) = key.sealed_len_at(&bytes[at..]) {
        if at + len + 4 == bytes.len() {
            break; // the sealed header itself, followed only by its length
        }
        let Ok(plain) = key.decrypt(&bytes[at..at + len], "scanned blob") else { break };
        let mut readings = vec![(plain.clone(), false)];
        if plain.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            if let Ok(d) = crate::compress::decompress_unknown(&plain, "scanned blob") {
                readings.insert(0, (d, true));
            }
        }
        for (data, compressed) in readings {
            let id = key.blob_id(&data);
            let blob_type = if data.starts_with(b"{") && crate::repo::tree::Tree::decode(&data, &id).is_ok() {
                BlobType::Tree
            } else {
                BlobType::Data
            };
            out.push(PackEntry {
                id,
                blob_type,
                offset: at as u32,
                length: len as u32,
                raw_length: data.len() as u32,
                compressed,
            });
        }
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress;
    use proptest::prelude::*;

    fn build(key: &MasterKey, blobs: &[Vec<u8>]) -> (PackId, Vec<u8>, Vec<PackEntry>) {
        let mut p = PackBuilder::new(0);
        for b in blobs {
            let (stored, c) = match compress::compress(b, 3) {
                Some(c) => (c, true),
                None => (b.clone(), false),
            };
            p.add(key.blob_id(b), BlobType::Data, &key.encrypt(&stored), b.len() as u32, c);
        }
        let (id, bytes, entries) = p.finish(key);
        (id, bytes.to_vec(), entries)
    }

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(0u8..8, 0..3000), 1..20)) {
            let key = MasterKey::generate();
            let (id, bytes, entries) = build(&key, &blobs);
            prop_assert_eq!(PackId(*blake3::hash(&bytes).as_bytes()), id);
            let hl = header_len(&bytes, "p").unwrap() as usize;
            let sealed = &bytes[bytes.len() - 4 - hl..bytes.len() - 4];
            let parsed = parse_header(&key, sealed, "p", bytes.len() as u64).unwrap();
            prop_assert_eq!(&parsed, &entries);
            for (e, b) in parsed.iter().zip(&blobs) {
                let s = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                prop_assert_eq!(&open_blob(&key, e, s, &id).unwrap(), b);
            }
        }
    }

    #[test]
    fn scan_finds_the_blobs_of_a_pack_without_its_header() {
        let key = MasterKey::generate();
        let blobs: Vec<Vec<u8>> =
            vec![b"abc".repeat(2000), (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(), vec![]];
        let (id, bytes, entries) = build(&key, &blobs);
        // Cut off the header: every blob is still found, with its id and flags.
        let cut = &bytes[..bytes.len() - 30];
        let found = scan(&key, cut);
        let compressed = entries.iter().filter(|e| e.compressed).count();
        assert!(compressed > 0);
        assert_eq!(found.len(), entries.len() + compressed, "{found:?}");
        assert!(entries.iter().all(|e| found.contains(e)), "{found:?}");
        for e in &found {
            open_blob(&key, e, &cut[e.offset as usize..(e.offset + e.length) as usize], &id).unwrap();
        }
        // A whole pack scans to its blobs, not its header.
        assert_eq!(scan(&key, &bytes), found);
        // A damaged second blob ends the scan after the first.
        let mut bad = bytes.clone();
        bad[entries[1].offset as usize + 50] ^= 1;
        assert!(scan(&key, &bad).iter().all(|e| e.offset == 0));
    }

    #[test]
    fn opening_in_place_gives_what_opening_a_copy_gives_with_either_cipher() {
        let noise = crate::chunk::tests::seeded_bytes(7, 9000);
        let blobs: Vec<Vec<u8>> = vec![b"text, compressed ".repeat(500), noise];
        for cipher in [crate::crypto::Cipher::Xchacha20, crate::crypto::Cipher::Aes256gcm] {
            let key = MasterKey::generate().with_cipher(cipher);
            let (id, mut bytes, entries) = build(&key, &blobs);
            assert!(entries.iter().any(|e| e.compressed) && entries.iter().any(|e| !e.compressed));
            let mut scratch = Vec::new();
            for (e, b) in entries.iter().zip(&blobs) {
                let range = e.offset as usize..(e.offset + e.length) as usize;
                assert_eq!(open_blob(&key, e, &bytes[range.clone()], &id).unwrap(), *b);
                assert_eq!(open_blob_in(&key, e, &mut bytes[range], &mut scratch, &id).unwrap(), &b[..]);
            }
            // A flipped byte is refused in place too.
            let (id, mut bytes, entries) = build(&key, &blobs);
            let e = &entries[1];
            bytes[e.offset as usize + 30] ^= 1;
            let sealed = &mut bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert!(matches!(open_blob_in(&key, e, sealed, &mut scratch, &id), Err(Error::Corrupt { .. })));
        }
    }

    #[test]
    fn flipped_byte_is_caught() {
        let key = MasterKey::generate();
        let (id, mut bytes, entries) = build(&key, &[b"some data here".repeat(10)]);
        bytes[5] ^= 0x40;
        let e = &entries[0];
        let s = &bytes[e.offset as usize..(e.offset + e.length) as usize];
        assert!(matches!(open_blob(&key, e, s, &id), Err(Error::Corrupt { .. })));
    }
}
