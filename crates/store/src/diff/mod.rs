//! `diff`: what changed between two snapshots, or a snapshot and a live directory
//! (`live`), path by path. Directories whose tree is the same in both (same tree
//! id) are skipped without being read, so a diff costs what changed, not the size
//! of the snapshots. A removed and an added file are paired into a rename
//! (`pair_renames`): with the same content anywhere, or in the same directory when
//! the new name only gained or swapped an extension (`a.doc` -> `a.doc.locked`).

mod live;
pub use live::diff_live;

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
    /// Moved or renamed (`from` names the old path); see `content_changed`.
    Renamed,
    /// Same content; the permission bits differ.
    ModeChanged,
    /// Same content and mode; owner or modification time differ.
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
            Change::Renamed => 'R',
            Change::ModeChanged => 'P',
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
    /// For a rename: the old path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// For a rename: whether the content changed too (`None`: unknown, against a
    /// live directory whose files are not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_changed: Option<bool>,
    /// For a mode change: the permission bits before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_before: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_after: Option<u32>,
    /// A file's blob ids, for pairing renames (not printed).
    #[serde(skip)]
    content: Vec<BlobId>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    pub type_changed: u64,
    pub renamed: u64,
    /// Renames to a new extension whose content changed as well: what encrypting
    /// malware leaves behind.
    pub renamed_new_extension: u64,
    pub mode_changed: u64,
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
    pair_renames(&mut w.out, true);
    Ok(w.out)
}

/// Turns removed + added files into renames. `by_content`: blob ids are known on
/// both sides (two snapshots), so same content anywhere is a move; else only names
/// in the same directory pair. The summary is recomputed.
pub fn pair_renames(d: &mut Diff, by_content: bool) {
    use std::collections::HashMap;
    let is_file = |e: &Entry| e.node_type == NodeType::File;
    let removed: Vec<usize> =
        (0..d.changes.len()).filter(|&i| d.changes[i].change == Change::Removed && is_file(&d.changes[i])).collect();
    let mut by_name: HashMap<(String, String), usize> = HashMap::new();
    let mut by_stem: HashMap<(String, String), usize> = HashMap::new();
    let mut by_blobs: HashMap<&[BlobId], Vec<usize>> = HashMap::new();
    for &i in &removed {
        let (dir, name) = split(&d.changes[i].path);
        by_name.insert((dir.to_string(), name.to_string()), i);
        by_stem.entry((dir.to_string(), stem(name).to_string())).or_insert(i);
        if by_content && !d.changes[i].content.is_empty() {
            by_blobs.entry(d.changes[i].content.as_slice()).or_default().push(i);
        }
    }
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut taken = vec![false; d.changes.len()];
    for j in 0..d.changes.len() {
        let e = &d.changes[j];
        if e.change != Change::Added || !is_file(e) {
            continue;
        }
        let (dir, name) = split(&e.path);
        let named = by_name
            .get(&(dir.to_string(), stem(name).to_string()))
            .or_else(|| name.contains('.').then(|| by_stem.get(&(dir.to_string(), stem(name).to_string()))).flatten())
            .copied()
            .filter(|&i| !taken[i]);
        let found = named.or_else(|| {
            by_blobs.get_mut(e.content.as_slice()).and_then(|v| {
                while let Some(i) = v.pop() {
                    if !taken[i] {
                        return Some(i);
                    }
                }
                None
            })
        });
        if let Some(i) = found {
            taken[i] = true;
            pairs.push((i, j));
        }
    }
    let mut drop = vec![false; d.changes.len()];
    for (i, j) in pairs {
        let old = d.changes[i].clone();
        let e = &mut d.changes[j];
        e.change = Change::Renamed;
        e.size_before = old.size_before;
        e.content_changed = by_content.then(|| old.content != e.content).or(match (old.size_before, e.size_after) {
            (Some(a), Some(b)) if a != b => Some(true),
            _ => None,
        });
        e.from = Some(old.path);
        drop[i] = true;
    }
    let mut k = 0;
    d.changes.retain(|_| {
        k += 1;
        !drop[k - 1]
    });
    d.summary = summarize(&d.changes);
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

fn extension(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[i + 1..],
        _ => "",
    }
}

/// The counts and byte totals of a list of changes.
pub fn summarize(changes: &[Entry]) -> Summary {
    let mut s = Summary::default();
    for e in changes {
        match e.change {
            Change::Added => s.added += 1,
            Change::Removed => s.removed += 1,
            Change::Modified => s.modified += 1,
            Change::TypeChanged => s.type_changed += 1,
            Change::Renamed => {
                s.renamed += 1;
                let new_ext = e.from.as_deref().is_some_and(|f| extension(split(f).1) != extension(split(&e.path).1));
                if new_ext && e.content_changed != Some(false) {
                    s.renamed_new_extension += 1;
                }
            }
            Change::ModeChanged => s.mode_changed += 1,
            Change::Metadata => s.metadata += 1,
        }
        let (b, a) = (e.size_before.unwrap_or(0), e.size_after.unwrap_or(0));
        s.bytes_added += a.saturating_sub(b);
        s.bytes_removed += b.saturating_sub(a);
    }
    s
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
                } else if x.mode != y.mode {
                    self.record(Change::ModeChanged, path, Some(x), Some(y));
                } else if (x.uid, x.gid, x.mtime_ns) != (y.uid, y.gid, y.mtime_ns) {
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
        self.out.changes.push(entry(change, path, x, y));
    }
}

/// One change, from the nodes on either side.
fn entry(change: Change, path: &Path, x: Option<&Node>, y: Option<&Node>) -> Entry {
    let size = |n: Option<&Node>| n.filter(|n| n.node_type == NodeType::File).map(|n| n.size);
    let node_type = y.or(x).map(|n| n.node_type).expect("one side has it");
    let mode = change == Change::ModeChanged;
    Entry {
        path: path.display().to_string(),
        change,
        node_type,
        size_before: size(x),
        size_after: size(y),
        from: None,
        content_changed: None,
        mode_before: x.filter(|_| mode).map(|n| n.mode),
        mode_after: y.filter(|_| mode).map(|n| n.mode),
        content: y.or(x).map(|n| n.content.clone()).unwrap_or_default(),
    }
}
