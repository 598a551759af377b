//! `kura repair`: rebuild what can be rebuilt after damage.
//!
//! * `index`: reads the header of every stored pack and writes a fresh index, then
//!   removes the old index files. Packs pending deletion stay out. A pack whose
//!   header is unreadable is salvaged: its blobs that still authenticate are copied
//!   into new packs, and the pack moves to `quarantine/`.
//! * `packs`: reads whole packs; each whose content does not match its name is
//!   salvaged the same way, and its damaged blobs leave the index, so that the next
//!   backup stores them again.
//! * `snapshots`: writes a repaired copy of every snapshot that needs a missing or
//!   unreadable blob, keeping everything still readable and dropping (and listing)
//!   the rest. The copy is tagged `repaired` and names the original, which stays.
//!
//! Every damaged or stray object the run comes across (a name that is not an id,
//! content that does not authenticate) is moved to `quarantine/<folder>/<name>`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::{BackendError, Kind};
use crate::backup::BlobSaver;
use crate::error::{Error, Result};
use crate::repo::index::{Index, IndexFile, IndexPack};
use crate::repo::lock::{LockGuard, LockKind};
use crate::repo::pack::{header_len, open_blob, parse_header, PackEntry};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType, Tree};
use crate::repo::Repository;
use crate::types::{BlobId, BlobType, FileId, PackId};

#[derive(Debug, Default, Serialize)]
pub struct IndexRepair {
    pub packs_indexed: u64,
    pub blobs_indexed: u64,
    pub old_index_files: u64,
    /// Packs whose header could not be read: "id: reason". Each is salvaged (see
    /// `salvaged`) and then moved to quarantine.
    pub unreadable_packs: Vec<String>,
    /// What was recovered from each unreadable pack.
    pub salvaged: Vec<SalvagedPack>,
    /// Objects moved to `quarantine/`: "from -> quarantine/to".
    pub quarantined: Vec<String>,
    /// Temp files of interrupted writes (untouched for an hour) removed from `tmp/`.
    pub temp_files_removed: u64,
}

impl IndexRepair {
    /// Blobs that could not be recovered: `repair snapshots` has work to do.
    pub fn blobs_lost(&self) -> u64 {
        self.salvaged.iter().map(|s| s.blobs_lost).sum()
    }
}

/// One damaged pack and what became of its blobs.
#[derive(Debug, Default, Serialize)]
pub struct SalvagedPack {
    pub pack: String,
    pub reason: String,
    /// Blobs that still authenticate: copied, still verified, into new packs.
    pub blobs_kept: u64,
    /// Blobs that are damaged or cut off: no longer indexed.
    pub blobs_lost: u64,
    /// How the blob boundaries were found: "pack header", "index entries" or "scan".
    pub found_by: String,
    /// Where the damaged pack went.
    pub quarantined_as: String,
}

/// Moves every object this process skipped (stray names, content that does not
/// authenticate) of the given kinds to quarantine. Returns "from -> to" lines.
fn quarantine_damaged(repo: &Repository, kinds: &[Kind]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for d in repo.damaged_objects().into_iter().filter(|d| kinds.contains(&d.kind)) {
        match repo.backend().quarantine(d.kind, &d.name) {
            Ok(to) => out.push(format!("{}/{} -> quarantine/{to} ({})", d.kind.dir(), d.name, d.reason)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Writes `packs` as new index files of at most about 50,000 blobs each; returns
/// their names.
fn write_index(repo: &Repository, packs: Vec<IndexPack>) -> Result<HashSet<String>> {
    let mut written = HashSet::new();
    let mut file = IndexFile::default();
    let mut blobs = 0;
    for p in packs {
        blobs += p.blobs.len();
        file.packs.push(p);
        if blobs >= 50_000 {
            written.insert(repo.save_json(Kind::Index, &std::mem::take(&mut file))?.to_hex());
            blobs = 0;
        }
    }
    if !file.packs.is_empty() {
        written.insert(repo.save_json(Kind::Index, &file)?.to_hex());
    }
    Ok(written)
}

/// Deletes the index files in `old` except those just written (same content).
fn delete_old_index(repo: &Repository, old: &[String], written: &HashSet<String>) -> Result<()> {
    for name in old.iter().filter(|n| !written.contains(*n)) {
        match repo.backend().delete(Kind::Index, name) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// The readable index files and, per pack, the blobs they name (the entries that
/// let a pack whose header is lost be salvaged). Damaged files are noted on `repo`.
fn read_index_files(repo: &Repository) -> Result<(Vec<String>, HashMap<PackId, IndexPack>)> {
    let mut names = Vec::new();
    let mut packs: HashMap<PackId, IndexPack> = HashMap::new();
    for (name, _) in repo.list_objects(Kind::Index)? {
        let Some(f) = repo.load_json_or_skip::<IndexFile>(Kind::Index, &name)? else { continue };
        names.push(name);
        for p in f.packs {
            match packs.get_mut(&p.id) {
                Some(have) => {
                    let ids: HashSet<BlobId> = have.blobs.iter().map(|b| b.id).collect();
                    have.blobs.extend(p.blobs.into_iter().filter(|b| !ids.contains(&b.id)));
                }
                None => {
                    packs.insert(p.id, p);
                }
            }
        }
    }
    Ok((names, packs))
}

fn entries_of(p: &IndexPack) -> Vec<PackEntry> {
    p.blobs
        .iter()
        .map(|b| PackEntry {
            id: b.id,
            blob_type: b.blob_type,
            offset: b.offset,
            length: b.length,
            raw_length: b.raw_length,
            compressed: b.compressed,
        })
        .collect()
}

/// Copies every blob of a damaged pack that still authenticates into new packs
/// (through `saver`; `None` only counts them). The boundaries come from the pack's own header when it still
/// reads, else from the index entries known for the pack, else from a scan of the
/// pack body (see `pack::scan`).
fn salvage(
    repo: &Repository,
    id: &PackId,
    bytes: &[u8],
    known: Option<&IndexPack>,
    saver: Option<&BlobSaver>,
    reason: String,
) -> Result<SalvagedPack> {
    let name = id.to_hex();
    let from_header = header_len(bytes, &name).ok().and_then(|hl| {
        let start = bytes.len().checked_sub(4 + hl as usize)?;
        parse_header(repo.key(), &bytes[start..bytes.len() - 4], &name, bytes.len() as u64).ok()
    });
    let (entries, found_by) = match (from_header, known) {
        (Some(e), _) => (e, "pack header"),
        (None, Some(k)) => (entries_of(k), "index entries"),
        (None, None) => (crate::repo::pack::scan(repo.key(), bytes), "scan"),
    };
    let mut out = SalvagedPack { pack: name, reason, found_by: found_by.into(), ..Default::default() };
    let mut seen = HashSet::new();
    for e in &entries {
        if !seen.insert(e.id) {
            continue;
        }
        let end = e.offset as usize + e.length as usize;
        let blob = bytes.get(e.offset as usize..end).and_then(|b| open_blob(repo.key(), e, b, id).ok());
        match blob {
            Some(data) => {
                if let Some(saver) = saver {
                    saver.save(e.id, e.blob_type, data)?;
                }
                out.blobs_kept += 1;
            }
            None => out.blobs_lost += 1,
        }
    }
    if let Some(k) = known {
        // Blobs the index knew but the header or scan did not find are lost too.
        out.blobs_lost += k.blobs.iter().filter(|b| !seen.contains(&b.id)).count() as u64;
    }
    Ok(out)
}

pub fn repair_index(repo: &Arc<Repository>) -> Result<IndexRepair> {
    let _lock = LockGuard::acquire(repo, LockKind::Exclusive, "repair index")?;
    repo.clear_damaged();
    let (old, known) = read_index_files(repo)?;
    let pending = repo.pending_packs()?;
    let mut rep = IndexRepair { old_index_files: old.len() as u64, ..Default::default() };
    let mut packs = Vec::new();
    let mut unreadable = Vec::new();
    let saver = BlobSaver::start(repo.clone(), 1, repo.config().compression);
    for (name, size) in repo.list_objects(Kind::Pack)? {
        let id = PackId::from_hex(&name)?;
        if pending.contains(&id) {
            continue;
        }
        match repo.read_pack_header(&name, size) {
            Ok(entries) => {
                rep.packs_indexed += 1;
                rep.blobs_indexed += entries.len() as u64;
                packs.push(IndexPack::new(id, size, &entries));
            }
            Err(e @ (Error::Corrupt { .. } | Error::Backend(BackendError::Permanent { .. }))) => {
                rep.unreadable_packs.push(format!("{name}: {e}"));
                let bytes = repo.backend().get(Kind::Pack, &name)?;
                rep.salvaged.push(salvage(repo, &id, &bytes, known.get(&id), Some(&saver), e.to_string())?);
                unreadable.push(id);
            }
            Err(e) => return Err(e),
        }
    }
    // Salvaged blobs are stored and indexed (by the saver's own index file) before
    // the old index goes and the damaged packs move aside.
    saver.finish()?;
    // Moved aside before the index is replaced: were the run to stop in between, a
    // damaged pack left in data/ unindexed could be adopted again by a backup. A
    // second run completes the work.
    for (id, s) in unreadable.iter().zip(rep.salvaged.iter_mut()) {
        s.quarantined_as = format!("quarantine/{}", repo.backend().quarantine(Kind::Pack, &id.to_hex())?);
    }
    let written = write_index(repo, packs)?;
    delete_old_index(repo, &old, &written)?;
    rep.quarantined = quarantine_damaged(repo, &[Kind::Pack, Kind::Index, Kind::Pending])?;
    rep.temp_files_removed = repo.backend().cleanup() as u64;
    Ok(rep)
}

#[derive(Debug, Default, Serialize)]
pub struct PackRepair {
    pub packs_read: u64,
    pub bytes_read: u64,
    /// Packs whose content did not match their name, and what was saved from each.
    pub damaged: Vec<SalvagedPack>,
    pub dry_run: bool,
}

impl PackRepair {
    pub fn blobs_lost(&self) -> u64 {
        self.damaged.iter().map(|s| s.blobs_lost).sum()
    }
}

/// `kura repair packs`: reads every indexed pack (or those whose id starts with one
/// of `only`), and replaces each damaged one. Its blobs that still authenticate are
/// copied into new packs; the rest leave the index, so that the next backup stores
/// them again. The damaged pack moves to quarantine. An indexed pack that is
/// missing leaves the index as well.
pub fn repair_packs(repo: &Arc<Repository>, only: &[String], dry_run: bool) -> Result<PackRepair> {
    let _lock = LockGuard::acquire(repo, LockKind::Exclusive, "repair packs")?;
    repo.clear_damaged();
    let (old, known) = read_index_files(repo)?;
    let pending = repo.pending_packs()?;
    let stored: HashMap<String, u64> = repo.list_objects(Kind::Pack)?.into_iter().collect();
    let mut rep = PackRepair { dry_run, ..Default::default() };
    let mut ids: Vec<&PackId> = known.keys().filter(|id| !pending.contains(id)).collect();
    ids.sort();
    let wanted = |id: &PackId| only.is_empty() || only.iter().any(|p| id.to_hex().starts_with(&p.to_ascii_lowercase()));
    let saver = BlobSaver::start(repo.clone(), 1, repo.config().compression);
    let mut damaged = HashSet::new();
    for id in ids.into_iter().filter(|id| wanted(id)) {
        let name = id.to_hex();
        if !stored.contains_key(&name) {
            // Indexed but gone: its blobs are lost, and leave the index too.
            let lost = known.get(id).map_or(0, |p| p.blobs.len() as u64);
            rep.damaged.push(SalvagedPack {
                pack: name,
                reason: "missing from the repository".into(),
                blobs_lost: lost,
                found_by: "index entries".into(),
                ..Default::default()
            });
            damaged.insert(*id);
            continue;
        }
        let bytes = repo.backend().get(Kind::Pack, &name)?;
        rep.packs_read += 1;
        rep.bytes_read += bytes.len() as u64;
        if blake3::hash(&bytes).as_bytes() == &id.0 {
            continue;
        }
        let reason = "content hash does not match its name".to_string();
        let s = salvage(repo, id, &bytes, known.get(id), (!dry_run).then_some(&saver), reason)?;
        rep.damaged.push(s);
        damaged.insert(*id);
    }
    saver.finish()?;
    if dry_run || damaged.is_empty() {
        return Ok(rep);
    }
    // Damaged packs move aside first: were the run to stop before the new index,
    // a damaged pack left in data/ unindexed could be adopted again by a backup. A
    // second run finds it missing and completes the work.
    for s in rep.damaged.iter_mut().filter(|s| !s.reason.starts_with("missing")) {
        s.quarantined_as = format!("quarantine/{}", repo.backend().quarantine(Kind::Pack, &s.pack)?);
    }
    // The new index: every pack the old one named, except the damaged ones. The
    // copies are in the saver's index file, which is not among `old`.
    let mut keep: Vec<IndexPack> = known.into_values().filter(|p| !damaged.contains(&p.id)).collect();
    keep.sort_by_key(|p| p.id);
    let written = write_index(repo, keep)?;
    delete_old_index(repo, &old, &written)?;
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
    /// Damaged or stray objects in snapshots/ moved to quarantine: "from -> to".
    pub quarantined: Vec<String>,
    pub dry_run: bool,
}

pub fn repair_snapshots(repo: &Arc<Repository>, dry_run: bool) -> Result<SnapshotRepair> {
    let _lock = LockGuard::acquire(repo, LockKind::Shared, "repair snapshots")?;
    repo.clear_damaged();
    let index = repo.load_index()?;
    let all = repo.snapshots()?;
    // A snapshot that a repaired one already replaces is kept as it is, until the
    // user forgets it: it is not repaired a second time.
    let replaced: HashSet<FileId> = all.iter().filter_map(|(_, s)| s.original).collect();
    // A blob is lost when no index names it, or when the pack the index names is gone.
    let stored: HashSet<PackId> =
        repo.list_objects(Kind::Pack)?.iter().filter_map(|(n, _)| PackId::from_hex(n).ok()).collect();
    let mut rep = SnapshotRepair { dry_run, ..Default::default() };
    let saver = BlobSaver::start(repo.clone(), 1, repo.config().compression);
    let mut fixer =
        Fixer { repo, index: &index, stored, saver: &saver, done: HashMap::new(), dropped: Vec::new(), dry_run };
    let mut rewrites = Vec::new();
    for (id, snap) in all.into_iter().filter(|(id, _)| !replaced.contains(id)) {
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
            // The original stays: it is all that still names the lost files, and
            // `kura forget` removes it once the user has looked.
            repo.save_json(Kind::Snapshot, &new)?.to_hex()
        };
        rep.repaired.push(RepairedSnapshot { old: old_id.to_hex(), new: new_id, dropped });
    }
    if dry_run {
        rep.quarantined = repo
            .damaged_objects()
            .iter()
            .filter(|d| d.kind == Kind::Snapshot)
            .map(|d| format!("{d} (dry run: left in place)"))
            .collect();
    } else {
        rep.quarantined = quarantine_damaged(repo, &[Kind::Snapshot])?;
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
