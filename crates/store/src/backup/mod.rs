//! The backup pipeline: walk, skip what the parent snapshot already has, chunk and
//! hash on this thread, compress and encrypt on workers (`saver`), snapshot last.

mod saver;
mod stream;
#[cfg(test)]
mod tests;
pub(crate) mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Kind;
use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::pathmatch::Globs;
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::snapshot::{BackupSummary, Snapshot};
use crate::repo::tree::{Node, RawName, Tree};
use crate::repo::Repository;
use crate::signals::names::NamePatterns;
use crate::signals::{Counter, Signals};
use crate::types::{BlobId, BlobType, FileId};
pub use saver::{BlobSaver, SaverStats};
pub use stream::{StreamInput, StreamSource};
pub use walk::estimate_size;

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    /// Defaults to this machine's host name.
    pub host: Option<String>,
    /// Globs: without `/` they match a name anywhere, with `/` the absolute path.
    pub excludes: Vec<String>,
    /// zstd level; defaults to the repository's.
    pub compression: Option<i32>,
    /// Compression/encryption threads; defaults to the number of cores.
    pub threads: Option<usize>,
    /// Back up one stream (a command's stdout, or stdin) instead of `paths`.
    pub stream: Option<StreamSource>,
    /// The indicator list names are matched against; `None`: the built-in one.
    pub names: Option<Arc<NamePatterns>>,
    /// Measure no change and entropy signals (for the cost bench).
    pub no_signals: bool,
}

pub struct BackupOutcome {
    pub id: FileId,
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
}

/// Runs one backup and writes its snapshot.
pub fn run(repo: &Arc<Repository>, opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupOutcome> {
    let started = Instant::now();
    let (paths, dropped, path_strings) = sources(opts)?;
    let host = opts.host.clone().unwrap_or_else(crate::host_name);

    // The lock goes first: prune must know this backup may rely on the index it
    // is about to read (see repo::lock).
    let lock = crate::repo::lock::LockGuard::acquire(repo, crate::repo::lock::LockKind::Shared, "backup")?;
    // Packs pending deletion are read next, and left out of the index this backup
    // deduplicates against: only a backup whose lock is older than their mark may
    // rely on them (docs/FORMAT.md, "Prune"). Reading the records before the index
    // closes the gap with a prune that deletes them meanwhile (it removes them from
    // the index first and deletes the record last).
    let pending = repo.pending_packs()?;
    let mut index = repo.load_index_without(&pending)?;
    let adopted = repo.index_unindexed_packs(&mut index, &pending)?;
    if adopted > 0 {
        tracing::info!(packs = adopted, "indexed packs left by an interrupted backup");
    }
    let snapshots = repo.snapshots()?;
    let parent = snapshots.iter().rev().find(|(_, s)| s.host == host && s.paths == path_strings);
    let parent_tree = match parent {
        Some((_, s)) => repo.load_tree(&index, &s.tree).ok(),
        None => None,
    };

    let threads = opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let level = opts.compression.unwrap_or(repo.config().compression);
    if !(1..=22).contains(&level) {
        return Err(Error::invalid("compression level", format!("{level}: zstd levels go from 1 (fastest) to 22")));
    }
    let mut a = Archiver {
        repo,
        index: &index,
        saver: Some(BlobSaver::start(repo.clone(), threads, level)),
        chunker: Chunker::new(repo.config().chunker)?,
        sent: HashSet::new(),
        excludes: Globs::new(&opts.excludes, "--exclude")?,
        summary: BackupSummary::default(),
        hardlinks: HashMap::new(),
        buf: Vec::new(),
        progress,
        warnings: Vec::new(),
        signals: (!opts.no_signals).then(|| {
            let names = opts.names.clone().unwrap_or_else(|| Arc::new(NamePatterns::builtin()));
            Counter::new(names, parent_tree.is_some())
        }),
    };
    dropped.into_iter().for_each(|w| a.warn(w));
    let root = match &opts.stream {
        Some(s) => a.stream_node(s).and_then(|n| a.archive_root(&paths, parent_tree.as_ref(), Some(n))),
        None => a.archive_root(&paths, parent_tree.as_ref(), None),
    };
    let saver = a.saver.take().unwrap();
    let stats = match root {
        Err(Error::WriterStopped) => return Err(saver.finish().err().unwrap_or(Error::WriterStopped)),
        Err(e) => {
            drop(saver.finish());
            return Err(e);
        }
        Ok(_) => saver.finish()?,
    };
    let mut summary = a.summary;
    summary.bytes_added = stats.bytes;
    summary.blobs_added = stats.blobs;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let signals: Option<Signals> = a.signals.take().map(|c| c.finish(stats.data_raw, stats.data_incompressible));
    let snapshot = Snapshot {
        time: repo.now(),
        host,
        username: crate::user_name(),
        paths: path_strings,
        tags: opts.tags.clone(),
        parent: parent.map(|(id, _)| *id),
        tree: root?,
        partial: !a.warnings.is_empty(),
        summary: Some(summary),
        program_version: format!("kura {}", env!("CARGO_PKG_VERSION")),
        original: None,
        signals,
    };
    lock.check_fresh()?;
    let id = repo.save_json(Kind::Snapshot, &snapshot)?;
    drop(lock);
    Ok(BackupOutcome { id, snapshot, warnings: a.warnings })
}

/// The paths to walk (normalized), warnings about dropped ones, and the paths the
/// snapshot records: those and the stream's `/NAME`, sorted.
fn sources(opts: &BackupOptions) -> Result<(Vec<PathBuf>, Vec<String>, Vec<String>)> {
    if let Some(s) = &opts.stream {
        s.validate()?;
    }
    let (paths, dropped) = match &opts.stream {
        Some(_) if opts.paths.is_empty() => (Vec::new(), Vec::new()),
        _ => normalize_paths(&opts.paths)?,
    };
    let mut recorded: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if let Some(s) = &opts.stream {
        recorded.push(s.snapshot_path());
        recorded.sort();
    }
    Ok((paths, dropped, recorded))
}

/// Absolute, without trailing slashes, nested paths dropped (their parent covers
/// them). A nested path reached through a symlink is not covered (the walk records
/// the symlink, not what it points to): it is dropped with a warning, returned second.
fn normalize_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>)> {
    if paths.is_empty() {
        return Err(Error::invalid("backup", "no path given"));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
        // `.` and `..` are resolved lexically (as `cd` does): the snapshot's trees
        // hold plain names only, and a `..` there would make it unrestorable.
        let mut clean = PathBuf::new();
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::CurDir => {}
                c => clean.push(c),
            }
        }
        let abs = clean;
        std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
        out.push(abs);
    }
    out.sort();
    out.dedup();
    let all = out.clone();
    let mut dropped = Vec::new();
    out.retain(|p| {
        let Some(q) = all.iter().find(|q| *q != p && p.starts_with(q)) else { return true };
        // Every directory from `q` down to `p`'s parent must be a real one.
        let through = p.ancestors().skip(1).take_while(|a| a.starts_with(q)).find(|a| {
            !std::fs::symlink_metadata(a).is_ok_and(|m| m.is_dir())
        });
        if let Some(link) = through {
            let real = std::fs::canonicalize(p).map_or_else(|_| "the real path".into(), |r| r.display().to_string());
            dropped.push(format!(
                "{} was not backed up: it is reached through {}, which is a symlink (recorded as one); back up {real} instead",
                p.display(),
                link.display()
            ));
        }
        false
    });
    Ok((out, dropped))
}

/// The regular files under a tree of the parent snapshot (a directory that is gone).
/// An unreadable tree counts as empty: signals are measurements, never a reason to fail.
fn count_files(repo: &Repository, index: &Index, id: &BlobId, depth: usize) -> u64 {
    use crate::repo::tree::NodeType;
    let Ok(tree) = repo.load_tree(index, id) else { return 0 };
    tree.nodes
        .iter()
        .map(|n| match (n.node_type, &n.subtree) {
            (NodeType::File, _) => 1,
            (NodeType::Dir, Some(sub)) if depth < crate::repo::tree::MAX_DEPTH => {
                count_files(repo, index, sub, depth + 1)
            }
            _ => 0,
        })
        .sum()
}

/// Directories between `/` and the backed-up paths.
#[derive(Default)]
struct Virtual {
    children: BTreeMap<Vec<u8>, Virtual>,
    leaf: bool,
}

enum FileStatus {
    New,
    Changed,
    Unchanged,
}

struct Archiver<'a> {
    repo: &'a Arc<Repository>,
    index: &'a Index,
    saver: Option<BlobSaver>,
    chunker: Chunker,
    /// Blobs queued by this backup that the index does not know yet.
    sent: HashSet<BlobId>,
    excludes: Globs,
    summary: BackupSummary,
    /// (device, inode) of multiply-linked files already read in this backup.
    hardlinks: HashMap<(u64, u64), Vec<BlobId>>,
    buf: Vec<u8>,
    progress: &'a dyn Progress,
    warnings: Vec<String>,
    /// `None` with signals off.
    signals: Option<Counter>,
}

impl Archiver<'_> {
    fn save_blob(&mut self, blob_type: BlobType, data: Vec<u8>) -> Result<BlobId> {
        let id = self.repo.key().blob_id(&data);
        if !self.index.contains(&id) && self.sent.insert(id) {
            self.saver.as_ref().unwrap().save(id, blob_type, data)?;
        }
        Ok(id)
    }

    fn save_tree(&mut self, mut nodes: Vec<Node>) -> Result<BlobId> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.save_blob(BlobType::Tree, Tree { nodes }.encode())
    }

    fn warn(&mut self, msg: String) {
        self.progress.warn(&msg);
        self.warnings.push(msg);
    }

    /// `extra`: a stream's node, placed at the root beside the paths.
    fn archive_root(&mut self, paths: &[PathBuf], parent: Option<&Tree>, extra: Option<Node>) -> Result<BlobId> {
        use std::os::unix::ffi::OsStrExt;
        let mut root = Virtual::default();
        for p in paths {
            let mut v = &mut root;
            for c in p.components().skip(1) {
                v = v.children.entry(c.as_os_str().as_bytes().to_vec()).or_default();
            }
            v.leaf = true;
        }
        if let Some(n) = extra {
            if root.leaf || root.children.contains_key(&n.name.0) {
                return Err(Error::invalid(
                    "backup",
                    format!(
                        "the stream's file /{} clashes with a backed-up path: give it another name",
                        n.name.lossy()
                    ),
                ));
            }
            let mut nodes = self.virtual_nodes(Path::new("/"), &root, parent)?;
            nodes.push(n);
            return self.save_tree(nodes);
        }
        if root.leaf {
            // Backing up `/` itself.
            return match self.archive_dir(Path::new("/"), parent)? {
                Some(id) => Ok(id),
                None => Err(Error::invalid("backup", "cannot read /")),
            };
        }
        self.archive_virtual(Path::new("/"), &root, parent)
    }

    /// The stream as a file node for the root; its command must succeed.
    fn stream_node(&mut self, s: &StreamSource) -> Result<Node> {
        let name = s.validate()?;
        let mut running = stream::Running::start(&s.input, s.timeout)?;
        let chunked = self.chunk_reader(running.reader());
        let read_failed = !matches!(chunked, Ok(Ok(_)));
        let finished = running.finish(read_failed);
        let (ids, size) = chunked?.map_err(|e| Error::io(format!("<{}>", s.filename), e))?;
        finished?;
        let now = self.repo.now().timestamp_nanos_opt().unwrap_or(0);
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let node = Node {
            mode: 0o600,
            uid,
            gid,
            mtime_ns: now,
            ctime_ns: now,
            links: 1,
            size,
            content: ids,
            ..Node::new(name, crate::repo::tree::NodeType::File)
        };
        self.summary.files_new += 1;
        self.summary.bytes_total += size;
        self.progress.file_done(Path::new(&s.snapshot_path()));
        Ok(node)
    }

    fn archive_virtual(&mut self, dir: &Path, v: &Virtual, parent: Option<&Tree>) -> Result<BlobId> {
        let nodes = self.virtual_nodes(dir, v, parent)?;
        self.save_tree(nodes)
    }

    fn virtual_nodes(&mut self, dir: &Path, v: &Virtual, parent: Option<&Tree>) -> Result<Vec<Node>> {
        let mut nodes = Vec::new();
        for (name, child) in &v.children {
            let name = RawName(name.clone());
            let full = dir.join(name.as_os_str());
            let old = parent.and_then(|t| t.find(&name.0));
            if child.leaf {
                if let Some(n) = self.archive_entry(&full, name, old)? {
                    nodes.push(n);
                }
                continue;
            }
            // A directory on the way to a backed-up path: a symlink there is followed
            // (the path was reached through it), so this records the real directory.
            let meta = std::fs::metadata(&full).map_err(|e| Error::io(&full, e))?;
            let old_tree = self.parent_subtree(old);
            let sub = self.archive_virtual(&full, child, old_tree.as_ref())?;
            nodes.push(walk::dir_node(name, &meta, sub));
        }
        Ok(nodes)
    }

    /// Feeds one finished directory to the signal counter (trees only, no file data).
    fn count_signals(&mut self, dir: &Path, nodes: &[Node], parent: Option<&Tree>) {
        let Some(mut c) = self.signals.take() else { return };
        let (repo, index) = (self.repo, self.index);
        let mut deleted = |id: &BlobId| count_files(repo, index, id, 0);
        c.dir_done(&dir.to_string_lossy(), nodes, parent, &mut deleted);
        self.signals = Some(c);
    }

    fn parent_subtree(&self, old: Option<&Node>) -> Option<Tree> {
        let id = old?.subtree?;
        self.repo.load_tree(self.index, &id).ok()
    }

    /// Returns the subtree id, or `None` when the directory could not be read (warned).
    fn archive_dir(&mut self, dir: &Path, parent: Option<&Tree>) -> Result<Option<BlobId>> {
        let entries = match walk::read_dir_sorted(dir) {
            Ok(e) => e,
            Err(e) => {
                self.warn(format!("cannot read directory {}: {e}", dir.display()));
                return Ok(None);
            }
        };
        let mut nodes = Vec::with_capacity(entries.len());
        for name in entries {
            let full = dir.join(name.as_os_str());
            if !self.excludes.is_empty() && self.excludes.matches(&full, &name) {
                continue;
            }
            let old = parent.and_then(|t| t.find(&name.0));
            if let Some(n) = self.archive_entry(&full, name, old)? {
                nodes.push(n);
            }
        }
        self.summary.dirs += 1;
        self.count_signals(dir, &nodes, parent);
        self.save_tree(nodes).map(Some)
    }

    fn archive_entry(&mut self, full: &Path, name: RawName, old: Option<&Node>) -> Result<Option<Node>> {
        let meta = match std::fs::symlink_metadata(full) {
            Ok(m) => m,
            Err(e) => {
                self.warn(format!("cannot stat {}: {e}", full.display()));
                return Ok(None);
            }
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let old_tree = self.parent_subtree(old);
            return Ok(self.archive_dir(full, old_tree.as_ref())?.map(|id| walk::dir_node(name, &meta, id)));
        }
        if ft.is_symlink() {
            return match std::fs::read_link(full) {
                Ok(t) => Ok(Some(walk::symlink_node(name, &meta, &t))),
                Err(e) => {
                    self.warn(format!("cannot read symlink {}: {e}", full.display()));
                    Ok(None)
                }
            };
        }
        if !ft.is_file() {
            self.summary.files_skipped += 1;
            self.progress.note(&format!("skipped {} (device, socket or fifo)", full.display()));
            return Ok(None);
        }
        let mut node = walk::file_node(name, &meta);
        let status = self.file_content(full, &mut node, old)?;
        self.progress.file_done(full);
        match status {
            None => return Ok(None),
            Some(FileStatus::New) => self.summary.files_new += 1,
            Some(FileStatus::Changed) => self.summary.files_changed += 1,
            Some(FileStatus::Unchanged) => {
                self.summary.files_unchanged += 1;
                self.progress.advance(node.size); // done without reading
            }
        }
        self.summary.bytes_total += node.size;
        Ok(Some(node))
    }

    /// Fills `node.content`; `None` when the file could not be read (warned).
    fn file_content(&mut self, full: &Path, node: &mut Node, old: Option<&Node>) -> Result<Option<FileStatus>> {
        if let Some(o) = old.filter(|o| walk::unchanged(o, node)) {
            if o.content.iter().all(|id| self.index.contains(id) || self.sent.contains(id)) {
                node.content = o.content.clone();
                return Ok(Some(FileStatus::Unchanged));
            }
        }
        let status = if old.is_some() { FileStatus::Changed } else { FileStatus::New };
        let link_key = (node.device, node.inode);
        if node.links > 1 {
            if let Some(c) = self.hardlinks.get(&link_key) {
                node.content = c.clone();
                return Ok(Some(status));
            }
        }
        match self.chunk_file(full)? {
            Ok((ids, size)) => {
                node.size = size;
                node.content = ids;
            }
            Err(e) => {
                self.warn(format!("cannot read {}: {e}", full.display()));
                return Ok(None);
            }
        }
        if node.links > 1 {
            self.hardlinks.insert(link_key, node.content.clone());
        }
        Ok(Some(status))
    }

    /// Outer error: the repository failed. Inner error: this file could not be read.
    fn chunk_file(&mut self, path: &Path) -> Result<std::io::Result<(Vec<BlobId>, u64)>> {
        match std::fs::File::open(path) {
            Ok(mut f) => self.chunk_reader(&mut f),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Chunks everything `f` yields, in 1 MiB reads: memory stays flat whatever the size.
    fn chunk_reader(&mut self, f: &mut dyn std::io::Read) -> Result<std::io::Result<(Vec<BlobId>, u64)>> {
        use std::io::Read;
        const READ: u64 = 1 << 20;
        let max = self.chunker.params().max as usize;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(2 * max + READ as usize);
        let (mut start, mut eof, mut total) = (0usize, false, 0u64);
        let mut ids = Vec::new();
        // Ok(Err(_)): this file could not be read; Err(_): the repository failed.
        let result: Result<std::io::Result<()>> = 'outer: loop {
            while !eof && buf.len() - start < max {
                if buf.len() + READ as usize > buf.capacity() {
                    buf.copy_within(start.., 0);
                    buf.truncate(buf.len() - start);
                    start = 0;
                }
                match (&mut *f).take(READ).read_to_end(&mut buf) {
                    Ok(n) => {
                        eof = (n as u64) < READ;
                        self.summary.bytes_read += n as u64;
                        self.progress.advance(n as u64);
                    }
                    Err(e) => break 'outer Ok(Err(e)),
                }
            }
            let Some(n) = self.chunker.find_cut(&buf[start..], eof) else { break Ok(Ok(())) };
            let chunk = buf[start..start + n].to_vec();
            start += n;
            total += n as u64;
            match self.save_blob(BlobType::Data, chunk) {
                Ok(id) => ids.push(id),
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        if let Err(e) = result? {
            return Ok(Err(e));
        }
        Ok(Ok((ids, total)))
    }
}
