//! `find`: which snapshots hold a path matching a glob. The pattern is tried on
//! each entry's name and on its full path in the snapshot (`*` does not cross `/`
//! in either). Each distinct (tree, path) is walked once across all the snapshots
//! searched: an unchanged directory costs one walk however many snapshots hold it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::repo::index::Index;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, NodeType, MAX_DEPTH, MAX_ENTRIES};
use crate::repo::Repository;
use crate::types::{BlobId, FileId};

/// One matching entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Match {
    pub path: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
}

impl Match {
    fn new(path: &Path, n: &Node) -> Match {
        Match {
            path: path.display().to_string(),
            node_type: n.node_type,
            size: n.size,
            mode: n.mode,
            mtime_ns: n.mtime_ns,
        }
    }
}

/// The matches in one snapshot.
pub struct SnapshotMatches {
    pub id: FileId,
    pub snapshot: Snapshot,
    pub matches: Vec<Match>,
}

pub struct Finder<'a> {
    repo: &'a Repository,
    index: &'a Index,
    glob: GlobMatcher,
    /// Matches under each (tree, its path) already walked.
    memo: HashMap<(BlobId, PathBuf), Rc<Vec<Match>>>,
    /// Entries read so far, against `MAX_ENTRIES`.
    entries: u64,
}

impl<'a> Finder<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index, pattern: &str) -> Result<Finder<'a>> {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::invalid("find pattern", format!("{pattern:?}: {e}")))?
            .compile_matcher();
        Ok(Finder { repo, index, glob, memo: HashMap::new(), entries: 0 })
    }

    /// The matches of each snapshot, newest snapshot first; snapshots without
    /// a match are left out.
    pub fn search(&mut self, mut snapshots: Vec<(FileId, Snapshot)>) -> Result<Vec<SnapshotMatches>> {
        snapshots.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        let mut out = Vec::new();
        for (id, snapshot) in snapshots {
            let found = self.walk(&snapshot.tree, Path::new("/"), 0)?;
            if !found.is_empty() {
                out.push(SnapshotMatches { id, snapshot, matches: found.to_vec() });
            }
        }
        Ok(out)
    }

    fn walk(&mut self, tree: &BlobId, dir: &Path, depth: usize) -> Result<Rc<Vec<Match>>> {
        let key = (*tree, dir.to_path_buf());
        if let Some(m) = self.memo.get(&key) {
            return Ok(m.clone());
        }
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(
                format!("tree {}", tree.short()),
                format!("nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let t = self.repo.load_tree(self.index, tree)?;
        self.entries += t.nodes.len() as u64;
        if self.entries > MAX_ENTRIES {
            return Err(Error::invalid(
                "find",
                format!("the snapshots searched hold more than {MAX_ENTRIES} entries: narrow them with --snapshot, --host, --tag or --path"),
            ));
        }
        let mut found = Vec::new();
        for n in &t.nodes {
            n.name.check_component()?;
            let p = dir.join(n.name.as_os_str());
            if self.glob.is_match(n.name.as_os_str()) || self.glob.is_match(&p) {
                found.push(Match::new(&p, n));
            }
            if let Some(sub) = &n.subtree {
                found.extend(self.walk(sub, &p, depth + 1)?.iter().cloned());
            }
        }
        let found = Rc::new(found);
        self.memo.insert(key, found.clone());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backup::{self, BackupOptions};
    use crate::progress::NoProgress;
    use crate::repo::testing::{make_tree, small_repo};

    #[test]
    fn shared_trees_are_walked_once_and_bad_patterns_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        make_tree(&dir.path().join("t"), &[("a.bin", 100, 1), ("d/b.bin", 100, 2), ("d/e/c.txt", 10, 3)]);
        let repo = small_repo(Arc::new(MemoryBackend::new()), b"find unit tests");
        let opts = BackupOptions { paths: vec![dir.path().join("t")], threads: Some(1), ..Default::default() };
        let out = backup::run(&repo, &opts, &NoProgress).unwrap();
        let index = repo.load_index().unwrap();
        let mut f = Finder::new(&repo, &index, "*.bin").unwrap();
        let one = f.search(vec![(out.id, out.snapshot.clone())]).unwrap();
        assert_eq!(one[0].matches.len(), 2);
        let (walked, read) = (f.memo.len(), f.entries);
        // The same tree under another snapshot id: answered from the memo.
        let two = f.search(vec![(out.id, out.snapshot.clone()), (FileId([7; 32]), out.snapshot)]).unwrap();
        assert_eq!((two.len(), two[1].matches.len()), (2, 2));
        assert_eq!((f.memo.len(), f.entries), (walked, read));

        let e = Finder::new(&repo, &index, "a[").err().unwrap().to_string();
        assert!(e.contains("find pattern") && e.contains("a["), "{e}");
    }
}
