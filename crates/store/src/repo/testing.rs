//! Hand-built repositories for unit tests: a cheap key, and snapshots whose trees
//! are written blob by blob, so that tests can make shapes a backup never would
//! (trees thousands of levels deep, one subtree shared by every directory).

use std::sync::Arc;

use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, Kind};
use crate::crypto::KdfParams;
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::pack::PackBuilder;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType, RawName, Tree};
use crate::repo::Repository;
use crate::types::{BlobId, BlobType, PackId};

/// An in-memory repository with a key that opens in a millisecond.
pub fn cheap_repo(pass: &[u8]) -> Arc<Repository> {
    let backend: Arc<MemoryBackend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), pass).unwrap();
    let mut kdf = KdfParams::new_random();
    (kdf.m_cost, kdf.t_cost) = (1024, 1);
    crate::repo::keys::add_key_with(backend.as_ref(), repo.key(), pass, kdf).unwrap();
    backend.delete(Kind::Key, repo.key_name()).unwrap();
    Arc::new(Repository::open(backend, pass).unwrap())
}

/// Collects blobs into one pack; `store` writes the pack and its index file.
pub struct Blobs<'a> {
    repo: &'a Repository,
    pack: PackBuilder,
}

impl<'a> Blobs<'a> {
    pub fn new(repo: &'a Repository) -> Self {
        Blobs { repo, pack: PackBuilder::new(0) }
    }

    pub fn add(&mut self, t: BlobType, data: &[u8]) -> BlobId {
        let id = self.repo.key().blob_id(data);
        self.pack.add(id, t, &self.repo.key().encrypt(data), data.len() as u32, false);
        id
    }

    pub fn dir(&mut self, nodes: Vec<Node>) -> BlobId {
        self.add(BlobType::Tree, &Tree { nodes }.encode())
    }

    pub fn store(self) -> PackId {
        let (pack, bytes, entries) = self.pack.finish(self.repo.key());
        self.repo.backend().put(Kind::Pack, &pack.to_hex(), &bytes).unwrap();
        let index = IndexFile { packs: vec![IndexPack::new(pack, bytes.len() as u64, &entries)] };
        self.repo.save_json(Kind::Index, &index).unwrap();
        pack
    }
}

pub fn file_node(name: &str, content: BlobId, size: u64) -> Node {
    Node { mode: 0o644, size, content: vec![content], ..Node::new(RawName::from(name), NodeType::File) }
}

pub fn dir_node(name: &str, subtree: BlobId) -> Node {
    Node { mode: 0o755, subtree: Some(subtree), ..Node::new(RawName::from(name), NodeType::Dir) }
}

/// A snapshot of `tree`, not yet saved.
pub fn snapshot_of(tree: BlobId) -> Snapshot {
    Snapshot {
        time: chrono::Utc::now(),
        host: "h".into(),
        username: "u".into(),
        paths: vec!["/d".into()],
        tags: vec![],
        parent: None,
        tree,
        partial: false,
        summary: None,
        program_version: "test".into(),
        original: None,
    }
}
