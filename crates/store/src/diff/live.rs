//! A snapshot against a live directory: the snapshot's tree at the directory's path
//! is walked beside the directory itself. Files are not read: a file whose size or
//! modification time differs is modified (the rule a backup uses to decide what to
//! read again), so a live diff costs a walk, never the data.

use std::collections::BTreeMap;
use std::path::Path;

use super::{entry, pair_renames, Change, Diff};
use crate::backup::walk;
use crate::error::{Error, Result};
use crate::repo::index::Index;
use crate::repo::tree::{Node, NodeType, RawName, MAX_DEPTH, MAX_ENTRIES};
use crate::repo::Repository;
use crate::types::BlobId;

/// Compares the snapshot tree `root` with the live directory `live` (absolute). The
/// snapshot side is the tree at `live`'s path in the snapshot (absent: everything
/// live is added).
pub fn diff_live(repo: &Repository, index: &Index, root: &BlobId, live: &Path, snap: &str) -> Result<Diff> {
    let at = live.to_str().ok_or_else(|| Error::invalid("diff", format!("{} is not UTF-8", live.display())))?;
    let start = match crate::restore::resolve(repo, index, root, at, snap) {
        Ok(Some(n)) if n.node_type == NodeType::Dir => n.subtree,
        Ok(None) => Some(*root),
        Ok(Some(_)) => return Err(Error::invalid("diff", format!("{at} is not a directory in snapshot {snap}"))),
        Err(Error::PathNotInSnapshot { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut w = LiveWalker { repo, index, out: Diff::default(), entries: 0 };
    w.dirs(start.as_ref(), Some(live), live, 0)?;
    pair_renames(&mut w.out, false);
    Ok(w.out)
}

struct LiveWalker<'a> {
    repo: &'a Repository,
    index: &'a Index,
    out: Diff,
    entries: u64,
}

impl LiveWalker<'_> {
    fn count(&mut self, n: usize, at: &Path) -> Result<()> {
        self.entries += n as u64;
        if self.entries > MAX_ENTRIES {
            return Err(Error::invalid("diff", format!("more than {MAX_ENTRIES} entries below {}", at.display())));
        }
        Ok(())
    }

    /// The live directory's entries as nodes (metadata only, no content).
    fn list(&mut self, dir: &Path) -> Result<Vec<Node>> {
        let names = walk::read_dir_sorted(dir).map_err(|e| Error::io(dir, e))?;
        self.count(names.len(), dir)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let full = dir.join(name.as_os_str());
            let Ok(m) = std::fs::symlink_metadata(&full) else { continue };
            let ft = m.file_type();
            out.push(if ft.is_dir() {
                Node { subtree: None, ..walk::dir_node(name, &m, BlobId([0; 32])) }
            } else if ft.is_symlink() {
                walk::symlink_node(name, &m, &std::fs::read_link(&full).unwrap_or_default())
            } else if ft.is_file() {
                walk::file_node(name, &m)
            } else {
                continue;
            });
        }
        Ok(out)
    }

    fn dirs(&mut self, a: Option<&BlobId>, live: Option<&Path>, at: &Path, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid("diff", format!("{} is more than {MAX_DEPTH} levels deep", at.display())));
        }
        let ta = match a {
            Some(id) => self.repo.load_tree(self.index, id)?.nodes,
            None => Vec::new(),
        };
        self.count(ta.len(), at)?;
        let tb = match live {
            Some(p) => self.list(p)?,
            None => Vec::new(),
        };
        let mut names: BTreeMap<RawName, (Option<&Node>, Option<&Node>)> = BTreeMap::new();
        for n in &ta {
            names.entry(n.name.clone()).or_default().0 = Some(n);
        }
        for n in &tb {
            names.entry(n.name.clone()).or_default().1 = Some(n);
        }
        for (name, (x, y)) in names {
            let path = at.join(name.as_os_str());
            self.nodes(x, y, &path, depth)?;
        }
        Ok(())
    }

    fn nodes(&mut self, x: Option<&Node>, y: Option<&Node>, path: &Path, depth: usize) -> Result<()> {
        let sub = |n: &Node| if n.node_type == NodeType::Dir { n.subtree } else { None };
        let live_dir = |n: &Node| (n.node_type == NodeType::Dir).then_some(path);
        match (x, y) {
            (Some(x), Some(y)) if x.node_type != y.node_type => {
                self.out.changes.push(entry(Change::TypeChanged, path, Some(x), Some(y)));
                self.dirs(sub(x).as_ref(), None, path, depth + 1)?;
                self.dirs(None, live_dir(y), path, depth + 1)
            }
            (Some(x), Some(_)) if x.node_type == NodeType::Dir => {
                self.dirs(x.subtree.as_ref(), Some(path), path, depth + 1)
            }
            (Some(x), Some(y)) => {
                let change = if x.size != y.size || x.mtime_ns != y.mtime_ns || x.target != y.target {
                    Some(Change::Modified)
                } else if x.mode != y.mode {
                    Some(Change::ModeChanged)
                } else if (x.uid, x.gid) != (y.uid, y.gid) {
                    Some(Change::Metadata)
                } else {
                    None
                };
                if let Some(c) = change {
                    self.out.changes.push(entry(c, path, Some(x), Some(y)));
                }
                Ok(())
            }
            (Some(x), None) => {
                self.out.changes.push(entry(Change::Removed, path, Some(x), None));
                self.dirs(sub(x).as_ref(), None, path, depth + 1)
            }
            (None, Some(y)) => {
                self.out.changes.push(entry(Change::Added, path, None, Some(y)));
                self.dirs(None, live_dir(y), path, depth + 1)
            }
            (None, None) => Ok(()),
        }
    }
}
