//! Replication: copy a repository to a second location (the remote site) as a mirror
//! that holds the same master key, so the same passphrase opens it.
//!
//! [`plan`] is pure: listings of both sides in, the objects the destination lacks out.
//! [`execute`] moves them in an order that keeps the destination a valid repository
//! after every single write, so an interrupted copy is simply run again:
//!
//! 1. the layout, key files and config (a new mirror only; the config last of them);
//! 2. missing packs, in parallel; each is checked against its name (the blake3 hash
//!    of its content) after it is read and before it is written;
//! 3. missing index files (they only name packs that are now present);
//! 4. missing snapshots (they only need blobs that are now indexed);
//! 5. incident anchors that are new or cover more entries than the destination's.
//!
//! Copy never deletes anything at the destination: forget and prune run there on
//! their own, which is what keeps a remote copy safe from a damaged or hostile source.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::backend::{object_name, Backend, Kind};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::lock::{reader_lock, LockGuard, LockKind};
use crate::repo::Repository;

/// Names and sizes of one side's objects, per kind.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub keys: Vec<(String, u64)>,
    pub packs: Vec<(String, u64)>,
    pub indexes: Vec<(String, u64)>,
    pub snapshots: Vec<(String, u64)>,
}

impl Listing {
    /// Lists in the reverse of the order a backup writes (packs, then index, then
    /// snapshot): with backups running beside the copy, every snapshot listed has its
    /// index listed, and every index listed has its packs listed.
    pub fn read(b: &dyn Backend) -> Result<Self> {
        // Stray names (not object ids) are not repository objects: never copied.
        let ids = |kind| -> Result<Vec<(String, u64)>> {
            let mut v = b.list(kind)?;
            v.retain(|(n, _)| crate::repo::is_object_id(n));
            Ok(v)
        };
        let snapshots = ids(Kind::Snapshot)?;
        let indexes = ids(Kind::Index)?;
        let packs = ids(Kind::Pack)?;
        let keys = b.list(Kind::Key)?;
        Ok(Listing { keys, packs, indexes, snapshots })
    }
}

/// What the destination lacks, in the order it is copied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CopyPlan {
    pub keys: Vec<(String, u64)>,
    pub packs: Vec<(String, u64)>,
    pub indexes: Vec<(String, u64)>,
    pub snapshots: Vec<(String, u64)>,
}

impl CopyPlan {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.packs.is_empty() && self.indexes.is_empty() && self.snapshots.is_empty()
    }
    pub fn pack_bytes(&self) -> u64 {
        self.packs.iter().map(|p| p.1).sum()
    }
    pub fn bytes(&self) -> u64 {
        [&self.keys, &self.packs, &self.indexes, &self.snapshots].iter().flat_map(|v| v.iter()).map(|p| p.1).sum()
    }
}

/// Pure: every object of `src` that `dst` lacks, or holds with another size (a
/// damaged or truncated copy is replaced). Only packs in `wanted` are copied: the
/// indexed ones, not leftovers of interrupted backups.
pub fn plan(src: &Listing, dst: &Listing, wanted: &HashSet<String>) -> CopyPlan {
    let missing = |s: &[(String, u64)], d: &[(String, u64)]| -> Vec<(String, u64)> {
        let have: std::collections::HashMap<&str, u64> = d.iter().map(|(n, z)| (n.as_str(), *z)).collect();
        s.iter().filter(|(n, z)| have.get(n.as_str()) != Some(z)).cloned().collect()
    };
    let mut packs = missing(&src.packs, &dst.packs);
    packs.retain(|(n, _)| wanted.contains(n));
    CopyPlan {
        keys: missing(&src.keys, &dst.keys),
        packs,
        indexes: missing(&src.indexes, &dst.indexes),
        snapshots: missing(&src.snapshots, &dst.snapshots),
    }
}

#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Packs copied at the same time.
    pub jobs: usize,
    /// Only compute what would be copied.
    pub dry_run: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions { jobs: 4, dry_run: false }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Counts {
    pub keys: u64,
    pub config: u64,
    pub packs: u64,
    pub indexes: u64,
    pub snapshots: u64,
    /// Incident anchors copied (new, or longer than the destination's).
    pub anchors: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    pub dry_run: bool,
    /// The destination was created by this copy.
    pub created: bool,
    pub copied: Counts,
    pub bytes: u64,
    /// Objects the destination already held (skipped).
    pub already_present: u64,
    pub duration_ms: u64,
    /// Bytes per second over the whole run.
    pub throughput: u64,
    /// Incident anchors not copied because the destination's covers more entries, or
    /// the same number with another head: the source's incident record was cut or
    /// rewritten. The destination keeps its anchor.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anchors_refused: Vec<String>,
}

/// The destination side: how it is opened and which passphrase adds a key there.
pub struct Destination<'a> {
    pub backend: Arc<dyn Backend>,
    /// Passphrase for the destination, if it differs from the source's.
    pub passphrase: &'a [u8],
}

/// Copies what `dst` lacks. `src_pass` is the passphrase that opened `src`; a new
/// mirror gets copies of all of `src`'s key files, plus a key for `dst.passphrase`
/// when that is a different one.
pub fn execute(
    src: &Arc<Repository>,
    src_pass: &[u8],
    dst: Destination<'_>,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let start = Instant::now();
    let (sb, db) = (src.backend().as_ref(), dst.backend.as_ref());
    let mut rep =
        CopyReport { source: src.location(), destination: db.location(), dry_run: opts.dry_run, ..Default::default() };

    // The destination: new, or the same repository (id and master key).
    let exists = db.exists(Kind::Config, "config")?;
    let mut remote_repo = None;
    if exists {
        let remote = match Repository::open(Arc::clone(&dst.backend), dst.passphrase) {
            Ok(r) => r,
            Err(Error::WrongPassphrase { repo }) => {
                return Err(Error::invalid(
                    format!("destination {repo}"),
                    "it is a repository that this passphrase does not open (give its own with --to-password-file)",
                ))
            }
            Err(e) => return Err(e),
        };
        if remote.config().id != src.config().id || remote.key().to_bytes() != src.key().to_bytes() {
            return Err(Error::invalid(
                format!("destination {}", db.location()),
                format!(
                    "it holds another repository (id {}, the source is {}); copy only mirrors the same repository",
                    short(&remote.config().id),
                    short(&src.config().id)
                ),
            ));
        }
        remote_repo = Some(Arc::new(remote));
    }
    rep.created = !exists;
    // Prune at the source waits for this copy before deleting packs it may read.
    let _src_lock = if opts.dry_run { None } else { reader_lock(src, "copy") };

    // The listing before the index: the index read next names at least the packs of
    // every index file listed (see `Listing::read`).
    let src_list = Listing::read(sb)?;
    let index = src.load_index()?;
    let wanted: HashSet<String> = index.packs().map(|(id, _)| id.to_hex()).collect();
    let dst_list = if exists { Listing::read(db)? } else { Listing::default() };
    let plan = plan(&src_list, &dst_list, &wanted);
    let total_src = src_list.keys.len() + wanted.len() + src_list.indexes.len() + src_list.snapshots.len();
    let to_copy = plan.keys.len() + plan.packs.len() + plan.indexes.len() + plan.snapshots.len();
    rep.already_present = total_src.saturating_sub(to_copy) as u64;
    if opts.dry_run {
        rep.copied = Counts {
            keys: plan.keys.len() as u64,
            config: u64::from(!exists),
            packs: plan.packs.len() as u64,
            indexes: plan.indexes.len() as u64,
            snapshots: plan.snapshots.len() as u64,
            anchors: sb.list(Kind::Anchor)?.len() as u64,
        };
        rep.bytes = plan.bytes();
        return Ok(rep);
    }
    progress.set_total(plan.bytes());
    let bytes = AtomicU64::new(0);

    // 1. Layout, keys, config.
    if !exists {
        match db.create() {
            Ok(()) => {}
            Err(crate::backend::BackendError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (name, _) in &plan.keys {
        let data = sb.get(Kind::Key, name)?;
        check_hash(Kind::Key, name, &data)?;
        db.put(Kind::Key, name, &data)?;
        done(&bytes, progress, data.len());
        rep.copied.keys += 1;
    }
    if !exists {
        if dst.passphrase != src_pass {
            crate::repo::keys::add_key(db, src.key(), dst.passphrase)?;
            rep.copied.keys += 1;
        }
        let config = sb.get(Kind::Config, "config")?;
        db.put(Kind::Config, "config", &config)?;
        rep.copied.config = 1;
        remote_repo = Some(Arc::new(Repository::open(Arc::clone(&dst.backend), dst.passphrase)?));
    }
    // Like a backup at the destination: a prune there keeps what this copy brings.
    let remote_repo = remote_repo.expect("opened or created above");
    let _dst_lock = LockGuard::acquire(&remote_repo, LockKind::Shared, "copy")?;

    // 2. Packs, verified, in parallel.
    rep.copied.packs = copy_parallel(sb, db, &plan.packs, opts.jobs, &bytes, progress)?;
    // 3. Index files, then 4. snapshots.
    for (kind, list, count) in [
        (Kind::Index, &plan.indexes, &mut rep.copied.indexes),
        (Kind::Snapshot, &plan.snapshots, &mut rep.copied.snapshots),
    ] {
        for (name, _) in list {
            let data = match sb.get(kind, name) {
                Ok(d) => d,
                // Removed at the source meanwhile (a concurrent prune or forget).
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            check_hash(kind, name, &data)?;
            db.put(kind, name, &data)?;
            done(&bytes, progress, data.len());
            *count += 1;
        }
    }
    // 5. Incident anchors.
    copy_anchors(src, &remote_repo, &mut rep, &bytes, progress)?;
    rep.bytes = bytes.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    rep.duration_ms = elapsed.as_millis() as u64;
    rep.throughput = (rep.bytes as f64 / elapsed.as_secs_f64().max(1e-3)) as u64;
    Ok(rep)
}

/// Copies each incident anchor the destination lacks, or holds for fewer entries.
/// Anchors are replaced in place (one name per incident), so unlike every other
/// object they are compared by content: an anchor that would shorten or rewrite the
/// destination's is refused, which keeps a cut or rewritten incident record at the
/// source from erasing the evidence at the remote site.
fn copy_anchors(
    src: &Repository,
    dst: &Repository,
    rep: &mut CopyReport,
    bytes: &AtomicU64,
    progress: &dyn Progress,
) -> Result<()> {
    use crate::repo::anchor::Anchor;
    let (sb, db) = (src.backend(), dst.backend());
    let have: HashSet<String> = db.list(Kind::Anchor)?.into_iter().map(|(n, _)| n).collect();
    for (name, _) in sb.list(Kind::Anchor)? {
        let data = match sb.get(Kind::Anchor, &name) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let object = object_name(Kind::Anchor, &name);
        let plain = src.key().decrypt(&data, &object)?;
        let new: Anchor = serde_json::from_slice(&plain).map_err(|e| Error::corrupt(&object, e.to_string()))?;
        if have.contains(&name) {
            let old: Anchor = dst.load_sealed(Kind::Anchor, &name)?;
            if old.entries == new.entries && old.head == new.head {
                continue;
            }
            if old.entries >= new.entries {
                let why = format!(
                    "{object} (incident {}): the destination's anchor covers {} entries, the source's {}{}",
                    new.incident,
                    old.entries,
                    new.entries,
                    if old.entries == new.entries { " with another head" } else { "" }
                );
                tracing::warn!(anchor = %name, "{why}; the destination keeps its anchor");
                rep.anchors_refused.push(why);
                continue;
            }
        }
        db.put(Kind::Anchor, &name, &data)?;
        done(bytes, progress, data.len());
        rep.copied.anchors += 1;
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn done(bytes: &AtomicU64, progress: &dyn Progress, n: usize) {
    bytes.fetch_add(n as u64, Ordering::Relaxed);
    progress.advance(n as u64);
}

/// Packs, keys, index files and snapshots are named by the blake3 hash of their bytes.
fn check_hash(kind: Kind, name: &str, data: &[u8]) -> Result<()> {
    if blake3::hash(data).to_hex().as_str() != name {
        return Err(Error::corrupt(
            object_name(kind, name),
            "its content does not match its name at the source; it was not copied",
        ));
    }
    Ok(())
}

fn copy_parallel(
    sb: &dyn Backend,
    db: &dyn Backend,
    packs: &[(String, u64)],
    jobs: usize,
    bytes: &AtomicU64,
    progress: &dyn Progress,
) -> Result<u64> {
    let next = AtomicU64::new(0);
    let copied = AtomicU64::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 64).min(packs.len().max(1)) {
            s.spawn(|| loop {
                if failed.lock().unwrap().is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some((name, size)) = packs.get(i) else { return };
                let r = (|| -> Result<()> {
                    let data = sb.get(Kind::Pack, name)?;
                    if data.len() as u64 != *size {
                        return Err(Error::corrupt(
                            object_name(Kind::Pack, name),
                            format!("read {} bytes at the source, listed as {size}", data.len()),
                        ));
                    }
                    check_hash(Kind::Pack, name, &data)?;
                    db.put(Kind::Pack, name, &data)?;
                    done(bytes, progress, data.len());
                    Ok(())
                })();
                match r {
                    Ok(()) => {
                        copied.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(copied.into_inner()),
    }
}

#[cfg(test)]
mod tests;
