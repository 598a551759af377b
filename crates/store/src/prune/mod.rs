//! `kura prune`: free the space of blobs no snapshot needs, without ever blocking
//! a backup. Deletion is two-phase (docs/FORMAT.md, "Prune"):
//!
//! 1. A prune marks unused and repacked packs in a pending-deletion record; they stay
//!    in the index, but new backups no longer deduplicate against them.
//! 2. They are deleted, and taken out of the index, once no backup that started
//!    before that stamp is still alive. If a snapshot written meanwhile uses one of
//!    their blobs, the pack is kept instead. On an idle repository this happens in
//!    the same run: once the marks are visible, no other lock is live and no snapshot
//!    appeared since the plan read them, so nothing can use a marked pack. Otherwise
//!    a later prune does it, and the report says how much waits and for whom.
//!
//! Prune first plans (`plan.rs`), refusing on any damage, then executes in a crash-safe
//! order: new packs, new index, old index files removed, pending record, deletions.

mod plan;
mod usage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::lock::{list_locks, LockGuard, LockKind};
use crate::repo::pack::{open_blob, PackBuilder};
use crate::repo::{PendingRecord, Repository};
use crate::types::{BlobType, FileId, PackId};
pub use plan::{PackAction, PrunePlan};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// A pack whose unused share exceeds this percentage is repacked.
    pub max_unused_pct: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { dry_run: false, max_unused_pct: 25.0 }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: u64,
    pub packs: u64,
    pub blobs: u64,
    pub blobs_used: u64,
    /// Packs marked now: they stay indexed until a later prune deletes them.
    pub packs_marked: u64,
    pub bytes_marked: u64,
    /// Packs whose used blobs were copied into new packs (then marked).
    pub packs_repacked: u64,
    pub bytes_repacked: u64,
    /// Packs marked by an earlier prune and deleted now.
    pub packs_deleted: u64,
    pub bytes_freed: u64,
    /// Packs marked earlier that a snapshot uses again: no longer marked.
    pub packs_reinstated: u64,
    /// Packs marked (earlier or now) that must wait for running backups; the first
    /// prune after those end deletes them.
    pub packs_waiting: u64,
    pub bytes_waiting: u64,
    pub waiting_for: Vec<String>,
    /// The packs marked in this run were deleted in this run too (an idle repository).
    pub marked_deleted_now: bool,
    /// Packs due for deletion that object-lock retention keeps (they stay pending).
    pub packs_retained: u64,
    /// Temp files of interrupted writes (untouched for an hour) removed from `tmp/`.
    pub temp_files_removed: u64,
}

/// Bytes of index entries per index file written by prune; bounds memory.
const BLOBS_PER_INDEX_FILE: usize = 50_000;

/// Plans a prune: takes the repository's exclusive lock, which the plan holds until
/// it is executed or dropped, then reads everything and changes nothing. Refuses on
/// any damage. `PrunePlan::report(true)` says what executing it would do.
pub fn plan(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<PrunePlan> {
    let lock = LockGuard::acquire(repo, LockKind::Exclusive, "prune")?;
    plan::make(repo, opts, lock)
}

/// Plans, then executes unless `opts.dry_run`.
pub fn run(repo: &Arc<Repository>, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    let plan = plan(repo, opts)?;
    if opts.dry_run {
        return Ok(plan.report(true));
    }
    execute(plan, progress)
}

/// Executes a plan in a crash-safe order (docs/FORMAT.md, "Prune"): new packs, new
/// index, old index files removed, pending records, deletions of packs marked
/// earlier, then of the packs marked now if the repository was idle.
pub fn execute(plan: PrunePlan, progress: &dyn Progress) -> Result<PruneReport> {
    let repo = plan.repo.clone();
    let repo = &repo;
    let mut rep = plan.report(false);
    // 1. New packs for the used blobs of packs being repacked.
    progress.set_total(plan.repack_bytes());
    let new_packs = repack(repo, &plan, progress)?;
    // 2. The new index: kept packs, reinstated packs and new packs; the packs marked
    // now in files of their own, so that deleting them at once drops just those files.
    let marked: HashSet<PackId> = plan.to_mark().collect();
    let kept = plan.kept_index_packs().filter(|p| !marked.contains(&p.id));
    write_index_files(repo, kept.chain(new_packs.iter().cloned()))?;
    let marked_index = write_index_files(repo, plan.kept_index_packs().filter(|p| marked.contains(&p.id)))?;
    // 3. Old index files go only after the new ones are durable.
    let kept_deletable = remove_old_index(repo, &plan)?;
    // 4. Record what left the index, stamped after the new index is complete. Packs
    // kept by retention stay pending, so that a later prune deletes them when it ends.
    let marked_record = rewrite_pending(repo, &plan, &marked, &kept_deletable)?;
    // 5. Phase two: packs marked by earlier prunes, now safe to delete.
    for id in plan.deletable().filter(|id| !kept_deletable.contains(id)) {
        delete_ignoring_missing(repo, Kind::Pack, &id.to_hex())?;
    }
    for name in &plan.pending_files {
        delete_ignoring_missing(repo, Kind::Pending, name)?;
    }
    rep.temp_files_removed = repo.backend().cleanup() as u64;
    plan.lock.check_fresh()?;
    if !kept_deletable.is_empty() {
        rep.packs_deleted -= kept_deletable.len() as u64;
        rep.bytes_freed -= kept_deletable.iter().map(|p| plan.pack_size(p)).sum::<u64>();
        rep.packs_retained = kept_deletable.len() as u64;
    }
    // 6. The packs marked now, at once if nothing can use them any more.
    if let Some(record) = marked_record {
        delete_marked_if_idle(repo, &plan, &marked, &marked_index, record, &mut rep)?;
        plan.lock.check_fresh()?;
    }
    Ok(rep)
}

/// Deletes the index files the plan read. Object lock: an index file under retention
/// cannot go; it stays, and so does every pack it names. Returns the packs due for
/// deletion that retention keeps (theirs or their index file's).
fn remove_old_index(repo: &Repository, plan: &PrunePlan) -> Result<Vec<PackId>> {
    let mut held: HashSet<PackId> = HashSet::new();
    for name in &plan.index_files {
        if repo.backend().retained_until(Kind::Index, name)?.is_some() {
            let file: IndexFile = repo.load_json(Kind::Index, name)?;
            held.extend(file.packs.iter().map(|p| p.id));
            continue;
        }
        delete_ignoring_missing(repo, Kind::Index, name)?;
    }
    let mut kept = Vec::new();
    for id in plan.deletable() {
        if held.contains(id) || repo.backend().retained_until(Kind::Pack, &id.to_hex())?.is_some() {
            kept.push(*id);
        }
    }
    Ok(kept)
}

fn delete_ignoring_missing(repo: &Repository, kind: Kind, name: &str) -> Result<()> {
    match repo.backend().delete(kind, name) {
        Err(e) if e.is_not_found() => Ok(()),
        r => Ok(r?),
    }
}

/// Copies the used blobs of repacked packs, verified, into new packs.
fn repack(repo: &Repository, plan: &PrunePlan, progress: &dyn Progress) -> Result<Vec<IndexPack>> {
    let pack_size = repo.config().pack_size as usize;
    let mut out = Vec::new();
    let mut open: HashMap<BlobType, PackBuilder> = HashMap::new();
    for (id, blobs) in plan.repack_sources() {
        let bytes = repo.backend().get(Kind::Pack, &id.to_hex())?;
        for (bid, loc) in blobs {
            let sealed = bytes
                .get(loc.offset as usize..(loc.offset + loc.length) as usize)
                .ok_or_else(|| Error::corrupt(format!("pack {id}"), "shorter than its index says"))?;
            open_blob(repo.key(), &loc.entry(bid), sealed, &id)?; // never copy damage
            let p = open.entry(loc.blob_type).or_insert_with(|| PackBuilder::new(pack_size));
            p.add(bid, loc.blob_type, sealed, loc.raw_length, loc.compressed);
            if p.len() >= pack_size {
                let p = open.remove(&loc.blob_type).expect("present");
                out.push(store_pack(repo, p)?);
            }
        }
        progress.advance(bytes.len() as u64);
    }
    for (_, p) in open {
        out.push(store_pack(repo, p)?);
    }
    Ok(out)
}

fn store_pack(repo: &Repository, p: PackBuilder) -> Result<IndexPack> {
    let (id, bytes, entries) = p.finish(repo.key());
    repo.backend().put(Kind::Pack, &id.to_hex(), &bytes)?;
    Ok(IndexPack::new(id, bytes.len() as u64, &entries))
}

/// Writes index files of bounded size for these packs; returns their names.
fn write_index_files(repo: &Repository, packs: impl Iterator<Item = IndexPack>) -> Result<Vec<FileId>> {
    let mut names = Vec::new();
    let mut file = IndexFile::default();
    let mut blobs = 0;
    for p in packs {
        blobs += p.blobs.len();
        file.packs.push(p);
        if blobs >= BLOBS_PER_INDEX_FILE {
            names.push(repo.save_json(Kind::Index, &std::mem::take(&mut file))?);
            blobs = 0;
        }
    }
    if !file.packs.is_empty() {
        names.push(repo.save_json(Kind::Index, &file)?);
    }
    Ok(names)
}

/// Replaces the pending records read by the plan with one record: packs still
/// waiting (with their original stamp) and packs marked now (stamped now). Returns
/// the record of the packs marked now, if any.
fn rewrite_pending(
    repo: &Repository,
    plan: &PrunePlan,
    marked: &HashSet<PackId>,
    retained: &[PackId],
) -> Result<Option<FileId>> {
    for (marked_at, packs) in plan.still_waiting() {
        repo.save_json(Kind::Pending, &PendingRecord { marked_at, packs })?;
    }
    if !retained.is_empty() {
        repo.save_json(Kind::Pending, &PendingRecord { marked_at: repo.now(), packs: retained.to_vec() })?;
    }
    if marked.is_empty() {
        return Ok(None);
    }
    let mut packs: Vec<PackId> = marked.iter().copied().collect();
    packs.sort();
    Ok(Some(repo.save_json(Kind::Pending, &PendingRecord { marked_at: repo.now(), packs })?))
}

/// Deletes the packs marked in this run when nothing can use them any more, or
/// reports them as waiting, with what they wait for.
fn delete_marked_if_idle(
    repo: &Repository,
    plan: &PrunePlan,
    marked: &HashSet<PackId>,
    marked_index: &[FileId],
    record: FileId,
    rep: &mut PruneReport,
) -> Result<()> {
    let blockers = blockers_since_plan(repo, plan)?;
    if blockers.is_empty() {
        let (deleted, freed) = delete_marked_now(repo, marked, marked_index, record)?;
        rep.packs_deleted += deleted;
        rep.bytes_freed += freed;
        rep.marked_deleted_now = deleted > 0;
        rep.packs_retained += marked.len() as u64 - deleted;
    } else {
        rep.packs_waiting += marked.len() as u64;
        rep.bytes_waiting += marked.iter().map(|p| plan.pack_size(p)).sum::<u64>();
        rep.waiting_for.extend(blockers);
        rep.waiting_for.sort();
        rep.waiting_for.dedup();
    }
    Ok(())
}

/// What could still use a pack marked in this run, now that the marks are visible:
/// any other live lock (a backup may have loaded the index before the marks, a
/// restore may be reading), and any snapshot the plan did not see (a backup that
/// ended meanwhile). Empty: the marked packs can go at once.
fn blockers_since_plan(repo: &Repository, plan: &PrunePlan) -> Result<Vec<String>> {
    let now = repo.now();
    let locks = list_locks(repo)?;
    let mut out: Vec<String> =
        locks.iter().filter(|(_, l)| l.is_live(now) && !l.is_own_exclusive()).map(|(n, l)| l.describe(n)).collect();
    for (name, _) in repo.list_objects(Kind::Snapshot)? {
        if !FileId::from_hex(&name).is_ok_and(|id| plan.snapshot_ids().contains(&id)) {
            out.push(format!("snapshot {} written during this prune", &name[..8.min(name.len())]));
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes the packs marked in this run, in a crash-safe order: their index files
/// first (an unindexed pending pack is read from its header by the next prune), then
/// the packs, then their pending record. Packs under object-lock retention stay
/// pending. Returns the packs deleted and the bytes freed.
fn delete_marked_now(
    repo: &Repository,
    marked: &HashSet<PackId>,
    marked_index: &[FileId],
    record: FileId,
) -> Result<(u64, u64)> {
    for name in marked_index {
        if repo.backend().retained_until(Kind::Index, &name.to_hex())?.is_some() {
            return Ok((0, 0)); // the index must keep naming them: a later prune
        }
    }
    for name in marked_index {
        delete_ignoring_missing(repo, Kind::Index, &name.to_hex())?;
    }
    let sizes: HashMap<String, u64> = repo.list_objects(Kind::Pack)?.into_iter().collect();
    let (mut deleted, mut freed, mut retained) = (0, 0, Vec::new());
    let mut ids: Vec<PackId> = marked.iter().copied().collect();
    ids.sort();
    for id in ids {
        let hex = id.to_hex();
        if repo.backend().retained_until(Kind::Pack, &hex)?.is_some() {
            retained.push(id);
            continue;
        }
        delete_ignoring_missing(repo, Kind::Pack, &hex)?;
        deleted += 1;
        freed += sizes.get(&hex).copied().unwrap_or(0);
    }
    if !retained.is_empty() {
        repo.save_json(Kind::Pending, &PendingRecord { marked_at: repo.now(), packs: retained })?;
    }
    delete_ignoring_missing(repo, Kind::Pending, &record.to_hex())?;
    Ok((deleted, freed))
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
