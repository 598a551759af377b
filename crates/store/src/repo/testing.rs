//! Hand-built repositories for unit tests: a cheap key, and snapshots whose trees
//! are written blob by blob, so that tests can make shapes a backup never would
//! (trees thousands of levels deep, one subtree shared by every directory). Also
//! what the crash and fault tests of several operations share: small repositories,
//! copies of a backend's objects, and the checks that a repository recovered
//! (it checks clean, every snapshot restores identical to its source).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{RngCore, SeedableRng};

use crate::backend::fault::FaultBackend;
use crate::backend::memory::MemoryBackend;
use crate::backend::{Backend, Kind};
use crate::check::{self, ReadData};
use crate::chunk::ChunkParams;
use crate::crypto::KdfParams;
use crate::progress::NoProgress;
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::keys;
use crate::repo::pack::PackBuilder;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType, RawName, Tree};
use crate::repo::Repository;
use crate::restore::{self, RestoreOptions};
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
        signals: None,
    }
}

/// A repository with 32 KiB packs, 4-64 KiB chunks (resealed config) and a cheap key:
/// a few backups of a few hundred KB make dozens of packs, and opening it (once per
/// faulted attempt in the crash tests) takes a millisecond.
pub fn small_repo(backend: Arc<dyn Backend>, pass: &[u8]) -> Arc<Repository> {
    let repo = Repository::init(backend.clone(), pass).unwrap();
    let mut kdf = KdfParams::new_random();
    (kdf.m_cost, kdf.t_cost) = (1024, 1);
    keys::add_key_with(backend.as_ref(), repo.key(), pass, kdf).unwrap();
    backend.delete(Kind::Key, repo.key_name()).unwrap();
    let mut cfg = repo.config().clone();
    cfg.pack_size = 32 << 10;
    cfg.chunker = ChunkParams { min: 4 << 10, avg: 16 << 10, max: 64 << 10, seed: cfg.chunker.seed };
    backend.put(Kind::Config, "config", &repo.key().encrypt_config(&serde_json::to_vec(&cfg).unwrap())).unwrap();
    Arc::new(Repository::open(backend, pass).unwrap())
}

const ALL_KINDS: [Kind; 7] =
    [Kind::Config, Kind::Key, Kind::Pack, Kind::Index, Kind::Snapshot, Kind::Lock, Kind::Pending];

/// Every object of a backend, with its content.
pub fn objects(b: &dyn Backend) -> BTreeMap<(Kind, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    for kind in ALL_KINDS {
        let names: Vec<String> = if kind == Kind::Config {
            b.exists(kind, "config").unwrap().then(|| "config".into()).into_iter().collect()
        } else {
            b.list(kind).unwrap().into_iter().map(|(n, _)| n).collect()
        };
        for n in names {
            out.insert((kind, n.clone()), b.get(kind, &n).unwrap());
        }
    }
    out
}

/// A copy of every object of `b` in a new memory backend.
pub fn copy_backend(b: &dyn Backend) -> Arc<MemoryBackend> {
    let m = Arc::new(MemoryBackend::new());
    for ((kind, name), data) in objects(b) {
        m.put(kind, &name, &data).unwrap();
    }
    m
}

/// Writes files of pseudo-random content: (relative name, length, seed). The same
/// seed gives the same content, so trees can share data.
pub fn make_tree(dir: &Path, files: &[(&str, usize, u64)]) {
    for &(name, len, seed) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut data = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        std::fs::write(p, data).unwrap();
    }
}

/// Regular files under `root` with their content, by relative path.
pub fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Restores every snapshot into a fresh directory and compares it with the tree it
/// was taken from (each snapshot backs up one directory, which must still exist).
#[track_caller]
pub fn assert_all_restore(repo: &Arc<Repository>, scratch: &Path) {
    let snaps = repo.snapshots().unwrap();
    assert!(!snaps.is_empty());
    for (id, snap) in snaps {
        let target = tempfile::tempdir_in(scratch).unwrap();
        let opts = RestoreOptions { target: target.path().to_path_buf(), threads: Some(1), ..Default::default() };
        let sum = restore::run(repo, &id, &snap, &opts, &NoProgress)
            .unwrap_or_else(|e| panic!("restore of snapshot {} failed: {e}", id.short()));
        assert!(sum.damaged.is_empty(), "snapshot {}: damaged files {:?}", id.short(), sum.damaged);
        let src = Path::new(&snap.paths[0]);
        let got = contents(&target.path().join(src.strip_prefix("/").unwrap()));
        assert!(got == contents(src), "snapshot {} of {} does not restore identically", id.short(), src.display());
    }
}

/// Checks the repository and fails on any error or damaged pack; returns the warnings.
#[track_caller]
pub fn assert_check_clean(repo: &Repository, read: ReadData) -> Vec<String> {
    let rep = check::run(repo, read, &NoProgress).unwrap();
    assert!(rep.is_clean(), "check found errors: {:?} {:?}", rep.errors, rep.damaged_packs);
    rep.warnings
}

/// The resume test for a write whose reply was lost (an S3 time-out after the PUT
/// landed): runs `op` on a copy of `base` behind `FaultBackend::lost_reply_at_put(n)`,
/// for n = 1, 2, ... until a run meets no fault. After each faulted run, `op` runs
/// again on what it left, without a fault, and must succeed; then `recovered` checks
/// the result. Returns how many puts were faulted.
pub fn lost_reply_at_every_put(
    base: &MemoryBackend,
    op: impl Fn(Arc<dyn Backend>) -> crate::error::Result<()>,
    recovered: impl Fn(&Arc<MemoryBackend>),
) -> u64 {
    for n in 1.. {
        let inner = copy_backend(base);
        let fault = Arc::new(FaultBackend::lost_reply_at_put(inner.clone(), n));
        let res = op(fault.clone());
        if !fault.tripped() {
            res.unwrap_or_else(|e| panic!("the run with no fault failed: {e}"));
            recovered(&inner);
            return n - 1;
        }
        drop(res);
        op(inner.clone()).unwrap_or_else(|e| panic!("the run after a lost reply at put {n} failed: {e}"));
        eprintln!("checking the repository resumed after a lost reply at put {n}");
        recovered(&inner);
    }
    unreachable!()
}
