//! `kura scan`: a snapshot's files checked against indicators of compromise (file
//! name globs; SHA-256 hashes and YARA rules on the content, one read for both).
//! Incremental: the verdict on a file's content is remembered per indicator set,
//! keyed by a digest of its blob ids, so a file whose content was already scanned
//! with the same set is not read again.
//! Results are stored per snapshot (state database, `scan_results`).

use std::collections::HashMap;

use super::indicators::{ContentCheck, ContentVerdict, Indicators};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use kura_store::repo::index::Index;
use kura_store::repo::snapshot::Snapshot;
use kura_store::repo::tree::{Node, NodeType, MAX_DEPTH};
use kura_store::repo::Repository;
use kura_store::types::{BlobId, FileId};
use serde::{Deserialize, Serialize};

/// Snapshot id (hex) -> when it was last scanned, and what that scan found.
pub type ScanIndex = HashMap<String, (DateTime<Utc>, Vec<Hit>)>;

/// One file that matched an indicator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub path: String,
    /// `hash`, `name` or `yara` (then `indicator` is the rule's name).
    pub by: String,
    pub indicator: String,
}

/// The result of scanning one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotScan {
    pub snapshot: String,
    pub time: DateTime<Utc>,
    pub rules: String,
    pub files: u64,
    /// Files whose content was read (not already known for this indicator set).
    pub files_read: u64,
    pub bytes_read: u64,
    pub hits: Vec<Hit>,
}

impl SnapshotScan {
    pub fn infected(&self) -> bool {
        !self.hits.is_empty()
    }
}

/// What is remembered about content already scanned: `None` clean, else the
/// verdict as [`Indicators::encode_verdict`] wrote it.
pub trait ContentMemory {
    fn recall(&self, rules: &str, content: &str) -> Result<Option<Option<String>>>;
    fn remember(&mut self, rules: &str, found: &[(String, Option<String>)]) -> Result<()>;
}

/// A file's content identity: a digest of its blob ids (themselves keyed hashes, so
/// nothing about the content can be learned from it).
pub fn content_key(content: &[BlobId]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"kura scan content v1\0");
    for id in content {
        h.update(&id.0);
    }
    h.finalize().to_hex()[..32].to_string()
}

struct Scanner<'a> {
    repo: &'a Repository,
    index: &'a Index,
    ind: &'a Indicators,
    check: ContentCheck<'a>,
    memory: &'a dyn ContentMemory,
    /// Decided in this run, not yet remembered.
    fresh: HashMap<String, ContentVerdict>,
    out: SnapshotScan,
}

/// Scans one snapshot; new content verdicts are remembered in one write at the end.
pub fn scan_snapshot(
    repo: &Repository,
    index: &Index,
    (id, snap): &(FileId, Snapshot),
    ind: &Indicators,
    memory: &mut dyn ContentMemory,
) -> Result<SnapshotScan> {
    let out = SnapshotScan {
        snapshot: id.to_hex(),
        time: snap.time,
        rules: ind.digest.clone(),
        files: 0,
        files_read: 0,
        bytes_read: 0,
        hits: Vec::new(),
    };
    let check = ind.content_check();
    let mut s = Scanner { repo, index, ind, check, memory: &*memory, fresh: HashMap::new(), out };
    s.tree(&snap.tree, "", 0)?;
    let Scanner { fresh, out, .. } = s;
    let found: Vec<(String, Option<String>)> = fresh.into_iter().map(|(k, v)| (k, ind.encode_verdict(&v))).collect();
    memory.remember(&ind.digest, &found)?;
    Ok(out)
}

impl Scanner<'_> {
    fn tree(&mut self, id: &BlobId, dir: &str, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                format!("tree {}", id.short()),
                format!("nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let t = self.repo.load_tree(self.index, id)?;
        for n in &t.nodes {
            let path = format!("{dir}/{}", n.name.lossy());
            match (n.node_type, &n.subtree) {
                (NodeType::Dir, Some(sub)) => self.tree(sub, &path, depth + 1)?,
                (NodeType::File, _) => self.file(n, path)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, n: &Node, path: String) -> Result<()> {
        self.out.files += 1;
        if let Some(label) = self.ind.name_hit(&n.name.0) {
            self.out.hits.push(Hit { path: path.clone(), by: "name".into(), indicator: label.to_string() });
        }
        if !self.ind.needs_content() {
            return Ok(());
        }
        let key = content_key(&n.content);
        let known = match self.fresh.get(&key) {
            Some(k) => Some(k.clone()),
            None => match self.memory.recall(&self.ind.digest, &key)? {
                Some(stored) => Some(self.ind.decode_verdict(stored)?),
                None => None,
            },
        };
        let verdict = match known {
            Some(v) => v,
            None => {
                let bytes = kura_store::dump::file(self.repo, self.index, n, &mut self.check)?;
                self.out.files_read += 1;
                self.out.bytes_read += bytes;
                let v = self.check.finish(&path)?;
                self.fresh.insert(key, v.clone());
                v
            }
        };
        for (by, indicator) in verdict {
            self.out.hits.push(Hit { path: path.clone(), by, indicator });
        }
        Ok(())
    }
}

/// Scans a restored directory (files on disk) before the system is promoted: every
/// regular file's name, and its content when the set has hash or YARA indicators.
/// Paths are relative to `dir`. Symlinks are not followed.
pub fn scan_dir(dir: &std::path::Path, ind: &Indicators) -> Result<Vec<Hit>> {
    use std::os::unix::ffi::OsStrExt;
    let mut hits = Vec::new();
    let mut check = ind.content_check();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(&d, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let ft = e.file_type().map_err(|err| Error::io(&p, err))?;
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            if let Some(label) = ind.name_hit(e.file_name().as_bytes()) {
                hits.push(Hit { path: rel.clone(), by: "name".into(), indicator: label.to_string() });
            }
            if ind.needs_content() {
                let mut f = std::fs::File::open(&p).map_err(|err| Error::io(&p, err))?;
                std::io::copy(&mut f, &mut check).map_err(|err| Error::io(&p, err))?;
                for (by, indicator) in check.finish(&rel)? {
                    hits.push(Hit { path: rel.clone(), by, indicator });
                }
            }
        }
    }
    Ok(hits)
}
