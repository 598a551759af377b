//! zstd compression with a raw fallback. Pure.
//!
//! Large blobs are probed first: eight 8 KiB slices spread over the blob are
//! compressed together, and when they do not shrink by at least 3 % the blob is stored raw without
//! running zstd over all of it. Media, archives and encrypted files are common in
//! backups, and compressing them costs the most CPU for nothing (Borg's `auto`
//! compression makes the same bet).

use crate::error::{Error, Result};

/// The zstd level used when none is configured.
pub const DEFAULT_LEVEL: i32 = 3;

const PROBE_MIN: usize = 256 * 1024;
const PROBE_LEN: usize = 64 * 1024;
const PROBE_SLICES: usize = 8;

/// A reusable compressor: one per worker thread, so zstd contexts are not
/// rebuilt for every blob.
pub struct Compressor {
    level: i32,
    inner: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    pub fn new(level: i32) -> Result<Self> {
        let inner = zstd::bulk::Compressor::new(level)
            .map_err(|e| Error::invalid("compression level", format!("{level}: {e}")))?;
        Ok(Compressor { level, inner })
    }

    pub fn level(&self) -> i32 {
        self.level
    }

    /// Compressed bytes, or `None` when the blob should be stored raw.
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < 64 {
            return None;
        }
        if data.len() >= PROBE_MIN {
            // Slices spread over the whole blob: one compressible part is enough to
            // compress it all (blobs can mix media with metadata).
            let step = data.len() / PROBE_SLICES;
            let mut sample = Vec::with_capacity(PROBE_LEN);
            for i in 0..PROBE_SLICES {
                sample.extend_from_slice(&data[i * step..i * step + PROBE_LEN / PROBE_SLICES]);
            }
            let packed = self.inner.compress(&sample).ok()?;
            if packed.len() * 100 > PROBE_LEN * 97 {
                return None;
            }
        }
        let out = self.inner.compress(data).ok()?;
        (out.len() < data.len()).then_some(out)
    }
}

/// One-off compression (tests, metadata); blobs go through `Compressor`.
pub fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    Compressor::new(level).ok()?.compress(data)
}

thread_local! {
    /// One decompression context per thread, reused across blobs.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `raw_len` is the exact size of the original, recorded in the pack header.
pub fn decompress(data: &[u8], raw_len: usize, object: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decompress_into(data, raw_len, &mut out, object)?;
    Ok(out)
}

/// Like `decompress`, into `out` (emptied first): a reader of many blobs keeps one
/// buffer's memory between them.
pub fn decompress_into(data: &[u8], raw_len: usize, out: &mut Vec<u8>, object: &str) -> Result<()> {
    let zerr = |e: std::io::Error| Error::corrupt(object, format!("zstd: {e}"));
    out.clear();
    out.reserve(raw_len);
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(zerr)?);
        }
        slot.as_mut().expect("set above").decompress_to_buffer(data, out).map_err(zerr)
    })?;
    if out.len() != raw_len {
        return Err(Error::corrupt(object, "decompressed size does not match the header"));
    }
    Ok(())
}

/// The largest metadata file (index, snapshot, pending record) kura decompresses:
/// far above any real one (an index of a million blobs is about 150 MB of JSON), and
/// a bound on what a crafted file a few bytes long can make kura allocate.
pub const MAX_METADATA_SIZE: u64 = 1 << 30;

/// Like `decompress` for stored files whose size is not known in advance, bounded by
/// `MAX_METADATA_SIZE`.
pub fn decompress_unknown(data: &[u8], object: &str) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let zerr = |e: std::io::Error| Error::corrupt(object, format!("zstd: {e}"));
    let decoder = zstd::stream::read::Decoder::new(data).map_err(zerr)?;
    let mut out = Vec::new();
    decoder.take(MAX_METADATA_SIZE + 1).read_to_end(&mut out).map_err(zerr)?;
    if out.len() as u64 > MAX_METADATA_SIZE {
        return Err(Error::corrupt(object, format!("decompresses to more than {MAX_METADATA_SIZE} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_stays_raw_and_text_compresses() {
        let mut c = Compressor::new(3).unwrap();
        assert!(c.compress(&noise(1 << 20)).is_none());
        assert!(c.compress(&noise(1000)).is_none());
        let text = b"abcabcabc".repeat(100_000);
        let packed = c.compress(&text).unwrap();
        assert_eq!(decompress(&packed, text.len(), "t").unwrap(), text);
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(0u8..4, 0..20_000)) {
            if let Some(c) = compress(&data, 3) {
                prop_assert_eq!(decompress(&c, data.len(), "t").unwrap(), data);
            }
        }
    }
}
