//! Filesystem facts for the archiver: sorted listings, metadata -> nodes, excludes.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::repo::tree::{Node, NodeType, RawName};
use crate::types::BlobId;

pub fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<RawName>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        names.push(RawName(e?.file_name().as_bytes().to_vec()));
    }
    names.sort();
    Ok(names)
}

fn base(name: RawName, m: &Metadata, node_type: NodeType) -> Node {
    Node {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        ..Node::new(name, node_type)
    }
}

pub fn dir_node(name: RawName, m: &Metadata, subtree: BlobId) -> Node {
    Node { subtree: Some(subtree), ..base(name, m, NodeType::Dir) }
}

pub fn symlink_node(name: RawName, m: &Metadata, target: &Path) -> Node {
    Node { target: Some(RawName(target.as_os_str().as_bytes().to_vec())), ..base(name, m, NodeType::Symlink) }
}

pub fn file_node(name: RawName, m: &Metadata) -> Node {
    Node { inode: m.ino(), device: m.dev(), links: m.nlink(), size: m.len(), ..base(name, m, NodeType::File) }
}

/// The parent snapshot's node still describes this file: same size, times and inode.
pub fn unchanged(old: &Node, new: &Node) -> bool {
    old.node_type == NodeType::File
        && old.size == new.size
        && old.mtime_ns == new.mtime_ns
        && old.ctime_ns == new.ctime_ns
        && old.inode == new.inode
}

/// Total size of the regular files under `paths`, for a progress bar's total. Runs
/// beside the backup and gives up (returning what it has) when `stop` is set.
pub fn estimate_size(paths: &[std::path::PathBuf], excludes: &[String], stop: &std::sync::atomic::AtomicBool) -> u64 {
    use std::sync::atomic::Ordering;
    let globs = crate::pathmatch::Globs::new(excludes, "--exclude").ok();
    let mut stack: Vec<std::path::PathBuf> = paths.to_vec();
    let mut total = 0;
    while let Some(p) = stack.pop() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_file() {
            total += m.len();
        } else if m.is_dir() {
            for name in read_dir_sorted(&p).unwrap_or_default() {
                let full = p.join(name.as_os_str());
                if !globs.as_ref().is_some_and(|g| !g.is_empty() && g.matches(&full, &name)) {
                    stack.push(full);
                }
            }
        }
    }
    total
}
