//! Builds a large synthetic repository fast, straight through the library, for
//! measuring prune and check at scale (docs/PERFORMANCE.md):
//!
//! ```text
//! cargo run --release --example synth_repo -- DIR [BLOBS]
//! ```
//!
//! It writes BLOBS (default 1,000,000) distinct 128-byte data blobs in 16 MiB packs,
//! files of 100 blobs each in directories of 100 files, and two snapshots that each
//! reference half of the files. Then it removes the second snapshot, so that a prune
//! finds half of the data unused. Passphrase: KURA_PASSWORD (default "synth").

use std::sync::Arc;

use kura::backend::local::LocalBackend;
use kura::backend::Kind;
use kura::repo::index::{IndexFile, IndexPack};
use kura::repo::pack::PackBuilder;
use kura::repo::snapshot::Snapshot;
use kura::repo::tree::{Node, NodeType, RawName, Tree};
use kura::repo::Repository;
use kura::types::{BlobId, BlobType};

const BLOBS_PER_FILE: usize = 100;
const FILES_PER_DIR: usize = 100;

struct Writer<'a> {
    repo: &'a Repository,
    packs: [Option<PackBuilder>; 2],
    index: IndexFile,
    blobs_in_index: usize,
}

impl Writer<'_> {
    fn add(&mut self, t: BlobType, data: &[u8]) -> BlobId {
        let id = self.repo.key().blob_id(data);
        let slot = if t == BlobType::Data { 0 } else { 1 };
        let p = self.packs[slot].get_or_insert_with(|| PackBuilder::new(17 << 20));
        p.add(id, t, &self.repo.key().encrypt(data), data.len() as u32, false);
        if p.len() >= self.repo.config().pack_size as usize {
            let p = self.packs[slot].take().unwrap();
            self.flush(p);
        }
        id
    }
    fn flush(&mut self, p: PackBuilder) {
        let (id, bytes, entries) = p.finish(self.repo.key());
        self.repo.backend().put(Kind::Pack, &id.to_hex(), &bytes).unwrap();
        self.blobs_in_index += entries.len();
        self.index.packs.push(IndexPack::new(id, bytes.len() as u64, &entries));
        if self.blobs_in_index > 50_000 {
            self.repo.save_json(Kind::Index, &std::mem::take(&mut self.index)).unwrap();
            self.blobs_in_index = 0;
        }
    }
    fn finish(mut self) {
        for p in std::mem::take(&mut self.packs).into_iter().flatten() {
            self.flush(p);
        }
        self.repo.save_json(Kind::Index, &self.index).unwrap();
    }
}

fn node(name: String, t: NodeType) -> Node {
    Node {
        mode: 0o644,
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_000,
        ..Node::new(RawName(name.into_bytes()), t)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: synth_repo DIR [BLOBS]");
    let blobs: usize = args.get(2).map_or(1_000_000, |s| s.parse().expect("BLOBS is a number"));
    let pass = std::env::var("KURA_PASSWORD").unwrap_or_else(|_| "synth".into());
    let repo = Arc::new(Repository::init(Arc::new(LocalBackend::new(dir)), pass.as_bytes()).unwrap());
    let mut w = Writer { repo: &repo, packs: [None, None], index: IndexFile::default(), blobs_in_index: 0 };
    let files = blobs / BLOBS_PER_FILE;
    let mut dirs: [Vec<Node>; 2] = [vec![], vec![]]; // one root listing per snapshot
    let mut files_in_dir: [Vec<Node>; 2] = [vec![], vec![]];
    let mut data = [0u8; 128];
    for f in 0..files {
        let half = f % 2;
        let mut n = node(format!("file{f:07}"), NodeType::File);
        for b in 0..BLOBS_PER_FILE {
            data[..8].copy_from_slice(&((f * BLOBS_PER_FILE + b) as u64).to_le_bytes());
            n.content.push(w.add(BlobType::Data, &data));
        }
        n.size = (BLOBS_PER_FILE * data.len()) as u64;
        files_in_dir[half].push(n);
        if files_in_dir[half].len() == FILES_PER_DIR || f + 2 >= files {
            let nodes = std::mem::take(&mut files_in_dir[half]);
            if nodes.is_empty() {
                continue;
            }
            let t = w.add(BlobType::Tree, &Tree { nodes }.encode());
            let mut d = node(format!("dir{:05}", dirs[half].len()), NodeType::Dir);
            d.mode = 0o755;
            d.subtree = Some(t);
            dirs[half].push(d);
        }
    }
    let roots: Vec<BlobId> = dirs.into_iter().map(|nodes| w.add(BlobType::Tree, &Tree { nodes }.encode())).collect();
    w.finish();
    let mut ids = Vec::new();
    for (i, root) in roots.into_iter().enumerate() {
        let snap = Snapshot {
            time: chrono::Utc::now() + chrono::Duration::seconds(i as i64),
            host: "synth".into(),
            username: "synth".into(),
            paths: vec![format!("/synth{i}")],
            tags: vec![],
            parent: None,
            tree: root,
            partial: false,
            summary: None,
            program_version: "synth_repo".into(),
            original: None,
            signals: None,
        };
        ids.push(repo.save_json(Kind::Snapshot, &snap).unwrap());
    }
    repo.backend().delete(Kind::Snapshot, &ids[1].to_hex()).unwrap();
    println!(
        "{dir}: {blobs} data blobs in {files} files; kept snapshot {}, removed {}",
        ids[0].short(),
        ids[1].short()
    );
}
