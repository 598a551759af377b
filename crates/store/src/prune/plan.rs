//! Prune planning: reads everything, changes nothing. Refuses on any damage, so an
//! executed plan can never delete the last copy of a blob a snapshot needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::usage::{self, Usage};
use super::{PruneOptions, PruneReport};
use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::repo::index::{Index, IndexFile, IndexPack, Location};
use crate::repo::lock::{list_locks, LockGuard, LockInfo};
use crate::repo::pack::ENTRY_LEN;
use crate::repo::{is_object_id, PendingRecord, Repository};
use crate::types::{BlobId, FileId, PackId};

/// Bytes of a pack's header beyond its entries: the seal and the length field.
const HEADER_FIXED: u64 = crate::crypto::OVERHEAD as u64 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackAction {
    Keep,
    /// Copy the used blobs to new packs, then mark the pack.
    Repack,
    /// No blob is used: mark the pack.
    Remove,
    /// Marked by an earlier prune and not used again: stays indexed while it waits,
    /// leaves the index when it is deleted.
    Pending,
}

pub struct PrunePlan {
    /// Held from planning to the end of execution: no other prune can change what
    /// this plan read. Backups may still run; the pending records are for them.
    pub(super) lock: LockGuard,
    pub(super) repo: Arc<Repository>,
    pub index: Index,
    /// Index files read; all are replaced.
    pub index_files: Vec<String>,
    /// Pending records read; all are replaced.
    pub pending_files: Vec<String>,
    pub actions: HashMap<PackId, PackAction>,
    usage: Usage,
    pack_sizes: HashMap<PackId, u64>,
    /// Headers of packs pending deletion that a snapshot uses again.
    reinstated: Vec<IndexPack>,
    deletable: Vec<PackId>,
    /// Pending packs a snapshot uses again: no longer pending.
    used_again: u64,
    waiting: BTreeMap<DateTime<Utc>, Vec<PackId>>,
    waiting_for: Vec<String>,
    snapshots: u64,
    /// The snapshots whose usage this plan computed: a snapshot not among them when
    /// the marks are visible was written by a backup that may use a marked pack.
    snapshot_ids: HashSet<FileId>,
}

pub(super) fn make(repo: &Arc<Repository>, opts: &PruneOptions, lock: LockGuard) -> Result<PrunePlan> {
    // Locks first. A backup that holds no lock now has written its index files and
    // its snapshot, so the lists read below include them; one still running shows
    // here. Read after the snapshots, a backup that ends in between would be in
    // neither, and packs its snapshot uses could be deleted.
    repo.clear_damaged();
    let now = repo.now();
    let live: Vec<(String, LockInfo)> =
        list_locks(repo)?.into_iter().filter(|(_, l)| l.is_live(now) && !l.is_own_exclusive()).collect();
    let mut problems = Vec::new();
    // Then snapshots, index files and packs, in the order a backup writes them in
    // reverse: a backup running beside this plan that writes its packs, index and
    // snapshot meanwhile is then seen whole or not at all (its index without its
    // snapshot, its packs without their index), never as a snapshot whose blobs are
    // in no index read, nor an index naming a pack the listing missed.
    let snapshots = repo.snapshots()?;

    // Pending records before the index: their packs are added to the index last, so
    // that a blob with a copy elsewhere (a repacked one) is located in that copy.
    let mut records: Vec<PendingRecord> = Vec::new();
    // A damaged record is skipped and kept: its packs are decided afresh, as if never
    // marked, so nothing is deleted on the strength of a record that was not read.
    let mut pending_files: Vec<String> = Vec::new();
    for (name, _) in repo.list_objects(Kind::Pending)? {
        if let Some(rec) = repo.load_json_or_skip(Kind::Pending, &name)? {
            records.push(rec);
            pending_files.push(name);
        }
    }
    let pending_ids: HashSet<PackId> = records.iter().flat_map(|r| r.packs.iter().copied()).collect();

    let mut index = Index::new();
    let index_files: Vec<String> = repo.list_objects(Kind::Index)?.into_iter().map(|(n, _)| n).collect();
    let mut with_pending = Vec::new();
    for name in &index_files {
        match repo.load_json::<IndexFile>(Kind::Index, name) {
            Ok(f) => {
                let (pend, rest): (Vec<_>, Vec<_>) = f.packs.iter().partition(|p| pending_ids.contains(&p.id));
                rest.into_iter().for_each(|p| index.add_pack(p));
                if !pend.is_empty() {
                    with_pending.push(name);
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    for name in with_pending {
        // Read again rather than kept: pending packs may hold most of the blobs.
        let f: IndexFile = repo.load_json(Kind::Index, name)?;
        f.packs.iter().filter(|p| pending_ids.contains(&p.id)).for_each(|p| index.add_pack(p));
    }
    index.compact();
    let stored: HashMap<String, u64> = repo.list_objects(Kind::Pack)?.into_iter().collect();

    // Pending packs no index names (an interrupted prune) are read from their headers:
    // a snapshot may still need them.
    let mut pending_index = Index::new();
    for p in pending_ids.iter().filter(|p| !index.has_pack(p)) {
        let Some(&size) = stored.get(&p.to_hex()) else { continue };
        if let Ok(entries) = repo.read_pack_header(&p.to_hex(), size) {
            pending_index.add_pack(&IndexPack::new(*p, size, &entries));
        }
    }
    pending_index.compact();
    // A pack in several records (left by an interrupted prune) is decided once, under
    // its latest stamp: the one more running backups can block.
    records.sort_by_key(|r| std::cmp::Reverse(r.marked_at));

    let mut pack_sizes = HashMap::new();
    for (id, size) in index.packs() {
        pack_sizes.insert(id, size);
        match stored.get(&id.to_hex()) {
            None if !pending_ids.contains(&id) => problems.push(format!("pack {id} is indexed but missing")),
            Some(&s) if s != size => problems.push(format!("pack {id} is {s} bytes, the index says {size}")),
            _ => {}
        }
    }
    // A snapshot that does not authenticate may still need packs: deciding without it
    // could delete them. `kura repair snapshots` moves it to quarantine first.
    for d in repo.damaged_objects().iter().filter(|d| d.kind == Kind::Snapshot && is_object_id(&d.name)) {
        problems.push(format!("snapshot {} is damaged ({})", d.name, d.reason));
    }
    let usage = usage::compute(repo, &index, &pending_index, &snapshots)?;
    for (what, id) in usage.missing.iter().take(20) {
        problems.push(format!("{what} needs blob {id}, which is in no pack"));
    }
    problems.extend(usage.unreadable.iter().take(20).cloned());
    if !problems.is_empty() {
        return Err(Error::invalid(
            "repository",
            format!(
                "prune found damage and deleted nothing:\n  {}\nrun `kura check`, then `kura repair index`, `kura repair packs` or `kura repair snapshots`",
                problems.join("\n  ")
            ),
        ));
    }

    let mut plan = PrunePlan {
        lock,
        repo: repo.clone(),
        actions: HashMap::new(),
        index_files,
        pending_files,
        usage,
        pack_sizes,
        reinstated: Vec::new(),
        deletable: Vec::new(),
        used_again: 0,
        waiting: BTreeMap::new(),
        waiting_for: Vec::new(),
        snapshots: snapshots.len() as u64,
        snapshot_ids: snapshots.iter().map(|(id, _)| *id).collect(),
        index,
    };
    let adopted_used = plan.decide_indexed(opts, &pending_ids);
    plan.decide_pending(&live, &records, &pending_index, &adopted_used, &stored);
    Ok(plan)
}

/// How much later than a pending record's stamp a live lock may have started and
/// still hold back the record's packs. The stamp is taken before the record is
/// stored, and the PUT takes time (retries on S3), so a backup whose lock started
/// just after the stamp may have read the pending records before this one landed and
/// deduplicated against its packs. Hosts sharing a repository also disagree about the
/// time a little. Ten minutes covers both; a pack marked then waits for the backups
/// started in that window too (docs/FORMAT.md, "Prune: two-phase deletion").
pub const MARK_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

impl PrunePlan {
    /// Returns the pending packs that are indexed (a backup adopted them) and hold a
    /// used blob the index locates there.
    fn decide_indexed(&mut self, opts: &PruneOptions, pending: &HashSet<PackId>) -> HashSet<PackId> {
        let mut used: HashMap<PackId, (u64, u64)> = HashMap::new(); // (used blobs, used bytes)
        for pos in 0..self.index.blob_count() {
            if self.usage.is_used_pos(pos) {
                let (_, loc) = self.index.at(pos);
                let e = used.entry(loc.pack).or_default();
                e.0 += 1;
                e.1 += loc.length as u64 + ENTRY_LEN as u64;
            }
        }
        for (&id, &size) in &self.pack_sizes {
            let (n, bytes) = used.get(&id).copied().unwrap_or_default();
            // The header's fixed part is not unused space (its entries are counted
            // with their blobs): a fully used pack is 0% unused.
            let unused = size.saturating_sub(bytes + HEADER_FIXED);
            let unused_pct = 100.0 * unused as f64 / size.max(1) as f64;
            let action = if pending.contains(&id) {
                PackAction::Pending // decided with the pending records
            } else if n == 0 {
                PackAction::Remove
            } else if unused_pct > opts.max_unused_pct {
                PackAction::Repack
            } else {
                PackAction::Keep
            };
            self.actions.insert(id, action);
        }
        pending.iter().filter(|p| used.contains_key(p)).copied().collect()
    }

    fn decide_pending(
        &mut self,
        live: &[(String, LockInfo)],
        records: &[PendingRecord],
        pending_index: &Index,
        adopted_used: &HashSet<PackId>,
        stored: &HashMap<String, u64>,
    ) {
        let mut seen = HashSet::new();
        for rec in records {
            let blockers: Vec<String> = live
                .iter()
                .filter(|(_, l)| l.started <= rec.marked_at + MARK_MARGIN)
                .map(|(n, l)| l.describe(n))
                .collect();
            for p in &rec.packs {
                let Some(&size) = stored.get(&p.to_hex()) else { continue }; // deleted by an interrupted prune
                if !seen.insert(*p) {
                    continue; // in an earlier (later-stamped) record too
                }
                // Used again: a snapshot needs a blob found only here (through the
                // pack's header), or one the index locates here (an adopted pack).
                if self.usage.reinstate.contains(p) || adopted_used.contains(p) {
                    self.actions.insert(*p, PackAction::Keep);
                    self.used_again += 1;
                    if !self.pack_sizes.contains_key(p) {
                        let blobs = pending_index.iter().filter(|(_, l)| l.pack == *p);
                        let blobs = blobs.map(|(id, l)| IndexPack::blob(id, &l)).collect();
                        self.reinstated.push(IndexPack { id: *p, size, blobs });
                    }
                    continue;
                }
                self.actions.insert(*p, PackAction::Pending);
                if blockers.is_empty() {
                    self.deletable.push(*p);
                } else {
                    self.waiting.entry(rec.marked_at).or_default().push(*p);
                    self.waiting_for.extend(blockers.iter().cloned());
                }
            }
        }
        self.waiting_for.sort();
        self.waiting_for.dedup();
        for p in &self.deletable {
            self.pack_sizes.entry(*p).or_insert_with(|| stored.get(&p.to_hex()).copied().unwrap_or(0));
        }
    }

    pub fn count(&self, a: PackAction) -> u64 {
        self.actions.values().filter(|&&x| x == a).count() as u64
    }

    fn bytes(&self, a: PackAction) -> u64 {
        self.actions.iter().filter(|(_, &x)| x == a).map(|(p, _)| self.pack_sizes.get(p).copied().unwrap_or(0)).sum()
    }

    pub fn repack_bytes(&self) -> u64 {
        self.bytes(PackAction::Repack)
    }

    /// Packs to take out of the index now.
    pub fn to_mark(&self) -> impl Iterator<Item = PackId> + '_ {
        self.actions.iter().filter(|(_, &a)| a == PackAction::Remove || a == PackAction::Repack).map(|(p, _)| *p)
    }

    pub fn deletable(&self) -> impl Iterator<Item = &PackId> {
        self.deletable.iter()
    }

    pub fn still_waiting(&self) -> impl Iterator<Item = (DateTime<Utc>, Vec<PackId>)> + '_ {
        self.waiting.iter().map(|(t, p)| (*t, p.clone()))
    }

    /// Used blobs of each pack to repack, one pack at a time (nothing is collected
    /// for all packs at once: memory stays at one pack's list).
    pub fn repack_sources(&self) -> impl Iterator<Item = (PackId, Vec<(BlobId, Location)>)> + '_ {
        self.by_pack().filter_map(|(pack, slots)| {
            if self.actions.get(&pack) != Some(&PackAction::Repack) {
                return None;
            }
            let used = slots.into_iter().filter(|(pos, _, _)| self.usage.is_used_pos(*pos)).map(|(_, id, l)| (id, l));
            Some((pack, used.collect()))
        })
    }

    /// Index entries grouped by pack, one pack at a time.
    fn by_pack(&self) -> impl Iterator<Item = (PackId, Vec<(usize, BlobId, Location)>)> + '_ {
        let order = self.index.positions_by_pack();
        let mut i = 0;
        std::iter::from_fn(move || {
            let first = self.index.at(*order.get(i)? as usize).1.pack;
            let mut slots = Vec::new();
            while let Some(&pos) = order.get(i) {
                let (id, loc) = self.index.at(pos as usize);
                if loc.pack != first {
                    break;
                }
                slots.push((pos as usize, id, loc));
                i += 1;
            }
            Some((first, slots))
        })
    }

    /// Index entries of every pack that stays: all indexed packs except those deleted
    /// now (packs marked in this run stay indexed until a later prune deletes them),
    /// and pending packs used again.
    pub fn kept_index_packs(&self) -> impl Iterator<Item = IndexPack> + '_ {
        let deleted: HashSet<PackId> = self.deletable.iter().copied().collect();
        let kept = self.by_pack().filter_map(move |(pack, slots)| {
            (!deleted.contains(&pack)).then(|| IndexPack {
                id: pack,
                size: self.pack_sizes[&pack],
                blobs: slots.iter().map(|(_, id, loc)| IndexPack::blob(*id, loc)).collect(),
            })
        });
        kept.chain(self.reinstated.iter().cloned())
    }

    pub fn snapshot_ids(&self) -> &HashSet<FileId> {
        &self.snapshot_ids
    }

    pub fn pack_size(&self, id: &PackId) -> u64 {
        self.pack_sizes.get(id).copied().unwrap_or(0)
    }

    pub fn report(&self, dry_run: bool) -> PruneReport {
        PruneReport {
            dry_run,
            snapshots: self.snapshots,
            packs: self.index.packs().count() as u64,
            blobs: self.index.blob_count() as u64,
            blobs_used: self.usage.used_count,
            packs_marked: self.count(PackAction::Remove) + self.count(PackAction::Repack),
            bytes_marked: self.bytes(PackAction::Remove) + self.bytes(PackAction::Repack),
            packs_repacked: self.count(PackAction::Repack),
            bytes_repacked: self.bytes(PackAction::Repack),
            packs_deleted: self.deletable.len() as u64,
            bytes_freed: self.deletable.iter().map(|p| self.pack_sizes.get(p).copied().unwrap_or(0)).sum(),
            packs_reinstated: self.used_again,
            packs_waiting: self.waiting.values().map(|v| v.len() as u64).sum(),
            bytes_waiting: self.waiting.values().flatten().map(|p| self.pack_size(p)).sum(),
            marked_deleted_now: false,
            waiting_for: self.waiting_for.clone(),
            packs_retained: 0,
            temp_files_removed: 0,
        }
    }
}
