//! Checks a file on disk against a snapshot node by re-chunking it and comparing
//! blob ids: the same proof the backup made, with no repository reads.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::chunk::Chunker;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::repo::tree::Node;

pub fn verify_file(key: &MasterKey, chunker: &Chunker, path: &Path, node: &Node) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    verify_open(key, chunker, f, path, node)
}

/// Cuts what `f` holds with the repository's chunker, as a backup would, and hands
/// each chunk to `visit` in order; `path` names the file in errors.
pub(super) fn for_each_chunk(
    chunker: &Chunker,
    mut f: impl Read,
    path: &Path,
    mut visit: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let max = chunker.params().max as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * max);
    let mut eof = false;
    loop {
        while !eof && buf.len() < max {
            let n = f
                .by_ref()
                .take((max - buf.len()) as u64 + (1 << 20))
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(path, e))?;
            eof = n == 0;
        }
        let Some(cut) = chunker.find_cut(&buf, eof) else { return Ok(()) };
        visit(&buf[..cut])?;
        buf.drain(..cut);
    }
}

/// `verify_file` on a file already open; `path` names it in errors.
pub fn verify_open(key: &MasterKey, chunker: &Chunker, f: File, path: &Path, node: &Node) -> Result<()> {
    let mismatch = |why: &str| Error::corrupt(format!("restored file {}", path.display()), why.to_string());
    let (mut n_blob, mut total) = (0usize, 0u64);
    for_each_chunk(chunker, f, path, |chunk| {
        if node.content.get(n_blob) != Some(&key.blob_id(chunk)) {
            return Err(mismatch(&format!("content differs from the snapshot in chunk {n_blob}")));
        }
        n_blob += 1;
        total += chunk.len() as u64;
        Ok(())
    })?;
    if n_blob != node.content.len() || total != node.size {
        return Err(mismatch("size differs from the snapshot"));
    }
    Ok(())
}
