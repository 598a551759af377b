//! `dump`: one path of a snapshot written to a stream. A regular file is its bytes,
//! blob by blob (each fetched, decrypted and verified against its id as it is
//! needed); a directory is a tar archive of everything below it, its entries named
//! from the directory's own name down (`etc/ssh/sshd_config`; from the snapshot's
//! root, the root's entries). Memory stays at one blob whatever the size.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::repo::index::Index;
use crate::repo::tree::{Node, NodeType, Tree, MAX_DEPTH};
use crate::repo::Repository;
use crate::types::BlobId;

/// What `path` names in the tree `root`: `None` for the root itself.
pub fn resolve(repo: &Repository, index: &Index, root: &BlobId, path: &str, snap: &str) -> Result<Option<Node>> {
    crate::restore::resolve(repo, index, root, path, snap)
}

/// Writes a regular file's content to `out`; returns the bytes written.
pub fn file(repo: &Repository, index: &Index, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let mut r = BlobReader::new(repo, index, node);
    let n = std::io::copy(&mut r, out).map_err(|e| r.take_error().unwrap_or_else(|| Error::io("<output>", e)))?;
    Ok(n)
}

/// Writes the tree `tree` as a tar archive to `out`, its entries under `prefix`
/// (empty: at the archive's top). `dir` is the directory's own node, if any.
pub fn tar(repo: &Repository, index: &Index, tree: &BlobId, dir: Option<&Node>, out: &mut dyn Write) -> Result<()> {
    let prefix = dir.map(|d| PathBuf::from(d.name.as_os_str())).unwrap_or_default();
    limit(repo, index, tree, &prefix)?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut w = TarWriter { repo, index, b, links: HashMap::new() };
    if let Some(d) = dir {
        w.entry(&prefix, d)?;
    }
    w.tree(tree, &prefix, 0)?;
    w.b.into_inner().map_err(|e| Error::io("<output>", e))?.flush().map_err(|e| Error::io("<output>", e))
}

/// Refuses a tree past the limits restore and ls keep, before writing anything.
fn limit(repo: &Repository, index: &Index, tree: &BlobId, at: &Path) -> Result<()> {
    let mut trees: HashMap<BlobId, Rc<Tree>> = HashMap::new();
    let mut load = |id: &BlobId| -> Result<Rc<Tree>> {
        if let Some(t) = trees.get(id) {
            return Ok(t.clone());
        }
        let t = Rc::new(repo.load_tree(index, id)?);
        trees.insert(*id, t.clone());
        Ok(t)
    };
    crate::restore::expansion(&mut load, &mut Default::default(), tree, at, 0).map(|_| ())
}

struct TarWriter<'a, W: Write> {
    repo: &'a Repository,
    index: &'a Index,
    b: tar::Builder<W>,
    /// (device, inode) of multiply-linked files written, and their path: the other
    /// names become hard-link entries, as restore recreates them.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TarWriter<'_, W> {
    fn tree(&mut self, id: &BlobId, dir: &Path, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(
                format!("tree {}", id.short()),
                format!("nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let t = self.repo.load_tree(self.index, id)?;
        for n in &t.nodes {
            n.name.check_component()?;
            let p = dir.join(n.name.as_os_str());
            self.entry(&p, n)?;
            if let (NodeType::Dir, Some(sub)) = (n.node_type, &n.subtree) {
                self.tree(sub, &p, depth + 1)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, n: &Node) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode & 0o7777);
        h.set_uid(n.uid.into());
        h.set_gid(n.gid.into());
        h.set_mtime(n.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        let io = |e: std::io::Error| Error::io("<output>", e);
        match n.node_type {
            NodeType::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                self.b.append_data(&mut h, path, std::io::empty()).map_err(io)
            }
            NodeType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let target = n.target.as_ref().map(|t| t.as_os_str()).unwrap_or_default();
                self.b.append_link(&mut h, path, target).map_err(io)
            }
            NodeType::File if n.links > 1 && self.links.contains_key(&(n.device, n.inode)) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                let first = self.links[&(n.device, n.inode)].clone();
                self.b.append_link(&mut h, path, first).map_err(io)
            }
            NodeType::File => {
                if n.links > 1 {
                    self.links.insert((n.device, n.inode), path.to_path_buf());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                let mut r = BlobReader::new(self.repo, self.index, n);
                let res = self.b.append_data(&mut h, path, &mut r);
                res.map_err(|e| r.take_error().unwrap_or_else(|| io(e)))
            }
        }
    }
}

/// A file's content as a `Read`, one verified blob at a time. A repository error
/// is kept (the `io::Error` the reader returns only points at it) and the length
/// is checked against the node's size: a tar header has already promised it.
struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    node: &'a Node,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    total: u64,
    error: Option<Error>,
}

impl<'a> BlobReader<'a> {
    fn new(repo: &'a Repository, index: &'a Index, node: &'a Node) -> Self {
        BlobReader { repo, index, node, next: 0, buf: Vec::new(), pos: 0, total: 0, error: None }
    }

    fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn fail(&mut self, e: Error) -> std::io::Error {
        let msg = e.to_string();
        self.error = Some(e);
        std::io::Error::other(msg)
    }

    fn fill(&mut self) -> Result<()> {
        let id = self.node.content[self.next];
        let loc = self.index.get(&id).ok_or_else(|| Error::MissingBlob { blob: format!("data {id}") })?;
        self.buf = self.repo.read_blob(&id, &loc)?;
        self.pos = 0;
        self.next += 1;
        self.total += self.buf.len() as u64;
        if self.total > self.node.size || (self.next == self.node.content.len() && self.total != self.node.size) {
            return Err(Error::corrupt(
                format!("file {}", self.node.name.lossy()),
                format!("its blobs hold {} bytes or more, its size is {}", self.total, self.node.size),
            ));
        }
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.next == self.node.content.len() {
                if self.total != self.node.size {
                    let e = Error::corrupt(format!("file {}", self.node.name.lossy()), "it has no content blobs");
                    return Err(self.fail(e));
                }
                return Ok(0);
            }
            if let Err(e) = self.fill() {
                return Err(self.fail(e));
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
