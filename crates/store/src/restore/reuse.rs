//! Applying a snapshot over an older copy of it (a standby): a file that changed is
//! rebuilt from the blocks its old version already holds, and only the blocks that
//! differ are fetched from the repository.
//!
//! The old file is cut with the repository's chunker and each chunk hashed with the
//! keyed blob id, as a backup would; a chunk whose id is in the new content is the
//! same data (the id is a keyed hash of it), so it is copied from the old file into
//! the temp file at its new offset. Content-defined cuts realign after an insertion
//! or a cut in the middle, so a file truncated or grown in the middle still reuses
//! everything on both sides of the change. Copies use `copy_file_range`, which
//! shares the extents on file systems that can (btrfs, XFS) and copies in the
//! kernel elsewhere; the temp file is then renamed over the old one, so each file
//! changes atomically.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::chunk::Chunker;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::types::BlobId;

/// The blobs an old file holds: id -> (offset, length), the first place each occurs.
pub(super) fn old_blocks(
    key: &MasterKey,
    chunker: &Chunker,
    f: &File,
    shown: &Path,
) -> Result<HashMap<BlobId, (u64, u64)>> {
    let mut at = 0u64;
    let mut out = HashMap::new();
    super::verify::for_each_chunk(chunker, f, shown, |chunk| {
        out.entry(key.blob_id(chunk)).or_insert((at, chunk.len() as u64));
        at += chunk.len() as u64;
        Ok(())
    })?;
    Ok(out)
}

/// Copies `len` bytes at `from` in `src` to `to` in `dst`: in the kernel where it
/// can (`copy_file_range`), else through a buffer.
pub(super) fn copy_range(src: &File, from: u64, dst: &File, to: u64, len: u64, shown: &Path) -> Result<()> {
    let (mut off_in, mut off_out, mut left) = (from as i64, to as i64, len as usize);
    while left > 0 {
        // SAFETY: both descriptors are open; the offsets are valid pointers.
        let n = unsafe { libc::copy_file_range(src.as_raw_fd(), &mut off_in, dst.as_raw_fd(), &mut off_out, left, 0) };
        if n <= 0 {
            break; // not supported here (or a short source): the buffer path below
        }
        left -= n as usize;
    }
    if left > 0 {
        let done = (len as usize - left) as u64;
        let mut buf = vec![0u8; left];
        src.read_exact_at(&mut buf, from + done).map_err(|e| Error::io(shown, e))?;
        dst.write_all_at(&buf, to + done).map_err(|e| Error::io(shown, e))?;
    }
    Ok(())
}
