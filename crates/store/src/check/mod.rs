//! `kura check`: is every snapshot fully restorable?
//!
//! Structure (always): every index file decrypts, every indexed pack exists with the
//! size the index expects, every snapshot's trees load, and every blob they name is
//! indexed. Data (with `--read-data` or a subset): whole packs are read, their hash
//! must match their name, and every blob must decrypt and match its id. Damage is
//! reported by pack, with the snapshots and files it affects: for a pack that can
//! be read, each blob is authenticated on its own and only the files whose content
//! includes a damaged blob are listed (one flipped byte damages one blob, and the
//! other files of the pack restore fine).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod rotation;

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::index::{Index, IndexFile};
use crate::repo::pack::{header_len, open_blob, parse_header};
use crate::repo::tree::MAX_DEPTH;
use crate::repo::Repository;
use crate::types::{BlobId, FileId, PackId};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// Part `n` of `m` (1-based): packs whose first id byte is `n-1` modulo `m`.
    Part(u32, u32),
    /// A random share of the packs, in percent.
    Percent(f64),
}

impl ReadData {
    /// Parses `N%` or `N/M`.
    pub fn parse_subset(s: &str) -> Result<Self> {
        let bad =
            || Error::invalid("--read-data-subset", format!("{s:?}: expected N% (0 < N <= 100) or N/M (1 <= N <= M)"));
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            return if v > 0.0 && v <= 100.0 { Ok(ReadData::Percent(v)) } else { Err(bad()) };
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (n.trim().parse().map_err(|_| bad())?, m.trim().parse().map_err(|_| bad())?);
        if n >= 1 && n <= m && m <= 256 {
            Ok(ReadData::Part(n, m))
        } else {
            Err(bad())
        }
    }

    fn selects(&self, pack: &PackId) -> bool {
        match *self {
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Part(n, m) => (pack.0[0] as u32) % m == n - 1,
            ReadData::Percent(p) => rand::random::<f64>() * 100.0 < p,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct DamagedPack {
    pub pack: String,
    pub reason: String,
    /// The blobs of the pack that fail authentication; empty when the pack as a
    /// whole cannot be used (missing, wrong size, unreadable): then all its blobs are lost.
    pub damaged_blobs: Vec<String>,
    /// "snapshot-short-id: /path" for every file or directory that needs a damaged
    /// blob of this pack (any blob of it when the whole pack is lost).
    pub affects: Vec<String>,
}

/// What is wrong with a pack: why, and which of its blobs are lost (None: all).
struct PackFault {
    reason: String,
    blobs: Option<HashSet<BlobId>>,
}

impl PackFault {
    fn whole(reason: impl Into<String>) -> Self {
        PackFault { reason: reason.into(), blobs: None }
    }
    fn loses(&self, blob: &BlobId) -> bool {
        self.blobs.as_ref().is_none_or(|b| b.contains(blob))
    }
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub trees: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub bytes_read: u64,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub damaged_packs: Vec<DamagedPack>,
    /// Objects every command skips: stray names and content that does not
    /// authenticate. Each is also listed in `errors`.
    pub damaged_objects: Vec<crate::repo::DamagedObject>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.damaged_packs.is_empty() && self.damaged_objects.is_empty()
    }
}

pub fn run(repo: &Repository, read: ReadData, progress: &dyn Progress) -> Result<CheckReport> {
    repo.clear_damaged();
    let mut rep = CheckReport::default();
    // Snapshots first, then the index: a backup writes its index before its snapshot,
    // so every snapshot listed here has its blobs in the index read next, even while
    // backups run beside the check.
    let snapshots = snapshots_checked(repo, &mut rep)?;
    let index = load_index_checked(repo)?;
    let mut damaged: BTreeMap<PackId, PackFault> = BTreeMap::new();

    let stored: HashMap<String, u64> = repo.list_objects(Kind::Pack)?.into_iter().collect();
    for (id, size) in index.packs() {
        rep.packs += 1;
        match stored.get(&id.to_hex()) {
            None => {
                damaged.insert(id, PackFault::whole("missing from the repository"));
            }
            Some(&s) if s != size => {
                damaged.insert(id, PackFault::whole(format!("size is {s} bytes, the index says {size}")));
            }
            Some(_) => {}
        }
    }
    let pending = repo.pending_packs()?;
    for name in stored.keys() {
        let id = PackId::from_hex(name).ok();
        if id.is_some_and(|id| pending.contains(&id)) {
            continue; // prune took it out of the index and deletes it later
        }
        if id.is_none_or(|id| !index.has_pack(&id)) {
            rep.warnings.push(format!(
                "pack {name} is not in any index (left by an interrupted backup; the next backup indexes it)"
            ));
        }
    }

    let temp = repo.backend().stale_temp_files()?;
    if !temp.is_empty() {
        let bytes: u64 = temp.iter().map(|(_, s)| s).sum();
        rep.warnings.push(format!(
            "{} temp files ({bytes} bytes) in tmp/ were left by interrupted writes (untouched for over an hour): \
             `kura prune` or `kura repair index` removes them",
            temp.len()
        ));
    }
    let mut seen = HashSet::new();
    for (sid, snap) in &snapshots {
        walk(repo, &index, &snap.tree, Path::new("/"), &mut seen, &mut |path, tree_err, missing| {
            if let Some(e) = tree_err {
                rep.errors.push(format!("snapshot {}: directory {}: {e}", sid.short(), path.display()));
            }
            for b in missing {
                rep.errors.push(format!(
                    "snapshot {}: {} needs blob {b} which is not indexed",
                    sid.short(),
                    path.display()
                ));
            }
        });
    }
    rep.trees = seen.len() as u64;

    if read != ReadData::None {
        let selected: Vec<(PackId, u64)> =
            index.packs().filter(|(id, _)| !damaged.contains_key(id) && read.selects(id)).collect();
        progress.set_total(selected.iter().map(|p| p.1).sum());
        for (id, size) in selected {
            rep.packs_read += 1;
            rep.bytes_read += size;
            if let Some(fault) = read_pack(repo, &index, &id) {
                damaged.insert(id, fault);
            }
            progress.advance(size);
        }
    }

    for d in repo.damaged_objects() {
        let fix = if d.kind == Kind::Snapshot { "repair snapshots" } else { "repair index" };
        rep.errors.push(format!(
            "{}/{} is damaged and skipped by every command: {}; `kura {fix}` moves it to quarantine/",
            d.kind.dir(),
            d.name,
            d.reason
        ));
        rep.damaged_objects.push(d);
    }

    if !damaged.is_empty() {
        let affects = affected(repo, &index, &snapshots, &damaged);
        for (id, fault) in damaged {
            let mut blobs: Vec<String> = fault.blobs.iter().flatten().map(|b| b.to_string()).collect();
            blobs.sort();
            rep.damaged_packs.push(DamagedPack {
                pack: id.to_hex(),
                reason: fault.reason,
                damaged_blobs: blobs,
                affects: affects.get(&id).cloned().unwrap_or_default(),
            });
        }
    }
    Ok(rep)
}

/// Damaged index files are skipped and reported with the other damaged objects.
fn load_index_checked(repo: &Repository) -> Result<Index> {
    let mut index = Index::new();
    for (name, _) in repo.list_objects(Kind::Index)? {
        if let Some(f) = repo.load_json_or_skip::<IndexFile>(Kind::Index, &name)? {
            f.packs.iter().for_each(|p| index.add_pack(p));
        }
    }
    index.compact();
    Ok(index)
}

fn snapshots_checked(
    repo: &Repository,
    rep: &mut CheckReport,
) -> Result<Vec<(FileId, crate::repo::snapshot::Snapshot)>> {
    let mut out = Vec::new();
    for (name, _) in repo.list_objects(Kind::Snapshot)? {
        if let Some(s) = repo.load_json_or_skip(Kind::Snapshot, &name)? {
            out.push((FileId::from_hex(&name)?, s));
        }
    }
    rep.snapshots = out.len() as u64;
    Ok(out)
}

/// Called with a directory, its tree error if any, and blobs it needs that are not indexed.
type TreeReport<'a> = dyn FnMut(&Path, Option<Error>, Vec<BlobId>) + 'a;

/// Visits every tree once; calls `report(dir, tree error, unindexed blobs)`. Trees
/// nested deeper than restore follows are reported there, not walked.
fn walk(
    repo: &Repository,
    index: &Index,
    tree_id: &BlobId,
    path: &Path,
    seen: &mut HashSet<BlobId>,
    report: &mut TreeReport,
) {
    walk_at(repo, index, tree_id, path, 0, seen, report)
}

fn walk_at(
    repo: &Repository,
    index: &Index,
    tree_id: &BlobId,
    path: &Path,
    depth: usize,
    seen: &mut HashSet<BlobId>,
    report: &mut TreeReport,
) {
    if depth > MAX_DEPTH {
        let e = Error::invalid(
            format!("tree {tree_id}"),
            format!("nested more than {MAX_DEPTH} levels: restore refuses it"),
        );
        return report(path, Some(e), vec![]);
    }
    if !seen.insert(*tree_id) {
        return;
    }
    let tree = match repo.load_tree(index, tree_id) {
        Ok(t) => t,
        Err(e) => return report(path, Some(e), vec![]),
    };
    let mut missing = Vec::new();
    for n in &tree.nodes {
        missing.extend(n.content.iter().filter(|b| !index.contains(b)).copied());
        if let Some(sub) = &n.subtree {
            walk_at(repo, index, sub, &path.join(n.name.as_os_str()), depth + 1, seen, report);
        }
    }
    if !missing.is_empty() {
        report(path, None, missing);
    }
}

/// Reads a whole pack: its hash, its header, and every blob the index places in
/// it, each authenticated on its own (restore reads blobs by the index, so a blob
/// that authenticates restores fine whatever else in the pack is damaged).
/// Returns what is wrong, or None for a sound pack.
fn read_pack(repo: &Repository, index: &Index, id: &PackId) -> Option<PackFault> {
    let name = id.to_hex();
    let bytes = match repo.backend().get(Kind::Pack, &name) {
        Ok(b) => b,
        Err(e) => return Some(PackFault::whole(format!("cannot be read: {e}"))),
    };
    let mut problems = Vec::new();
    if blake3::hash(&bytes).as_bytes() != &id.0 {
        problems.push("its content hash does not match its name".to_string());
    }
    let header = header_len(&bytes, &name).and_then(|hl| {
        let hstart = bytes
            .len()
            .checked_sub(4 + hl as usize)
            .ok_or_else(|| Error::corrupt(format!("pack {name}"), "bad header length"))?;
        parse_header(repo.key(), &bytes[hstart..bytes.len() - 4], &name, bytes.len() as u64)
    });
    if let Err(e) = header {
        problems.push(format!("its header is damaged ({e}; the index still locates its blobs)"));
    }
    let mut lost = HashSet::new();
    let mut total = 0usize;
    let mut first = None;
    for (blob, loc) in index.iter().filter(|(_, l)| l.pack == *id) {
        total += 1;
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.length as usize);
        let res = match bytes.get(start..end) {
            Some(sealed) => open_blob(repo.key(), &loc.entry(blob), sealed, id).map(|_| ()),
            None => Err(Error::corrupt(format!("blob {blob} in pack {name}"), "lies beyond the end of the pack")),
        };
        if let Err(e) = res {
            first.get_or_insert_with(|| match e {
                Error::Corrupt { reason, .. } => format!("blob {blob}: {reason}"),
                e => e.to_string(),
            });
            lost.insert(blob);
        }
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} of its {total} blobs fail authentication (first: {})",
            lost.len(),
            first.unwrap_or_default()
        ));
    }
    if problems.is_empty() {
        return None;
    }
    Some(PackFault { reason: problems.join("; "), blobs: Some(lost) })
}

/// Most lines `affected` lists over all damaged packs: enough to see what a damage
/// touches, while a tree graph that describes billions of paths stays cheap.
pub const MAX_AFFECTED: u64 = 100_000;

/// Maps each damaged pack to the files and directories that need it. Only trees
/// that lead to a lost blob are expanded into paths, so a tree shared by many
/// directories costs one visit unless it is damaged itself; the listing stops at
/// `MAX_AFFECTED` lines and `MAX_DEPTH` levels, whatever a crafted tree graph describes.
fn affected(
    repo: &Repository,
    index: &Index,
    snapshots: &[(FileId, crate::repo::snapshot::Snapshot)],
    damaged: &BTreeMap<PackId, PackFault>,
) -> HashMap<PackId, Vec<String>> {
    let lost = Lost { repo, index, damaged };
    let mut leads: HashMap<BlobId, bool> = HashMap::new();
    let mut out: HashMap<PackId, Vec<String>> = HashMap::new();
    let mut lines: u64 = 0;
    'snapshots: for (sid, snap) in snapshots {
        let mut stack: Vec<(BlobId, PathBuf, usize)> = vec![(snap.tree, PathBuf::from("/"), 0)];
        while let Some((tid, path, depth)) = stack.pop() {
            if lines >= MAX_AFFECTED {
                break 'snapshots;
            }
            if let Some(p) = lost.pack_of(&tid) {
                out.entry(p).or_default().push(format!("snapshot {}: directory {}", sid.short(), path.display()));
                lines += 1;
                continue;
            }
            if depth >= MAX_DEPTH || !lost.leads_to_loss(&tid, depth, &mut leads) {
                continue;
            }
            let Ok(tree) = repo.load_tree(index, &tid) else { continue };
            for n in &tree.nodes {
                let child = path.join(n.name.as_os_str());
                let mut packs: Vec<PackId> = n.content.iter().filter_map(|b| lost.pack_of(b)).collect();
                packs.dedup();
                for p in packs {
                    out.entry(p).or_default().push(format!("snapshot {}: {}", sid.short(), child.display()));
                    lines += 1;
                }
                if let Some(s) = n.subtree {
                    stack.push((s, child, depth + 1));
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// Which blobs the damaged packs lose, and which trees lead to one of them.
struct Lost<'a> {
    repo: &'a Repository,
    index: &'a Index,
    damaged: &'a BTreeMap<PackId, PackFault>,
}

impl Lost<'_> {
    /// The damaged pack a blob is lost with, if it is.
    fn pack_of(&self, b: &BlobId) -> Option<PackId> {
        self.index.get(b).map(|l| l.pack).filter(|p| self.damaged.get(p).is_some_and(|f| f.loses(b)))
    }

    /// Whether a lost blob is in this tree or below it (memoized per tree: each
    /// distinct tree is read once however many directories share it).
    fn leads_to_loss(&self, tid: &BlobId, depth: usize, memo: &mut HashMap<BlobId, bool>) -> bool {
        if let Some(&v) = memo.get(tid) {
            return v;
        }
        let v = self.pack_of(tid).is_some()
            || (depth < MAX_DEPTH
                && self.repo.load_tree(self.index, tid).is_ok_and(|tree| {
                    tree.nodes.iter().any(|n| {
                        n.content.iter().any(|b| self.pack_of(b).is_some())
                            || n.subtree.is_some_and(|s| self.leads_to_loss(&s, depth + 1, memo))
                    })
                }));
        memo.insert(*tid, v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::repo::testing::{cheap_repo, dir_node, file_node, snapshot_of, Blobs};
    use crate::types::BlobType;

    /// Check walks trees recursively: a crafted chain far deeper than restore follows
    /// is reported, not walked, on the 2 MiB stack the daemon's jobs run on.
    #[test]
    fn a_tree_deeper_than_restore_follows_is_reported_without_overflowing() {
        let repo = cheap_repo(b"check unit tests");
        let mut blobs = Blobs::new(&repo);
        let leaf = blobs.add(BlobType::Data, b"leaf");
        let mut tree = blobs.dir(vec![file_node("leaf", leaf, 4)]);
        for _ in 0..5 * MAX_DEPTH {
            tree = blobs.dir(vec![dir_node("d", tree)]);
        }
        blobs.store();
        repo.save_json(Kind::Snapshot, &snapshot_of(tree)).unwrap();
        let rep = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || run(&repo, ReadData::None, &NoProgress).unwrap())
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(rep.errors.len(), 1, "{:?}", rep.errors);
        assert!(rep.errors[0].contains("nested more than 1024 levels"), "{:?}", rep.errors);
    }

    /// 40 levels of directories that each hold the same subtree twice describe 2^40
    /// paths to one file; a damaged blob under them must not make check list (or
    /// walk) them all.
    #[test]
    fn a_damaged_blob_under_a_shared_subtree_lists_a_bounded_number_of_files() {
        let repo = cheap_repo(b"check unit tests");
        let mut data = Blobs::new(&repo);
        let leaf = data.add(BlobType::Data, b"lost");
        let data_pack = data.store();
        let mut blobs = Blobs::new(&repo);
        let mut tree = blobs.dir(vec![file_node("leaf", leaf, 4)]);
        for _ in 0..40 {
            tree = blobs.dir(vec![dir_node("a", tree), dir_node("b", tree)]);
        }
        blobs.store();
        repo.save_json(Kind::Snapshot, &snapshot_of(tree)).unwrap();
        repo.backend().delete(Kind::Pack, &data_pack.to_hex()).unwrap();
        let rep = run(&repo, ReadData::None, &NoProgress).unwrap();
        assert_eq!(rep.damaged_packs.len(), 1);
        let affects = &rep.damaged_packs[0].affects;
        assert!(!affects.is_empty() && affects.len() as u64 <= MAX_AFFECTED, "{} lines", affects.len());
        assert!(affects[0].ends_with("/leaf"), "{:?}", &affects[0]);
    }

    #[test]
    fn parse_subsets() {
        assert_eq!(ReadData::parse_subset("10%").unwrap(), ReadData::Percent(10.0));
        assert_eq!(ReadData::parse_subset("2/5").unwrap(), ReadData::Part(2, 5));
        for bad in ["0%", "101%", "0/3", "4/3", "x", "1/0"] {
            assert!(ReadData::parse_subset(bad).is_err(), "{bad}");
        }
        // Every pack falls in exactly one part.
        let id = PackId([200; 32]);
        let hits = (1..=7).filter(|n| ReadData::Part(*n, 7).selects(&id)).count();
        assert_eq!(hits, 1);
    }
}
