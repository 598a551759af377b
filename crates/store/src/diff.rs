//! `diff`: what changed between two snapshots, path by path. Directories whose
//! tree is the same in both (same tree id) are skipped without being read, so a
//! diff costs what changed, not the size of the snapshots.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::repo::index::Index;
use crate::repo::tree::{Node, NodeType, Tree, MAX_DEPTH, MAX_ENTRIES};
use crate::repo::Repository;
use crate::types::BlobId;

/// How one path differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// A file's content or a symlink's target differs.
    Modified,
    /// A file became a directory, or the like.
    TypeChanged,
    /// Same content; mode, owner or modification time differ.
    Metadata,
}

impl Change {
    /// The one-letter mark of the text output (as restic's diff).
    pub fn mark(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::TypeChanged => 'T',
            Change::Metadata => 'U',
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub path: String,
    pub change: Change,
    /// The type in the second snapshot (the first for removed paths).
    #[serde(rename = "type")]
    pub node_type: NodeType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_after: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub type_changed: u64,
    pub metadata: u64,
    /// Sizes of the files added (or grown), and removed (or shrunk).
    pub bytes_added: u64,
    pub bytes_removed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    pub changes: Vec<Entry>,
    pub summary: Summary,
}

/// Compares the trees `before` and `after` (two snapshots' roots).
pub fn diff(repo: &Repository, index: &Index, before: &BlobId, after: &BlobId) -> Result<Diff> {
    let mut w = Walker { repo, index, out: Diff::default(), entries: 0 };
    w.trees(Some(before), Some(after), Path::new("/"), 0)?;
    Ok(w.out)
}

/// A directory's tree; `None` for anything else.
fn subtree_of(n: &Node) -> Option<&BlobId> {
    if n.node_type == NodeType::Dir {
        n.subtree.as_ref()
    } else {
        None
    }
}

struct Walker<'a> {
    repo: &'a Repository,
    index: &'a Index,
    out: Diff,
    entries: u64,
}

impl Walker<'_> {
    fn load(&mut self, id: Option<&BlobId>, at: &Path) -> Result<Tree> {
        let Some(id) = id else { return Ok(Tree { nodes: Vec::new() }) };
        let t = self.repo.load_tree(self.index, id)?;
        self.entries += t.nodes.len() as u64;
        if self.entries > MAX_ENTRIES {
            return Err(Error::invalid("diff", format!("more than {MAX_ENTRIES} entries below {}", at.display())));
        }
        Ok(t)
    }

    /// Compares two directories (`None`: the directory is absent on that side).
    fn trees(&mut self, a: Option<&BlobId>, b: Option<&BlobId>, at: &Path, depth: usize) -> Result<()> {
        if a == b {
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(Error::invalid("diff", format!("{} is more than {MAX_DEPTH} levels deep", at.display())));
        }
        let (ta, tb) = (self.load(a, at)?, self.load(b, at)?);
        let mut names: BTreeMap<&[u8], (Option<&Node>, Option<&Node>)> = BTreeMap::new();
        for n in &ta.nodes {
            names.entry(n.name.as_os_str().as_encoded_bytes()).or_default().0 = Some(n);
        }
        for n in &tb.nodes {
            names.entry(n.name.as_os_str().as_encoded_bytes()).or_default().1 = Some(n);
        }
        for (x, y) in names.into_values() {
            let name = x.or(y).expect("one side has it").name.as_os_str();
            self.nodes(x, y, &at.join(name), depth)?;
        }
        Ok(())
    }

    fn nodes(&mut self, x: Option<&Node>, y: Option<&Node>, path: &Path, depth: usize) -> Result<()> {
        match (x, y) {
            (Some(x), Some(y)) if x.node_type != y.node_type => {
                self.record(Change::TypeChanged, path, Some(x), Some(y));
                // What a directory held on either side is listed too.
                self.trees(subtree_of(x), None, path, depth + 1)?;
                self.trees(None, subtree_of(y), path, depth + 1)
            }
            (Some(x), Some(y)) if x.node_type == NodeType::Dir => {
                self.trees(x.subtree.as_ref(), y.subtree.as_ref(), path, depth + 1)
            }
            (Some(x), Some(y)) => {
                if x.content != y.content || x.target != y.target || x.size != y.size {
                    self.record(Change::Modified, path, Some(x), Some(y));
                } else if (x.mode, x.uid, x.gid, x.mtime_ns) != (y.mode, y.uid, y.gid, y.mtime_ns) {
                    self.record(Change::Metadata, path, Some(x), Some(y));
                }
                Ok(())
            }
            (Some(x), None) => {
                self.record(Change::Removed, path, Some(x), None);
                self.trees(subtree_of(x), None, path, depth + 1)
            }
            (None, Some(y)) => {
                self.record(Change::Added, path, None, Some(y));
                self.trees(None, subtree_of(y), path, depth + 1)
            }
            (None, None) => Ok(()),
        }
    }

    fn record(&mut self, change: Change, path: &Path, x: Option<&Node>, y: Option<&Node>) {
        let size = |n: Option<&Node>| n.filter(|n| n.node_type == NodeType::File).map(|n| n.size);
        let (before, after) = (size(x), size(y));
        let s = &mut self.out.summary;
        match change {
            Change::Added => s.added += 1,
            Change::Removed => s.removed += 1,
            Change::Modified => s.modified += 1,
            Change::TypeChanged => s.type_changed += 1,
            Change::Metadata => s.metadata += 1,
        }
        let (b, a) = (before.unwrap_or(0), after.unwrap_or(0));
        s.bytes_added += a.saturating_sub(b);
        s.bytes_removed += b.saturating_sub(a);
        let node_type = y.or(x).map(|n| n.node_type).expect("one side has it");
        self.out.changes.push(Entry {
            path: path.display().to_string(),
            change,
            node_type,
            size_before: before,
            size_after: after,
        });
    }
}
