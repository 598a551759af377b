//! The restore pipeline: plan (which files, which blobs, which packs), then read
//! each pack once on worker threads, verify every blob before writing it, write
//! files under temp names and rename them into place when complete.
//!
//! Resumable: a file already at its final name with the right size and mtime is
//! skipped (with `--verify`, only if its content hashes match too), and temp files
//! from an interrupted run are replaced.

mod fs;
mod plan;
mod verify;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::pathmatch::Globs;
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::pack::open_blob;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeType;
use crate::repo::Repository;
use crate::types::FileId;
pub use plan::{resolve, PackJob, RestorePlan};
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
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub snapshot: String,
    pub target: String,
    pub files_restored: u64,
    /// Files already present and matching (a resumed restore).
    pub files_skipped: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub bytes_written: u64,
    pub packs_read: u64,
    pub files_verified: u64,
    /// Files whose content on disk does not match the snapshot (with `--verify`).
    pub verify_failures: Vec<String>,
    pub duration_ms: u64,
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

pub fn run(
    repo: &Arc<Repository>,
    snap_id: &FileId,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let _lock = crate::repo::lock::reader_lock(repo, "restore");
    let index = repo.load_index()?;
    let plan = make_plan(repo, &index, snap_id, snap, opts)?;
    let target = &opts.target;
    make_target(target)?;
    let mut sum =
        RestoreSummary { snapshot: snap_id.to_hex(), target: target.display().to_string(), ..Default::default() };

    for (rel, _) in &plan.dirs {
        fs::safe_mkdir(target, rel)?;
        sum.dirs += 1;
    }
    let chunker = crate::chunk::Chunker::new(repo.config().chunker)?;
    let mut todo = Vec::new();
    for (i, f) in plan.files.iter().enumerate() {
        let final_path = target.join(&f.rel);
        if fs::looks_restored(&final_path, &f.node)
            && (!opts.verify || verify_file(repo.key(), &chunker, &final_path, &f.node).is_ok())
        {
            sum.files_skipped += 1;
            continue;
        }
        if f.node.content.is_empty() {
            let tmp = target.join(&f.tmp);
            fs::finish_file(&fs::create_temp(&tmp, 0)?, &tmp, &final_path, &f.node)?;
            sum.files_restored += 1;
        } else {
            todo.push(i);
        }
    }
    progress.set_total(todo.iter().map(|&i| plan.files[i].node.size).sum());
    let jobs = plan::pack_jobs(&index, &plan.files, &todo)?;
    sum.packs_read = jobs.len() as u64;
    // Files whose blobs come from one pack are created by the worker that reads it;
    // files spread over several packs are created here, before workers share them.
    let mut packs_per_file = vec![0u32; plan.files.len()];
    for j in &jobs {
        let mut files: Vec<usize> = j.blobs.iter().flat_map(|b| b.2.iter().map(|t| t.0)).collect();
        files.sort_unstable();
        files.dedup();
        files.into_iter().for_each(|f| packs_per_file[f] += 1);
    }
    let shared: Vec<bool> = packs_per_file.iter().map(|&n| n > 1).collect();
    for f in plan.files.iter().zip(&shared).filter(|(_, &s)| s).map(|(f, _)| f) {
        fs::create_temp(&target.join(&f.tmp), f.node.size)?;
    }
    // Remote repositories wait on the network, not the CPU: more workers keep more
    // range GETs in flight.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let remote = repo.location().starts_with("s3:");
    let threads = opts.threads.unwrap_or(if remote { (cores * 4).max(8) } else { cores });
    sum.bytes_written = write_files(repo, target, &plan, &jobs, &shared, threads, progress)?;
    sum.files_restored += todo.len() as u64;

    for (rel, node) in &plan.symlinks {
        let p = target.join(rel);
        fs::remove_existing(&p)?;
        let t = node
            .target
            .as_ref()
            .ok_or_else(|| Error::corrupt(format!("symlink {}", rel.display()), "has no target"))?;
        std::os::unix::fs::symlink(t.as_os_str(), &p).map_err(|e| Error::io(&p, e))?;
        fs::set_meta(&p, node, true)?;
        sum.symlinks += 1;
    }
    for (rel, first) in &plan.hardlinks {
        let p = target.join(rel);
        fs::remove_existing(&p)?;
        std::fs::hard_link(target.join(first), &p).map_err(|e| Error::io(&p, e))?;
        sum.hardlinks += 1;
    }
    for (rel, node) in plan.dirs.iter().rev() {
        fs::set_meta(&target.join(rel), node, false)?;
    }
    if let Some(root) = &plan.root {
        fs::set_meta(target, root, false)?;
    }
    if opts.verify {
        for f in &plan.files {
            let p = target.join(&f.rel);
            match verify_file(repo.key(), &chunker, &p, &f.node) {
                Ok(()) => sum.files_verified += 1,
                Err(e) => sum.verify_failures.push(format!("{}: {e}", p.display())),
            }
        }
    }
    sum.duration_ms = started.elapsed().as_millis() as u64;
    Ok(sum)
}

fn make_plan(
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
        None => planner.add_tree(&repo.load_tree(index, &snap.tree)?, Path::new(""), Path::new("/"), false)?,
        Some(n) if n.node_type == NodeType::Dir => {
            let id = n.subtree.ok_or_else(|| Error::corrupt(format!("directory {sub}"), "has no subtree"))?;
            planner.add_tree(&repo.load_tree(index, &id)?, Path::new(""), Path::new(sub), false)?;
            planner.plan.root = Some(n);
        }
        Some(n) => {
            let rel = PathBuf::from(n.name.as_os_str());
            planner.add_node(&n, &rel, Path::new(sub), false)?;
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
    target: &Path,
    plan: &RestorePlan,
    jobs: &[PackJob],
    shared: &[bool],
    threads: usize,
    progress: &dyn Progress,
) -> Result<u64> {
    let remaining: Vec<AtomicUsize> = plan.files.iter().map(|_| AtomicUsize::new(0)).collect();
    for j in jobs {
        for (_, _, targets) in &j.blobs {
            for (f, _) in targets {
                remaining[*f].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let written = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                if failed.lock().unwrap().is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { return };
                match restore_pack(repo, target, plan, job, shared, &remaining, progress) {
                    Ok(n) => {
                        written.fetch_add(n, Ordering::Relaxed);
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
        None => Ok(written.into_inner()),
    }
}

/// Blobs closer than this are fetched in one read.
const MAX_GAP: u64 = 1 << 20;

fn restore_pack(
    repo: &Repository,
    target: &Path,
    plan: &RestorePlan,
    job: &PackJob,
    shared: &[bool],
    remaining: &[AtomicUsize],
    progress: &dyn Progress,
) -> Result<u64> {
    let name = job.pack.to_hex();
    let mut written = 0;
    // Handles of files created for this pack only; closed when the file is finished.
    let mut own: std::collections::HashMap<usize, std::fs::File> = std::collections::HashMap::new();
    let mut i = 0;
    while i < job.blobs.len() {
        // One read covers a run of blobs with small gaps between them.
        let start = job.blobs[i].1.offset as u64;
        let mut end = start + job.blobs[i].1.length as u64;
        let mut j = i + 1;
        while j < job.blobs.len() && (job.blobs[j].1.offset as u64) <= end + MAX_GAP {
            end = end.max(job.blobs[j].1.offset as u64 + job.blobs[j].1.length as u64);
            j += 1;
        }
        let span = repo.backend().get_range(crate::backend::Kind::Pack, &name, start, end - start)?;
        for (id, loc, targets) in &job.blobs[i..j] {
            let off = (loc.offset as u64 - start) as usize;
            let data = open_blob(repo.key(), &loc.entry(*id), &span[off..off + loc.length as usize], &job.pack)?;
            let zero = data.iter().all(|&b| b == 0);
            for &(f, at) in targets {
                let item = &plan.files[f];
                let final_path = target.join(&item.rel);
                let tmp = target.join(&item.tmp);
                let file = match own.entry(f) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) if shared[f] => e.insert(fs::open_temp(&tmp)?),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(fs::create_temp(&tmp, item.node.size)?),
                };
                if !zero {
                    file.write_all_at(&data, at).map_err(|e| Error::io(&tmp, e))?;
                }
                written += data.len() as u64;
                progress.advance(data.len() as u64);
                if remaining[f].fetch_sub(1, Ordering::AcqRel) == 1 {
                    let file = own.remove(&f).expect("handle opened above");
                    fs::finish_file(&file, &tmp, &final_path, &item.node)?;
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
        blobs: jobs.iter().flat_map(|j| j.blobs.iter().map(|(id, loc, _)| (j.pack, *id, loc.length))).collect(),
    })
}
