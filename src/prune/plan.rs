//! Prune planning: reads everything, changes nothing. Refuses on any damage, so an
//! executed plan can never delete the last copy of a blob a snapshot needs.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::usage::{self, Usage};
use super::{PruneOptions, PruneReport};
use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::repo::index::{Index, IndexFile, IndexPack, Location};
use crate::repo::lock::list_locks;
use crate::repo::pack::ENTRY_LEN;
use crate::repo::{PendingRecord, Repository};
use crate::types::{BlobId, PackId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackAction {
    Keep,
    /// Copy the used blobs to new packs, then mark the pack.
    Repack,
    /// No blob is used: mark the pack.
    Remove,
    /// Marked by an earlier prune and not used again: leaves (or stays out of) the index.
    Pending,
}

pub struct PrunePlan {
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
    waiting: BTreeMap<DateTime<Utc>, Vec<PackId>>,
    waiting_for: Vec<String>,
    snapshots: u64,
}

pub fn make(repo: &Repository, opts: &PruneOptions) -> Result<PrunePlan> {
    let mut problems = Vec::new();
    let mut index = Index::new();
    let index_files: Vec<String> = repo.backend().list(Kind::Index)?.into_iter().map(|(n, _)| n).collect();
    for name in &index_files {
        match repo.load_json::<IndexFile>(Kind::Index, name) {
            Ok(f) => f.packs.iter().for_each(|p| index.add_pack(p)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    index.compact();
    let stored: HashMap<String, u64> = repo.backend().list(Kind::Pack)?.into_iter().collect();

    // Packs pending deletion, with their headers (a snapshot may use them again).
    let mut pending_index = Index::new();
    let mut headers: HashMap<PackId, IndexPack> = HashMap::new();
    let mut records = Vec::new();
    let pending_files: Vec<String> = repo.backend().list(Kind::Pending)?.into_iter().map(|(n, _)| n).collect();
    for name in &pending_files {
        let rec: PendingRecord = repo.load_json(Kind::Pending, name)?;
        for p in &rec.packs {
            let Some(&size) = stored.get(&p.to_hex()) else { continue };
            if let Ok(entries) = repo.read_pack_header(&p.to_hex(), size) {
                let ip = IndexPack::new(*p, size, &entries);
                pending_index.add_pack(&ip);
                headers.insert(*p, ip);
            }
        }
        records.push(rec);
    }
    pending_index.compact();

    let pending_ids: HashSet<PackId> = records.iter().flat_map(|r| r.packs.iter().copied()).collect();
    let mut pack_sizes = HashMap::new();
    for (id, size) in index.packs() {
        pack_sizes.insert(id, size);
        match stored.get(&id.to_hex()) {
            None if !pending_ids.contains(&id) => problems.push(format!("pack {id} is indexed but missing")),
            Some(&s) if s != size => problems.push(format!("pack {id} is {s} bytes, the index says {size}")),
            _ => {}
        }
    }
    let snapshots = repo.snapshots()?;
    let usage = usage::compute(repo, &index, &pending_index, &snapshots)?;
    for (what, id) in usage.missing.iter().take(20) {
        problems.push(format!("{what} needs blob {id}, which is in no pack"));
    }
    if !problems.is_empty() {
        return Err(Error::invalid(
            "repository",
            format!(
                "prune found damage and deleted nothing:\n  {}\nrun `kura check`, then `kura repair index` or `kura repair snapshots`",
                problems.join("\n  ")
            ),
        ));
    }

    let mut plan = PrunePlan {
        actions: HashMap::new(),
        index_files,
        pending_files,
        usage,
        pack_sizes,
        reinstated: Vec::new(),
        deletable: Vec::new(),
        waiting: BTreeMap::new(),
        waiting_for: Vec::new(),
        snapshots: snapshots.len() as u64,
        index,
    };
    plan.decide_indexed(opts, &pending_ids);
    plan.decide_pending(repo, &records, &headers, &stored)?;
    Ok(plan)
}

impl PrunePlan {
    fn decide_indexed(&mut self, opts: &PruneOptions, pending: &HashSet<PackId>) {
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
            let unused_pct = 100.0 * (1.0 - bytes as f64 / size.max(1) as f64);
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
    }

    fn decide_pending(
        &mut self,
        repo: &Repository,
        records: &[PendingRecord],
        headers: &HashMap<PackId, IndexPack>,
        stored: &HashMap<String, u64>,
    ) -> Result<()> {
        let now = Utc::now();
        let live: Vec<_> = list_locks(repo)?.into_iter().filter(|(_, l)| !l.is_stale(now)).collect();
        for rec in records {
            let blockers: Vec<String> = live
                .iter()
                .filter(|(_, l)| l.started <= rec.marked_at)
                .map(|(n, l)| {
                    format!(
                        "{} {} (pid {} on {}, started {})",
                        l.purpose,
                        &n[..8.min(n.len())],
                        l.pid,
                        l.host,
                        l.started
                    )
                })
                .collect();
            for p in &rec.packs {
                if !stored.contains_key(&p.to_hex()) {
                    continue; // deleted by an interrupted prune
                }
                // Used again: a snapshot needs a blob whose only indexed copy is here.
                let used_again = self.usage.reinstate.contains(p)
                    || headers.get(p).is_some_and(|h| h.blobs.iter().any(|b| self.used_here(&b.id, p)));
                if used_again {
                    if let Some(h) = headers.get(p) {
                        self.actions.insert(*p, PackAction::Keep);
                        if !self.pack_sizes.contains_key(p) {
                            self.reinstated.push(h.clone());
                        }
                        continue;
                    }
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
        Ok(())
    }

    /// The index locates `id` in pack `p` (an adopted pending pack) and it is used.
    fn used_here(&self, id: &BlobId, p: &PackId) -> bool {
        self.index.position(id).is_some_and(|pos| self.usage.is_used_pos(pos) && self.index.at(pos).1.pack == *p)
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

    /// Used blobs of each pack to repack, in pack order.
    pub fn repack_sources(&self) -> Vec<(PackId, Vec<(BlobId, Location)>)> {
        let mut out: BTreeMap<PackId, Vec<(BlobId, Location)>> = BTreeMap::new();
        for pos in self.index.positions_by_pack() {
            let pos = pos as usize;
            if !self.usage.is_used_pos(pos) {
                continue;
            }
            let (id, loc) = self.index.at(pos);
            if self.actions.get(&loc.pack) == Some(&PackAction::Repack) {
                out.entry(loc.pack).or_default().push((id, loc));
            }
        }
        out.into_iter().collect()
    }

    /// Index entries of every pack that stays: kept packs and reinstated ones.
    pub fn kept_index_packs(&self) -> impl Iterator<Item = IndexPack> + '_ {
        let order = self.index.positions_by_pack();
        let mut i = 0;
        let kept = std::iter::from_fn(move || {
            while i < order.len() {
                let (_, first) = self.index.at(order[i] as usize);
                let mut j = i;
                let mut blobs = Vec::new();
                while j < order.len() && self.index.at(order[j] as usize).1.pack == first.pack {
                    let (id, loc) = self.index.at(order[j] as usize);
                    blobs.push(IndexPack::blob(id, &loc));
                    j += 1;
                }
                i = j;
                if self.actions.get(&first.pack) == Some(&PackAction::Keep) {
                    let size = self.pack_sizes[&first.pack];
                    return Some(IndexPack { id: first.pack, size, blobs });
                }
            }
            None
        });
        kept.chain(self.reinstated.iter().cloned())
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
            packs_reinstated: self.reinstated.len() as u64,
            packs_waiting: self.waiting.values().map(|v| v.len() as u64).sum(),
            waiting_for: self.waiting_for.clone(),
        }
    }
}
