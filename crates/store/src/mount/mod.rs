//! What `kura mount` reads, without FUSE: the layout of directories above the
//! snapshots (`layout`), the offset to blob mapping (`reader`), and [`Source`], which
//! loads trees and file content on demand with small bounded caches. The FUSE adapter
//! (the binary's `cli/mount`) turns kernel requests into calls on these.
//!
//! Memory: at most `BLOB_CACHE_BYTES` of decrypted blobs plus one blob per fetching
//! thread, and at most `TREE_CACHE` decoded trees.

pub mod layout;
pub mod reader;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender};

use crate::error::Result;
use crate::repo::index::Index;
use crate::repo::tree::{Node, Tree};
use crate::repo::Repository;
use crate::types::BlobId;
use reader::{BlobCache, ContentMap};

/// Bytes of decrypted blobs kept for reads.
pub const BLOB_CACHE_BYTES: usize = 96 << 20;
/// Decoded trees kept for listings and lookups.
pub const TREE_CACHE: usize = 512;
/// Blobs fetched ahead of a file that is read sequentially.
pub const READ_AHEAD: usize = 4;
/// Threads that fetch blobs ahead of sequential readers.
pub const PREFETCH_THREADS: usize = 2;

/// A file opened through the mount: its node, its content map, and where the last
/// read ended (a read starting there is sequential and fetches the next blobs ahead).
pub struct OpenFile {
    pub node: Arc<Node>,
    pub map: ContentMap,
    next: AtomicU64,
}

struct Blobs {
    cache: BlobCache,
    /// Blobs being fetched right now; a reader that needs one waits for it.
    fetching: HashSet<BlobId>,
}

/// The repository as the mount reads it: trees and blobs on demand, cached.
pub struct Source {
    repo: Arc<Repository>,
    index: Arc<Index>,
    blobs: Mutex<Blobs>,
    fetched: Condvar,
    trees: Mutex<TreeCache>,
    ahead: Option<Sender<BlobId>>,
}

impl Source {
    /// A source reading `repo` through `index`, with its prefetch threads started.
    pub fn new(repo: Arc<Repository>, index: Arc<Index>) -> Arc<Source> {
        let (tx, rx) = crossbeam_channel::bounded::<BlobId>(PREFETCH_THREADS * READ_AHEAD * 2);
        let src = Arc::new(Source {
            repo,
            index,
            blobs: Mutex::new(Blobs { cache: BlobCache::new(BLOB_CACHE_BYTES), fetching: HashSet::new() }),
            fetched: Condvar::new(),
            trees: Mutex::new(TreeCache::default()),
            ahead: Some(tx),
        });
        for n in 0..PREFETCH_THREADS {
            let weak = Arc::downgrade(&src);
            let rx: Receiver<BlobId> = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("kura-ahead-{n}")).spawn(move || {
                for id in rx {
                    let Some(src) = weak.upgrade() else { return };
                    // An error is the reader's to report when it needs the blob.
                    let _ = src.blob(&id);
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("no read-ahead thread: {e}");
            }
        }
        src
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// A tree, from the cache or the repository.
    pub fn tree(&self, id: &BlobId) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(t);
        }
        let t = Arc::new(self.repo.load_tree(&self.index, id)?);
        self.trees.lock().unwrap_or_else(|e| e.into_inner()).insert(*id, t.clone());
        Ok(t)
    }

    /// Opens a file node for reading: its content map is checked against the index.
    pub fn open(&self, node: Arc<Node>) -> Result<OpenFile> {
        let map = ContentMap::of(&node, &self.index)?;
        Ok(OpenFile { node, map, next: AtomicU64::new(0) })
    }

    /// Up to `len` bytes of `file` from `offset` (fewer only at the end of the file).
    pub fn read(&self, file: &OpenFile, offset: u64, len: u32) -> Result<Vec<u8>> {
        let spans = file.map.spans(offset, u64::from(len));
        let sequential = file.next.swap(offset.saturating_add(u64::from(len)), Ordering::Relaxed) == offset;
        if let (true, Some(last)) = (sequential, spans.last()) {
            self.fetch_ahead(file, last.blob + 1);
        }
        let mut out = Vec::with_capacity(spans.iter().map(|s| s.end - s.start).sum());
        for s in spans {
            let blob = self.blob(&file.node.content[s.blob])?;
            let part = blob.get(s.start..s.end).ok_or_else(|| {
                crate::Error::corrupt(
                    format!("file {}", file.node.name.lossy()),
                    "a blob is shorter than the index says",
                )
            })?;
            out.extend_from_slice(part);
        }
        Ok(out)
    }

    /// Asks the prefetch threads for the blobs `from..from + READ_AHEAD` of `file`
    /// that are neither cached nor being fetched. Never waits: a full queue skips.
    fn fetch_ahead(&self, file: &OpenFile, from: usize) {
        let Some(tx) = &self.ahead else { return };
        let end = (from + READ_AHEAD).min(file.map.blobs());
        for id in file.node.content.get(from..end).unwrap_or_default() {
            let known = {
                let b = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
                b.cache.contains(id) || b.fetching.contains(id)
            };
            if !known && tx.try_send(*id).is_err() {
                return;
            }
        }
    }

    /// One decrypted, verified blob: from the cache, from a fetch under way (waited
    /// for), or fetched now.
    pub fn blob(&self, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        let mut b = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(blob) = b.cache.get(id) {
                return Ok(blob);
            }
            if !b.fetching.contains(id) {
                break;
            }
            b = self.fetched.wait(b).unwrap_or_else(|e| e.into_inner());
        }
        b.fetching.insert(*id);
        drop(b);
        let res = self.fetch(id);
        let mut b = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        b.fetching.remove(id);
        if let Ok(blob) = &res {
            b.cache.insert(*id, blob.clone());
        }
        drop(b);
        self.fetched.notify_all();
        res
    }

    fn fetch(&self, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        let loc = self.index.get(id).ok_or_else(|| crate::Error::MissingBlob { blob: format!("data {id}") })?;
        Ok(Arc::new(self.repo.read_blob(id, &loc)?))
    }
}

/// Decoded trees, the oldest inserted dropped first past `TREE_CACHE`.
#[derive(Default)]
struct TreeCache {
    trees: HashMap<BlobId, Arc<Tree>>,
    order: VecDeque<BlobId>,
}

impl TreeCache {
    fn get(&self, id: &BlobId) -> Option<Arc<Tree>> {
        self.trees.get(id).cloned()
    }

    fn insert(&mut self, id: BlobId, t: Arc<Tree>) {
        if self.trees.insert(id, t).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > TREE_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.trees.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backup::{self, BackupOptions};
    use crate::progress::NoProgress;
    use crate::repo::testing::{make_tree, small_repo};

    /// Reads at every kind of offset (inside a blob, across blobs, past the end,
    /// sequential and not) give the file's bytes.
    #[test]
    fn reads_at_any_offset_match_the_file() {
        let dir = tempfile::tempdir().unwrap();
        make_tree(&dir.path().join("t"), &[("big.bin", 3 << 20, 7)]);
        let want = std::fs::read(dir.path().join("t/big.bin")).unwrap();
        let repo = small_repo(Arc::new(MemoryBackend::new()), b"mount unit tests");
        let opts = BackupOptions { paths: vec![dir.path().join("t")], threads: Some(1), ..Default::default() };
        let out = backup::run(&repo, &opts, &NoProgress).unwrap();
        let index = Arc::new(repo.load_index().unwrap());
        let src = Source::new(repo.clone(), index.clone());
        let node = crate::restore::resolve(
            &repo,
            &index,
            &out.snapshot.tree,
            &format!("{}/t/big.bin", dir.path().display()),
            "s",
        )
        .unwrap()
        .unwrap();
        let f = src.open(Arc::new(node)).unwrap();
        assert!(f.map.blobs() > 1, "the test needs a file of several blobs");
        let mut got = Vec::new();
        while got.len() < want.len() {
            got.extend(src.read(&f, got.len() as u64, 128 << 10).unwrap());
        }
        assert!(got == want);
        for (off, len) in [(0u64, 1u32), (want.len() as u64 - 5, 100), (1 << 20, 3 << 20), (want.len() as u64, 10)] {
            let end = (off + u64::from(len)).min(want.len() as u64) as usize;
            assert!(src.read(&f, off, len).unwrap() == want[off as usize..end], "{off} {len}");
        }
    }
}
