//! `kura repair`: rebuild what can be rebuilt after damage.
//!
//! * `index`: reads the header of every stored pack and writes a fresh index, then
//!   removes the old index files. Packs pending deletion stay out. Unreadable packs
//!   are reported and left alone (prune and check name them).
//! * `snapshots`: rewrites every snapshot that needs a missing or unreadable blob,
//!   keeping everything still readable and dropping (and listing) the rest. The new
//!   snapshot is tagged `repaired` and names the one it replaces.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::Kind;
use crate::backup::BlobSaver;
use crate::error::{Error, Result};
use crate::repo::index::{Index, IndexFile, IndexPack};
use crate::repo::lock::{LockGuard, LockKind};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType, Tree};
use crate::repo::Repository;
use crate::types::{BlobId, BlobType, PackId};

#[derive(Debug, Default, Serialize)]
pub struct IndexRepair {
    pub packs_indexed: u64,
    pub blobs_indexed: u64,
    pub old_index_files: u64,
    /// Packs whose header could not be read: "id: reason".
    pub unreadable_packs: Vec<String>,
    /// Temp files of interrupted writes (untouched for an hour) removed from `tmp/`.
    pub temp_files_removed: u64,
}

pub fn repair_index(repo: &Arc<Repository>) -> Result<IndexRepair> {
    let _lock = LockGuard::acquire(repo, LockKind::Exclusive, "repair index")?;
    let old: Vec<String> = repo.backend().list(Kind::Index)?.into_iter().map(|(n, _)| n).collect();
    let pending = repo.pending_packs()?;
    let mut rep = IndexRepair { old_index_files: old.len() as u64, ..Default::default() };
    let mut file = IndexFile::default();
    let mut blobs_in_file = 0;
    for (name, size) in repo.backend().list(Kind::Pack)? {
        let id = PackId::from_hex(&name)?;
        if pending.contains(&id) {
            continue;
        }
        match repo.read_pack_header(&name, size) {
            Ok(entries) => {
                rep.packs_indexed += 1;
                rep.blobs_indexed += entries.len() as u64;
                blobs_in_file += entries.len();
                file.packs.push(IndexPack::new(id, size, &entries));
                if blobs_in_file >= 50_000 {
                    repo.save_json(Kind::Index, &std::mem::take(&mut file))?;
                    blobs_in_file = 0;
                }
            }
            Err(e) => rep.unreadable_packs.push(format!("{name}: {e}")),
        }
    }
    let written = if file.packs.is_empty() { None } else { Some(repo.save_json(Kind::Index, &file)?) };
    for name in old {
        if written.is_some_and(|w| w.to_hex() == name) {
            continue; // identical content: the same file
        }
        match repo.backend().delete(Kind::Index, &name) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    rep.temp_files_removed = repo.backend().cleanup() as u64;
    Ok(rep)
}

#[derive(Debug, Default, Serialize)]
pub struct RepairedSnapshot {
    pub old: String,
    pub new: String,
    /// Paths that were dropped, with why.
    pub dropped: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepair {
    pub snapshots_checked: u64,
    pub repaired: Vec<RepairedSnapshot>,
    pub dry_run: bool,
}

pub fn repair_snapshots(repo: &Arc<Repository>, dry_run: bool) -> Result<SnapshotRepair> {
    let _lock = LockGuard::acquire(repo, LockKind::Shared, "repair snapshots")?;
    let index = repo.load_index()?;
    // A blob is lost when no index names it, or when the pack the index names is gone.
    let stored: HashSet<PackId> =
        repo.backend().list(Kind::Pack)?.iter().filter_map(|(n, _)| PackId::from_hex(n).ok()).collect();
    let mut rep = SnapshotRepair { dry_run, ..Default::default() };
    let saver = BlobSaver::start(repo.clone(), 1, repo.config().compression);
    let mut fixer =
        Fixer { repo, index: &index, stored, saver: &saver, done: HashMap::new(), dropped: Vec::new(), dry_run };
    let mut rewrites = Vec::new();
    for (id, snap) in repo.snapshots()? {
        rep.snapshots_checked += 1;
        fixer.dropped.clear();
        let new_root = fixer.fix_tree(&snap.tree, Path::new("/"))?;
        if new_root != snap.tree || !fixer.dropped.is_empty() {
            rewrites.push((id, snap, new_root, std::mem::take(&mut fixer.dropped)));
        }
    }
    saver.finish()?; // new trees are durable and indexed before any snapshot names them
    for (old_id, snap, root, dropped) in rewrites {
        let new_id = if dry_run {
            String::from("(dry run)")
        } else {
            let mut tags = snap.tags.clone();
            if !tags.iter().any(|t| t == "repaired") {
                tags.push("repaired".into());
            }
            let new = Snapshot { tree: root, tags, partial: true, original: Some(old_id), ..snap.clone() };
            let nid = repo.save_json(Kind::Snapshot, &new)?;
            repo.backend().delete(Kind::Snapshot, &old_id.to_hex())?;
            nid.to_hex()
        };
        rep.repaired.push(RepairedSnapshot { old: old_id.to_hex(), new: new_id, dropped });
    }
    Ok(rep)
}

struct Fixer<'a> {
    repo: &'a Arc<Repository>,
    index: &'a Index,
    stored: HashSet<PackId>,
    saver: &'a BlobSaver,
    /// Trees already fixed: old id -> new id (shared subtrees are fixed once).
    done: HashMap<BlobId, BlobId>,
    dropped: Vec<String>,
    dry_run: bool,
}

impl Fixer<'_> {
    fn available(&self, id: &BlobId) -> bool {
        self.index.get(id).is_some_and(|l| self.stored.contains(&l.pack))
    }

    fn fix_tree(&mut self, id: &BlobId, path: &Path) -> Result<BlobId> {
        if let Some(n) = self.done.get(id) {
            return Ok(*n);
        }
        let tree = match self.repo.load_tree(self.index, id) {
            Ok(t) => t,
            Err(e) => {
                self.dropped.push(format!("{}: directory unreadable ({e}); restored as empty", path.display()));
                Tree::default()
            }
        };
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for n in tree.nodes {
            let child = path.join(n.name.as_os_str());
            if let Some(fixed) = self.fix_node(n, &child)? {
                nodes.push(fixed);
            }
        }
        let new = Tree { nodes };
        let bytes = new.encode();
        let new_id = self.repo.key().blob_id(&bytes);
        if new_id != *id && !self.available(&new_id) && !self.dry_run {
            self.saver.save(new_id, BlobType::Tree, bytes)?;
        }
        self.done.insert(*id, new_id);
        Ok(new_id)
    }

    fn fix_node(&mut self, mut n: Node, path: &Path) -> Result<Option<Node>> {
        match n.node_type {
            NodeType::Dir => {
                let sub =
                    n.subtree.ok_or_else(|| Error::corrupt(path.display().to_string(), "directory without tree"))?;
                n.subtree = Some(self.fix_tree(&sub, path)?);
                Ok(Some(n))
            }
            NodeType::File => {
                let lost = n.content.iter().filter(|b| !self.available(b)).count();
                if lost == 0 {
                    return Ok(Some(n));
                }
                self.dropped.push(format!(
                    "{}: {lost} of {} data blobs lost; file dropped",
                    path.display(),
                    n.content.len()
                ));
                Ok(None)
            }
            NodeType::Symlink => Ok(Some(n)),
        }
    }
}
