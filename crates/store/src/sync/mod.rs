//! Bringing a directory to a snapshot by difference: the step that keeps a warm
//! standby current, rolls it back to a clean point at a failover, and brings a
//! rebuilt primary back at a failback.
//!
//! `apply` plans first: the restore plan of the snapshot (from its trees), and what
//! on disk the snapshot does not hold (`plan::removals`, pure). It then executes:
//! the removals, then the restore in its reuse mode, which leaves files whose size,
//! mtime, mode (and owner, as root) match untouched, rebuilds changed files from the
//! blocks their old version already holds and fetches only the blocks that differ,
//! and renames each file into place complete (atomic per file).
//!
//! Crash safety: a marker file beside the directory (`.NAME.kura-standby` next to
//! `NAME`, so that the directory holds exactly the snapshot) says which snapshot
//! the directory holds. It is replaced (atomically, synced) by
//! "applying S" before anything changes and by "holds S" only after every file is in
//! place, so a kill -9 at any point leaves a directory that is never reported as
//! holding a snapshot it does not fully hold. Running `apply` again finishes the job:
//! every step is idempotent and a file spread over several packs resumes from its
//! temp file.
//!
//! One apply per directory at a time: `apply` holds an `flock` on
//! `.NAME.kura-standby.lock` beside it (released by the kernel if the process
//! dies), so a second apply of the same directory, from this process or another
//! (two agent tasks, a CLI and a daemon), waits for the first to end.

pub mod copy;
pub mod plan;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::snapshot::Snapshot;
use crate::repo::Repository;
use crate::restore::{RestoreOptions, RestoreSummary};
use crate::types::FileId;
pub use copy::copy_tree;
pub use plan::{removals, DiskEntry, Kind, Wanted};

/// The marker's name ends with this; it sits beside the synced directory.
pub const MARKER_SUFFIX: &str = ".kura-standby";

/// Where the marker of `dir` is: `.NAME.kura-standby` in its parent.
pub fn marker_path(dir: &Path) -> Result<PathBuf> {
    let name = dir.file_name().ok_or_else(|| {
        Error::invalid(dir.display().to_string(), "a standby must be a named directory (not / or ..)")
    })?;
    let mut m = std::ffi::OsString::from(".");
    m.push(name);
    m.push(MARKER_SUFFIX);
    Ok(dir.with_file_name(m))
}

/// What the marker records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Marker {
    /// The directory holds this snapshot (full hex id), completely.
    Holds { snapshot: String },
    /// An update to this snapshot started and has not finished: the directory holds
    /// no snapshot completely.
    Applying { snapshot: String, previous: Option<String> },
}

#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    pub target: PathBuf,
    /// A path inside the snapshot whose contents the target holds (as in restore).
    pub subpath: Option<String>,
    pub threads: Option<usize>,
}

/// What an apply did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncSummary {
    pub snapshot: String,
    /// The snapshot the directory held before (none: empty, unknown or interrupted).
    pub previous: Option<String>,
    /// Files left as they were.
    pub files_unchanged: u64,
    /// Files written: new ones and changed ones.
    pub files_written: u64,
    /// Of those, changed files rebuilt from their old version.
    pub files_reused: u64,
    /// Entries removed (a removed directory counts once).
    pub removed: u64,
    /// Bytes fetched from the repository and written.
    pub bytes_written: u64,
    /// Bytes copied from old versions of changed files instead of fetched.
    pub bytes_reused: u64,
    /// Bytes an interrupted apply had already written (resumed).
    pub bytes_resumed: u64,
    pub duration_ms: u64,
    pub restore: RestoreSummary,
}

/// The snapshot `dir` holds completely, if any (no marker, or an unfinished apply: none).
pub fn held(dir: &Path) -> Result<Option<FileId>> {
    match read_marker(dir)? {
        Some(Marker::Holds { snapshot }) => Ok(Some(parse_id(dir, &snapshot)?)),
        _ => Ok(None),
    }
}

fn parse_id(dir: &Path, hex: &str) -> Result<FileId> {
    FileId::from_hex(hex)
        .map_err(|_| Error::invalid(format!("{}", dir.display()), format!("marker: {hex:?} is not a snapshot id")))
}

/// Reads the marker (`None`: there is none).
pub fn read_marker(dir: &Path) -> Result<Option<Marker>> {
    let p = marker_path(dir)?;
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::invalid(
                p.display().to_string(),
                format!("not a kura standby marker ({e}); remove it to make kura apply the whole snapshot again"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&p, e)),
    }
}

/// Replaces the marker atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_marker(dir: &Path, m: &Marker) -> Result<()> {
    let p = marker_path(dir)?;
    let mut tmp = p.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let body = serde_json::to_vec(m).map_err(|e| Error::invalid("standby marker", e.to_string()))?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?
    };
    f.write_all(&body).and_then(|_| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))?;
    let parent = p.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(|e| Error::io(parent, e))
}

/// Brings `opts.target` to the snapshot by difference (see the module's comment).
pub fn apply(
    repo: &Arc<Repository>,
    snap_id: &FileId,
    snap: &Snapshot,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncSummary> {
    let started = std::time::Instant::now();
    let target = &opts.target;
    marker_path(target)?;
    make_dir(target)?;
    let _lock = lock(target)?;
    let previous = match read_marker(target)? {
        Some(Marker::Holds { snapshot }) => Some(snapshot),
        Some(Marker::Applying { .. }) => None,
        None => None,
    };
    let hex = snap_id.to_hex();
    write_marker(target, &Marker::Applying { snapshot: hex.clone(), previous: previous.clone() })?;
    let ropts = RestoreOptions {
        target: target.clone(),
        subpath: opts.subpath.clone(),
        includes: vec![],
        verify: false,
        threads: opts.threads,
        reuse_existing: true,
    };
    let prepared = crate::restore::prepare(repo, snap_id, snap, &ropts)?;
    let wanted = Wanted::from_plan(prepared.plan());
    let listing = list(target)?;
    let gone = removals(&wanted, &listing, &[]);
    for e in &gone {
        remove(target, e)?;
    }
    let restore = crate::restore::execute(prepared, progress)?;
    if !restore.is_complete() {
        let why = restore
            .damaged
            .first()
            .map(|d| format!("{} is damaged in the repository ({})", d.snapshot_path, d.reason))
            .unwrap_or_else(|| restore.verify_failures.join("; "));
        return Err(Error::invalid(format!("standby {}", target.display()), format!("not brought to {hex}: {why}")));
    }
    write_marker(target, &Marker::Holds { snapshot: hex.clone() })?;
    Ok(SyncSummary {
        snapshot: hex,
        previous,
        files_unchanged: restore.files_skipped,
        files_written: restore.files_restored,
        files_reused: restore.files_reused,
        removed: gone.len() as u64,
        bytes_written: restore.bytes_written,
        bytes_reused: restore.bytes_reused,
        bytes_resumed: restore.bytes_resumed,
        duration_ms: started.elapsed().as_millis() as u64,
        restore,
    })
}

/// Takes the directory's apply lock, waiting for another apply of it to end.
fn lock(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let mut p = marker_path(dir)?.into_os_string();
    p.push(".lock");
    let p = PathBuf::from(p);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    // SAFETY: flock on a file descriptor this function owns; blocks until free.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(&p, std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// The target directory, created 0700 if missing; a file or a symlink in its place is refused.
fn make_dir(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::invalid(
            target.display().to_string(),
            "is not a directory: a standby must be a directory (remove it or give another path)",
        )),
        Err(_) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(target).map_err(|e| Error::io(target, e))
        }
    }
}

/// Every entry under `root`, each directory before its contents; symlinks are not followed.
pub fn list(root: &Path) -> Result<Vec<DiskEntry>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(&dir, e))?;
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let r = rel.join(&n);
            let m = std::fs::symlink_metadata(root.join(&r)).map_err(|e| Error::io(root.join(&r), e))?;
            let kind = if m.is_dir() { Kind::Dir } else { Kind::Other };
            if kind == Kind::Dir {
                subdirs.push(r.clone());
            }
            out.push(DiskEntry { rel: r, kind });
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

fn remove(root: &Path, e: &DiskEntry) -> Result<()> {
    let p = root.join(&e.rel);
    // remove_dir_all never follows a symlink inside; a symlink itself is unlinked.
    let r = if e.kind == Kind::Dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    match r {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&p, err)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_apply_of_one_directory_waits_for_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("standby");
        std::fs::create_dir(&dir).unwrap();
        let first = lock(&dir).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        let t = std::thread::spawn(move || {
            let _second = lock(&d).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "two applies at once");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the second never ran");
        t.join().unwrap();
        // Another directory beside it is not held by it.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let _a = lock(&dir).unwrap();
        let _b = lock(&other).unwrap();
    }
}
