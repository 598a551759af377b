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

/// `verify_file` on a file already open; `path` names it in errors.
pub fn verify_open(key: &MasterKey, chunker: &Chunker, mut f: File, path: &Path, node: &Node) -> Result<()> {
    let mismatch = |why: &str| Error::corrupt(format!("restored file {}", path.display()), why.to_string());
    let max = chunker.params().max as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(2 * max);
    let (mut eof, mut n_blob, mut total) = (false, 0usize, 0u64);
    loop {
        while !eof && buf.len() < max {
            let n = f
                .by_ref()
                .take((max - buf.len()) as u64 + (1 << 20))
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(path, e))?;
            eof = n == 0;
        }
        let Some(cut) = chunker.find_cut(&buf, eof) else { break };
        if node.content.get(n_blob) != Some(&key.blob_id(&buf[..cut])) {
            return Err(mismatch(&format!("content differs from the snapshot in chunk {n_blob}")));
        }
        n_blob += 1;
        total += cut as u64;
        buf.drain(..cut);
    }
    if n_blob != node.content.len() || total != node.size {
        return Err(mismatch("size differs from the snapshot"));
    }
    Ok(())
}
