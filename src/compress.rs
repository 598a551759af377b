//! zstd compression with a raw fallback. Pure.

use crate::error::{Error, Result};

/// The zstd level used when none is configured.
pub const DEFAULT_LEVEL: i32 = 3;

/// Compresses `data`; returns `None` when compression would not make it smaller,
/// in which case the blob is stored raw (incompressible media, encrypted files).
pub fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    if data.len() < 64 {
        return None;
    }
    let out = zstd::bulk::compress(data, level).ok()?;
    (out.len() < data.len()).then_some(out)
}

/// `raw_len` is the exact size of the original, recorded in the pack header.
pub fn decompress(data: &[u8], raw_len: usize, object: &str) -> Result<Vec<u8>> {
    let out = zstd::bulk::decompress(data, raw_len)
        .map_err(|e| Error::corrupt(object, format!("zstd: {e}")))?;
    if out.len() != raw_len {
        return Err(Error::corrupt(object, "decompressed size does not match the header"));
    }
    Ok(out)
}

/// Like `decompress` for stored files whose size is not known in advance.
pub fn decompress_unknown(data: &[u8], object: &str) -> Result<Vec<u8>> {
    zstd::stream::decode_all(data).map_err(|e| Error::corrupt(object, format!("zstd: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn incompressible_stays_raw() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let text = b"abcabcabc".repeat(1000);
        assert!(compress(&text, 3).is_some());
        let _ = compress(&data, 3); // may or may not shrink; must not panic
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
