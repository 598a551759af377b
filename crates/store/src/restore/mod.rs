//! The restore pipeline: plan (which files, which blobs, which packs), then read
//! each pack once on worker threads, verify every blob before writing it, write
//! files under temp names and rename them into place when complete.
//!
//! Resumable: a file already at its final name with the right size, mtime, mode
//! and (as root) owner is skipped (with `--verify`, only if its content hashes
//! match too), and temp files from an interrupted run are replaced.
//!
//! Damage does not stop it: a blob that fails authentication is not written, the
//! files that need it are left out (their temp files removed) and listed in
//! `RestoreSummary::damaged` by path, and everything else is restored.

mod fs;
mod plan;
mod resume;
mod reuse;
mod verify;

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::pathmatch::Globs;
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::pack::open_blob_in;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeType;
use crate::repo::Repository;
use crate::types::{BlobId, FileId, PackId};
pub use fs::temp_name;
pub use plan::{expansion, resolve, ExpansionMemo, PackJob, RestorePlan};
pub use verify::verify_file;

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// A path inside the snapshot; its contents land directly in `target`.
    pub subpath: Option<String>,
    pub includes: Vec<String>,
    /// Re-read every restored file and check it against the snapshot's hashes.
    pub verify: bool,
    pub threads: Option<usize>,
    /// A file to write whose old version is at its final name is rebuilt from the
    /// blocks the old version holds; only the others are fetched (a standby update).
    pub reuse_existing: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub snapshot: String,
    pub target: String,
    pub files_restored: u64,
    /// Files already present and matching (a resumed restore).
    pub files_skipped: u64,
    /// Files an interrupted restore had started, continued from what it wrote.
    pub files_resumed: u64,
    /// Bytes of those files found already written (not fetched again).
    pub bytes_resumed: u64,
    /// Changed files rebuilt from their old version (`reuse_existing`).
    pub files_reused: u64,
    /// Bytes copied from those old versions instead of fetched.
    pub bytes_reused: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes_written: u64,
    pub packs_read: u64,
    pub files_verified: u64,
    /// Files whose content on disk does not match the snapshot (with `--verify`).
    pub verify_failures: Vec<String>,
    /// Files not restored because a blob of their content is damaged in the
    /// repository (the rest of the snapshot is restored).
    pub damaged: Vec<DamagedFile>,
    pub duration_ms: u64,
}
impl RestoreSummary {
    /// Every file of the snapshot was restored (none was damaged or differs).
    pub fn is_complete(&self) -> bool {
        self.damaged.is_empty() && self.verify_failures.is_empty()
    }
}

/// A file left out of a restore because its data is damaged in the repository.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DamagedFile {
    /// Where it would have been restored.
    pub path: String,
    /// Its path in the snapshot.
    pub snapshot_path: String,
    /// The first damaged blob of its content and the pack holding it.
    pub blob: String,
    pub pack: String,
    pub reason: String,
}

/// Creates the restore target (and its parents) unless it is a directory already. A
/// file in the way is named, instead of the bare "File exists" of the system call.
fn make_target(target: &Path) -> Result<()> {
    for p in target.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                let reason = if p == target {
                    format!("{} is a file, not a directory: give a directory to restore into", p.display())
                } else {
                    format!(
                        "{} is a file, so the directory {} cannot be created in it: give a directory to restore into",
                        p.display(),
                        target.display()
                    )
                };
                return Err(Error::invalid("restore target", reason));
            }
            Err(_) => {}
        }
    }
    std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))
}

/// A restore, planned and not yet started: what it will write (from the snapshot's
/// trees; no file data is read), the index it was planned on, and the reader lock
/// that keeps a prune from deleting packs it names until it is executed or dropped.
pub struct PreparedRestore {
    repo: Arc<Repository>,
    snap_id: FileId,
    opts: RestoreOptions,
    index: Index,
    plan: RestorePlan,
    started: Instant,
    _lock: Option<crate::repo::lock::LockGuard>,
}

impl PreparedRestore {
    pub fn plan(&self) -> &RestorePlan {
        &self.plan
    }
}

/// Plans a restore: refuses hostile trees (depth, expansion, sizes) before anything
/// is written. `execute` then writes it.
pub fn prepare(
    repo: &Arc<Repository>,
    snap_id: &FileId,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<PreparedRestore> {
    let started = Instant::now();
    let lock = crate::repo::lock::reader_lock(repo, "restore");
    let index = repo.load_index()?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, blobs = index.blob_count(), "restore: index loaded");
    let plan = make_plan(repo, &index, snap_id, snap, opts)?;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, files = plan.files.len(), "restore: planned");
    Ok(PreparedRestore { repo: repo.clone(), snap_id: *snap_id, opts: opts.clone(), index, plan, started, _lock: lock })
}

/// Plans, then executes.
pub fn run(
    repo: &Arc<Repository>,
    snap_id: &FileId,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    execute(prepare(repo, snap_id, snap, opts)?, progress)
}

/// Writes a prepared restore: directories, then files pack by pack on worker
/// threads (atomic temp files, verified blobs), links, then metadata.
pub fn execute(prepared: PreparedRestore, progress: &dyn Progress) -> Result<RestoreSummary> {
    let PreparedRestore { repo, snap_id, opts, index, plan, started, _lock } = prepared;
    let (repo, snap_id, opts) = (&repo, &snap_id, &opts);
    let target = &opts.target;
    make_target(target)?;
    let dirs = fs::Dirs::open(target, &plan.dirs)?;
    let mut sum =
        RestoreSummary { snapshot: snap_id.to_hex(), target: target.display().to_string(), ..Default::default() };

    for i in 0..plan.dirs.len() {
        dirs.make(i)?;
        sum.dirs += 1;
    }
    tracing::debug!(ms = started.elapsed().as_millis() as u64, dirs = sum.dirs, "restore: directories made");
    let chunker = crate::chunk::Chunker::new(repo.config().chunker)?;
    let present = |f: &plan::FileItem| -> Result<bool> {
        let dir = dirs.get(f.dir)?;
        let name = f.node.name.as_os_str();
        Ok(fs::looks_restored(&dir, name, &f.node)
            && (!opts.verify
                || fs::open_read(&dir, name, &dirs.shown(&f.rel))
                    .and_then(|file| verify::verify_open(repo.key(), &chunker, file, &dirs.shown(&f.rel), &f.node))
                    .is_ok()))
    };
    let mut todo = Vec::new();
    for (i, f) in plan.files.iter().enumerate() {
        if present(f)? {
            sum.files_skipped += 1;
            continue;
        }
        if f.node.content.is_empty() {
            let dir = dirs.get(f.dir)?;
            let shown = dirs.shown(&f.rel);
            let file = fs::create_temp(&dir, &f.tmp, 0, &shown)?;
            fs::finish_file(&file, &dir, &f.tmp, f.node.name.as_os_str(), &f.node, &shown)?;
            sum.files_restored += 1;
        } else {
            todo.push(i);
        }
    }
    let mut jobs = plan::pack_jobs(&index, &plan.files, &todo)?;
    // Files whose blobs come from one pack are created by the worker that reads it;
    // files spread over several packs are created here, before workers share them,
    // or resumed: what an interrupted run already wrote into their temp file stays.
    let reuse = opts.reuse_existing.then_some((&chunker, todo.as_slice()));
    let spread = resume::open_spread_files(repo, &index, &dirs, &plan, &jobs, reuse)?;
    plan::drop_done(&mut jobs, &spread.done);
    let (shared, resumed) = (spread.ids, spread.resumed);
    sum.files_resumed = resumed.len() as u64 - spread.files_reused;
    sum.bytes_resumed = spread.bytes_resumed;
    sum.files_reused = spread.files_reused;
    sum.bytes_reused = spread.bytes_reused;
    // A resumed file may need nothing more.
    let mut pending = vec![false; plan.files.len()];
    jobs.iter().flat_map(|j| j.blobs.iter().flat_map(|b| b.2.iter())).for_each(|t| pending[t.0] = true);
    for (i, file) in resumed.into_iter().filter(|(i, _)| !pending[*i]) {
        let f = &plan.files[i];
        let (shown, dir) = (dirs.shown(&f.rel), dirs.get(f.dir)?);
        fs::finish_file(&file, &dir, &f.tmp, f.node.name.as_os_str(), &f.node, &shown)?;
        sum.files_restored += 1;
    }
    let todo: Vec<usize> = todo.into_iter().filter(|&i| pending[i]).collect();
    progress.set_total(
        todo.iter().map(|&i| plan.files[i].node.size).sum::<u64>().saturating_sub(sum.bytes_resumed + sum.bytes_reused),
    );
    sum.packs_read = jobs.len() as u64;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, packs = jobs.len(), "restore: reading packs");
    // Remote repositories wait on the network, not the CPU: more workers keep more
    // range GETs in flight (the S3 backend's adaptive window decides how many
    // really are, below its `connections=` ceiling).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let remote = crate::backend::Location::parse(&repo.location()).is_ok_and(|l| !l.is_local());
    let threads = opts.threads.unwrap_or(if remote { (cores * 4).max(16) } else { cores });
    let damage = match write_files(repo, &dirs, &plan, &jobs, &shared, threads, progress) {
        Ok((written, damage)) => {
            sum.bytes_written = written;
            damage
        }
        Err(e) => {
            // Files spread over several packs keep their temp file, for the next run
            // to resume; the others are started afresh.
            for &i in todo.iter().filter(|&&i| shared[i].is_none()) {
                discard_temp(&dirs, &plan.files[i]);
            }
            return Err(e);
        }
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, bytes = sum.bytes_written, "restore: packs read");
    let mut bad: HashMap<usize, (BlobId, PackId, String)> = HashMap::new();
    for d in damage {
        for f in d.files {
            bad.entry(f).or_insert_with(|| (d.blob, d.pack, d.reason.clone()));
        }
    }
    sum.files_restored += (todo.len() - bad.len()) as u64;
    let mut bad_rels: HashMap<&Path, (BlobId, PackId, String)> = HashMap::new();
    for (&f, why) in &bad {
        bad_rels.insert(plan.files[f].rel.as_path(), why.clone());
    }

    for l in &plan.symlinks {
        let t = l
            .node
            .target
            .as_ref()
            .ok_or_else(|| Error::corrupt(format!("symlink {}", l.rel.display()), "has no target"))?;
        let dir = dirs.get(l.dir)?;
        fs::make_symlink(&dir, l.node.name.as_os_str(), t.as_os_str(), &l.node, &dirs.shown(&l.rel))?;
        sum.symlinks += 1;
    }
    for h in &plan.hardlinks {
        let first = &plan.files[h.first];
        if let Some(why) = bad_rels.get(first.rel.as_path()).cloned() {
            bad_rels.insert(h.rel.as_path(), why);
            continue;
        }
        let (from, to) = (dirs.get(first.dir)?, dirs.get(h.dir)?);
        fs::make_hardlink(&from, first.node.name.as_os_str(), &to, &h.name, &dirs.shown(&h.rel))?;
        sum.hardlinks += 1;
    }
    for (i, d) in plan.dirs.iter().enumerate().rev() {
        let dir = dirs.get(Some(i))?;
        fs::set_dir_meta(&dir, &d.node, &dirs.shown(&d.rel))?;
    }
    if let Some(root) = &plan.root {
        fs::set_dir_meta(&dirs.root(), root, target)?;
    }
    if opts.verify {
        for f in plan.files.iter().filter(|f| !bad_rels.contains_key(f.rel.as_path())) {
            let shown = dirs.shown(&f.rel);
            let res = dirs.get(f.dir).and_then(|d| fs::open_read(&d, f.node.name.as_os_str(), &shown));
            match res.and_then(|file| verify::verify_open(repo.key(), &chunker, file, &shown, &f.node)) {
                Ok(()) => sum.files_verified += 1,
                Err(e) => sum.verify_failures.push(format!("{}: {e}", shown.display())),
            }
        }
    }
    let base = Path::new(opts.subpath.as_deref().unwrap_or("/"));
    sum.damaged = bad_rels
        .into_iter()
        .map(|(rel, (blob, pack, reason))| DamagedFile {
            path: target.join(rel).display().to_string(),
            snapshot_path: snapshot_path(base, rel, plan.root.is_some()).display().to_string(),
            blob: blob.to_string(),
            pack: pack.to_hex(),
            reason,
        })
        .collect();
    sum.damaged.sort_by(|a, b| a.path.cmp(&b.path));
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "restore: done");
    sum.duration_ms = started.elapsed().as_millis() as u64;
    Ok(sum)
}

/// The path in the snapshot of `rel` (relative to the target) when `base` (the
/// subpath, "/" for all) was restored: a directory's contents land in the target,
/// a single file lands in it under its own name.
fn snapshot_path(base: &Path, rel: &Path, base_is_dir: bool) -> PathBuf {
    if base_is_dir || base == Path::new("/") {
        base.join(rel)
    } else {
        base.parent().unwrap_or(Path::new("/")).join(rel)
    }
}

/// Removes a file's temp file if it is there (through its directory's descriptor).
fn discard_temp(dirs: &fs::Dirs, f: &plan::FileItem) {
    let shown = dirs.shown(&f.rel);
    if let Err(e) = dirs.get(f.dir).and_then(|d| fs::remove_temp(&d, &f.tmp, &shown)) {
        tracing::warn!("could not remove the temp file of {}: {e}", shown.display());
    }
}

/// A blob that failed authentication, and the files (plan indexes) that need it.
struct Damage {
    blob: BlobId,
    pack: PackId,
    reason: String,
    files: Vec<usize>,
}

/// Stack for planning: the walk recurses once per directory level (up to
/// `MAX_DEPTH`), and restores also run on threads with small stacks (recovery).
const PLAN_STACK: usize = 64 << 20;

fn make_plan(
    repo: &Repository,
    index: &Index,
    snap_id: &FileId,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestorePlan> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("restore-plan".into())
            .stack_size(PLAN_STACK)
            .spawn_scoped(s, || plan_on_this_thread(repo, index, snap_id, snap, opts))
            .map_err(|e| Error::io("restore planning thread", e))?
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn plan_on_this_thread(
    repo: &Repository,
    index: &Index,
    snap_id: &FileId,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestorePlan> {
    let includes = if opts.includes.is_empty() { None } else { Some(Globs::new(&opts.includes, "--include")?) };
    let mut planner = plan::Planner::new(repo, index, includes);
    let sub = opts.subpath.as_deref().unwrap_or("/");
    match plan::resolve(repo, index, &snap.tree, sub, &snap_id.short())? {
        None => {
            planner.limit_expansion(&snap.tree, Path::new("/"))?;
            let tree = planner.load_tree(&snap.tree)?;
            planner.add_tree(&tree, Path::new(""), None, Path::new("/"), false, 0)?
        }
        Some(n) if n.node_type == NodeType::Dir => {
            let id = n.subtree.ok_or_else(|| Error::corrupt(format!("directory {sub}"), "has no subtree"))?;
            planner.limit_expansion(&id, Path::new(sub))?;
            let tree = planner.load_tree(&id)?;
            planner.add_tree(&tree, Path::new(""), None, Path::new(sub), false, 0)?;
            planner.plan.root = Some(n);
        }
        Some(n) => {
            let rel = PathBuf::from(n.name.as_os_str());
            planner.add_node(&n, &rel, None, Path::new(sub), false, 0)?;
        }
    }
    let mut plan = planner.plan;
    plan.avoid_temp_collisions();
    Ok(plan)
}

/// Reads each pack's needed ranges once, verifies each blob, writes it to every
/// file offset that needs it, and finishes files whose last blob arrived.
fn write_files(
    repo: &Repository,
    dirs: &fs::Dirs,
    plan: &RestorePlan,
    jobs: &[PackJob],
    shared: &[Option<fs::Identity>],
    threads: usize,
    progress: &dyn Progress,
) -> Result<(u64, Vec<Damage>)> {
    let remaining: Vec<AtomicUsize> = plan.files.iter().map(|_| AtomicUsize::new(0)).collect();
    for j in jobs {
        for (_, _, targets) in &j.blobs {
            for (f, _) in targets {
                remaining[*f].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let bad: Vec<AtomicBool> = plan.files.iter().map(|_| AtomicBool::new(false)).collect();
    let damage: Mutex<Vec<Damage>> = Mutex::new(Vec::new());
    let files = Files { shared, remaining: &remaining, bad: &bad, damage: &damage };
    let written = crate::parallel::map(jobs, threads, |job| restore_pack(repo, dirs, plan, job, &files, progress))?;
    Ok((written.iter().sum(), damage.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// What the pack workers share about the files: which are spread over several
/// packs (and which file each such temp file is), how many blobs each still waits
/// for, which are damaged.
struct Files<'a> {
    shared: &'a [Option<fs::Identity>],
    remaining: &'a [AtomicUsize],
    bad: &'a [AtomicBool],
    damage: &'a Mutex<Vec<Damage>>,
}

/// Blobs closer than this are fetched in one read.
const MAX_GAP: u64 = 1 << 20;
/// A read stops growing past this: what each worker holds at once (a pack is up to
/// 20 MiB), so that memory stays bounded with many workers on a remote repository.
const MAX_SPAN: u64 = 4 << 20;

fn restore_pack(
    repo: &Repository,
    dirs: &fs::Dirs,
    plan: &RestorePlan,
    job: &PackJob,
    files: &Files<'_>,
    progress: &dyn Progress,
) -> Result<u64> {
    let Files { shared, remaining, bad, damage } = *files;
    let name = job.pack.to_hex();
    let mut written = 0;
    // Handles of files created for this pack only; closed when the file is finished.
    let mut own: std::collections::HashMap<usize, (std::fs::File, Arc<std::os::fd::OwnedFd>)> =
        std::collections::HashMap::new();
    // The range read and the decompressed blob: their memory is kept between reads.
    let (mut span, mut scratch) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < job.blobs.len() {
        // One read covers a run of blobs with small gaps between them.
        let start = job.blobs[i].1.offset as u64;
        let mut end = start + job.blobs[i].1.length as u64;
        let mut j = i + 1;
        while j < job.blobs.len() && (job.blobs[j].1.offset as u64) <= end + MAX_GAP && end - start < MAX_SPAN {
            end = end.max(job.blobs[j].1.offset as u64 + job.blobs[j].1.length as u64);
            j += 1;
        }
        // A pack that is gone loses its blobs, like damage: the other packs are still restored.
        let fetched = match repo.backend().get_range_into(Kind::Pack, &name, start, end - start, &mut span) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Err(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        for (id, loc, targets) in &job.blobs[i..j] {
            let off = (loc.offset as u64 - start) as usize;
            let opened = match &fetched {
                Ok(()) => {
                    let sealed = &mut span[off..off + loc.length as usize];
                    match open_blob_in(repo.key(), &loc.entry(*id), sealed, &mut scratch, &job.pack) {
                        Ok(d) => Ok(d),
                        Err(Error::Corrupt { reason, .. }) => Err(reason),
                        Err(e) => return Err(e),
                    }
                }
                Err(why) => Err(why.clone()),
            };
            let data = match opened {
                Ok(d) => Some(d),
                Err(reason) => {
                    let mut fs_of: Vec<usize> = targets.iter().map(|t| t.0).collect();
                    fs_of.dedup();
                    for &f in &fs_of {
                        bad[f].store(true, Ordering::Release);
                    }
                    damage.lock().unwrap().push(Damage { blob: *id, pack: job.pack, reason, files: fs_of });
                    None
                }
            };
            let zero = data.is_some_and(|d| d.iter().all(|&b| b == 0));
            for &(f, at) in targets {
                let item = &plan.files[f];
                let final_path = dirs.shown(&item.rel);
                // Nothing is written for a damaged file (this blob or another of it).
                if let Some(data) = data.filter(|_| !bad[f].load(Ordering::Acquire)) {
                    let (file, _) = match own.entry(f) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let dir = dirs.get(item.dir)?;
                            let file = match shared[f] {
                                Some(id) => fs::open_temp(&dir, &item.tmp, id, &final_path)?,
                                None => fs::create_temp(&dir, &item.tmp, item.node.size, &final_path)?,
                            };
                            e.insert((file, dir))
                        }
                    };
                    if !zero {
                        file.write_all_at(data, at).map_err(|e| Error::io(&final_path, e))?;
                    }
                    written += data.len() as u64;
                }
                progress.advance(loc.raw_length as u64);
                if remaining[f].fetch_sub(1, Ordering::AcqRel) == 1 {
                    let handle = own.remove(&f);
                    if bad[f].load(Ordering::Acquire) {
                        drop(handle);
                        discard_temp(dirs, item);
                        continue;
                    }
                    let (file, dir) = handle.expect("handle opened above");
                    fs::finish_file(&file, &dir, &item.tmp, item.node.name.as_os_str(), &item.node, &final_path)?;
                    progress.file_done(&final_path);
                }
            }
        }
        i = j;
    }
    Ok(written)
}

/// What restoring a snapshot (or a path inside it) needs, without writing
/// anything: for forecasts and resource planning.
#[derive(Clone, Debug, Default)]
pub struct Needs {
    /// Bytes of file content written.
    pub bytes: u64,
    pub files: u64,
    /// Directories made.
    pub dirs: u64,
    /// Every stored data blob read: (pack, blob, stored length).
    pub blobs: Vec<(crate::types::PackId, crate::types::BlobId, u32)>,
}

pub fn needs(
    repo: &Repository,
    index: &Index,
    snap_id: &FileId,
    snap: &Snapshot,
    subpath: Option<String>,
) -> Result<Needs> {
    let opts = RestoreOptions { subpath, ..Default::default() };
    let plan = make_plan(repo, index, snap_id, snap, &opts)?;
    let todo: Vec<usize> = (0..plan.files.len()).collect();
    let jobs = plan::pack_jobs(index, &plan.files, &todo)?;
    Ok(Needs {
        bytes: plan.files.iter().map(|f| f.node.size).sum(),
        files: plan.files.len() as u64,
        dirs: plan.dirs.len() as u64,
        blobs: jobs.iter().flat_map(|j| j.blobs.iter().map(|(id, loc, _)| (j.pack, *id, loc.length))).collect(),
    })
}

#[cfg(test)]
mod tests;
