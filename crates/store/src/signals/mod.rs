//! Change and entropy signals of one backup, measured while it runs (no second pass
//! over the data) and stored, encrypted, in its snapshot (`Snapshot::signals`).
//!
//! * Per directory, the walk compares the new entries with the parent snapshot's
//!   tree it already holds: files added, modified (content differs), deleted, and
//!   renamed. A deleted file paired with an added one in the same directory is a
//!   rename: with the same content a plain one, with a name that only gained or
//!   swapped an extension (`a.doc` -> `a.doc.locked`) an extension change.
//! * The compression probe that decides whether a new blob is stored raw is the
//!   entropy measure: `bytes_incompressible` is the part of the new data the probe
//!   (or zstd) could not shrink.
//! * Names of new or changed files are matched against the indicator list
//!   (`names`): ransom notes and extensions encrypting malware appends.
//!
//! What is suspect is decided elsewhere (kura_recovery::detect), from a system's
//! own history: the store only measures.

pub mod names;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::repo::tree::{Node, NodeType, Tree};
use crate::types::BlobId;
use names::{NameHit, NamePatterns};

/// At most this many example paths are kept per kind of hit.
pub const MAX_EXAMPLES: usize = 10;

/// The signals of one snapshot, against its parent. Every count is of regular files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    /// Whether there was a parent to compare with (without one, every file is added).
    pub has_parent: bool,
    /// Files in the snapshot.
    pub files: u64,
    /// Files in the parent snapshot, under the same paths.
    pub parent_files: u64,
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    /// Renamed within their directory, content unchanged.
    pub renamed: u64,
    /// Renamed within their directory to a name that gained or changed an
    /// extension (counted apart from `renamed`, whatever the content).
    pub ext_changed: u64,
    /// Sizes of the added and modified files.
    pub bytes_changed: u64,
    /// Bytes of new data blobs (before compression): what this backup had to store.
    pub bytes_new: u64,
    /// Of `bytes_new`, what the compression probe found incompressible.
    pub bytes_incompressible: u64,
    /// New or modified files named like a ransom note.
    pub note_names: u64,
    /// New or modified files with an extension from the indicator list.
    pub suspicious_ext: u64,
    /// Some of the paths behind `note_names` and `suspicious_ext`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

impl Signals {
    /// Files that changed in any way, over the parent's file count (0 without a parent).
    pub fn change_rate(&self) -> f64 {
        if !self.has_parent {
            return 0.0;
        }
        let changed = self.added + self.modified + self.deleted + self.renamed + self.ext_changed;
        changed as f64 / self.parent_files.max(1) as f64
    }

    /// The incompressible share of the new data (0 when nothing new was stored).
    pub fn incompressible_share(&self) -> f64 {
        if self.bytes_new == 0 {
            return 0.0;
        }
        self.bytes_incompressible as f64 / self.bytes_new as f64
    }
}

/// What a backup accumulates, directory by directory.
pub struct Counter {
    patterns: std::sync::Arc<NamePatterns>,
    pub signals: Signals,
}

impl Counter {
    pub fn new(patterns: std::sync::Arc<NamePatterns>, has_parent: bool) -> Counter {
        Counter { patterns, signals: Signals { has_parent, ..Default::default() } }
    }

    /// One directory done: `dir` its path (for examples), `nodes` its new entries,
    /// `parent` the parent snapshot's tree for it. `deleted_files` counts the files
    /// of a subtree the directory lost (the caller loads trees; tree blobs only).
    pub fn dir_done(
        &mut self,
        dir: &str,
        nodes: &[Node],
        parent: Option<&Tree>,
        deleted_files: &mut dyn FnMut(&BlobId) -> u64,
    ) {
        let mut added: Vec<&Node> = Vec::new();
        for n in nodes.iter().filter(|n| n.node_type == NodeType::File) {
            let s = &mut self.signals;
            s.files += 1;
            let old = parent.and_then(|t| t.find(&n.name.0));
            match old {
                Some(o) if o.node_type == NodeType::File => {
                    s.parent_files += 1;
                    if o.content == n.content {
                        continue;
                    }
                    s.modified += 1;
                }
                _ => added.push(n),
            }
            s.bytes_changed += n.size;
            self.note_name(dir, n);
        }
        let Some(parent) = parent else {
            self.signals.added += added.len() as u64;
            return;
        };
        let now: HashMap<&[u8], NodeType> = nodes.iter().map(|n| (n.name.0.as_slice(), n.node_type)).collect();
        let mut gone: Vec<&Node> = Vec::new();
        for o in &parent.nodes {
            let kept = now.get(o.name.0.as_slice()).copied();
            match o.node_type {
                // A file that is a file still was counted above.
                NodeType::File if kept == Some(NodeType::File) => {}
                NodeType::File => {
                    self.signals.parent_files += 1;
                    gone.push(o);
                }
                NodeType::Dir => {
                    if let (false, Some(id)) = (kept == Some(NodeType::Dir), &o.subtree) {
                        let n = deleted_files(id);
                        self.signals.parent_files += n;
                        self.signals.deleted += n;
                    }
                }
                _ => {}
            }
        }
        self.pair_renames(added, gone);
    }

    /// Pairs the files a directory lost with those it gained: extension changes
    /// first (by name), then plain renames (by content); the rest are added/deleted.
    fn pair_renames(&mut self, added: Vec<&Node>, gone: Vec<&Node>) {
        let s = &mut self.signals;
        let mut gone_names: HashMap<&[u8], usize> = HashMap::new();
        let mut gone_stems: HashMap<&[u8], usize> = HashMap::new();
        for (i, g) in gone.iter().enumerate() {
            gone_names.insert(&g.name.0, i);
            gone_stems.entry(names::stem(&g.name.0)).or_insert(i);
        }
        let mut taken = vec![false; gone.len()];
        let mut rest: Vec<&Node> = Vec::new();
        for a in added {
            let name = &a.name.0;
            let by_name = gone_names
                .get(names::stem(name))
                .or_else(|| names::extension(name).and(gone_stems.get(names::stem(name))))
                .copied()
                .filter(|&i| !taken[i] && gone[i].name.0 != *name);
            match by_name {
                Some(i) => {
                    taken[i] = true;
                    s.ext_changed += 1;
                }
                None => rest.push(a),
            }
        }
        let mut by_content: HashMap<&[BlobId], Vec<usize>> = HashMap::new();
        for (i, g) in gone.iter().enumerate().filter(|(i, g)| !taken[*i] && !g.content.is_empty()) {
            by_content.entry(g.content.as_slice()).or_default().push(i);
        }
        for a in rest {
            match by_content.get_mut(a.content.as_slice()).and_then(|v| v.pop()) {
                Some(i) => {
                    taken[i] = true;
                    s.renamed += 1;
                }
                None => s.added += 1,
            }
        }
        s.deleted += taken.iter().filter(|t| !**t).count() as u64;
    }

    fn note_name(&mut self, dir: &str, n: &Node) {
        let hit = self.patterns.classify(&n.name.0);
        let s = &mut self.signals;
        match hit {
            Some(NameHit::Note) => s.note_names += 1,
            Some(NameHit::Extension) => s.suspicious_ext += 1,
            None => return,
        }
        if s.examples.len() < MAX_EXAMPLES {
            let sep = if dir.ends_with('/') { "" } else { "/" };
            s.examples.push(format!("{dir}{sep}{}", n.name.lossy()));
        }
    }

    /// The new data's figures, from the blob saver.
    pub fn finish(mut self, bytes_new: u64, bytes_incompressible: u64) -> Signals {
        self.signals.bytes_new = bytes_new;
        self.signals.bytes_incompressible = bytes_incompressible;
        self.signals
    }
}

#[cfg(test)]
mod tests;
