//! Holding a snapshot under object lock (docs/DETECTION.md): the retention of the
//! snapshot object and of every pack holding its trees and file data is extended
//! to at least `now` + the store's lock period. Called again while the hold
//! stands, it keeps the data locked; once nobody calls it, retention lapses.
//! Index files are not extended: they can be rebuilt from the packs, and prune
//! keeps every pack still under retention listed.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use crate::backend::Kind;
use crate::error::{Error, Result};
use crate::repo::tree::Tree;
use crate::repo::Repository;
use crate::types::{FileId, PackId};

/// What an extension did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Extended {
    /// The snapshot object and its packs.
    pub objects: usize,
    pub until: DateTime<Utc>,
}

/// The packs a snapshot's trees and file contents live in.
pub fn packs_of(repo: &Repository, tree: crate::types::BlobId) -> Result<BTreeSet<PackId>> {
    let index = repo.load_index()?;
    let mut packs = BTreeSet::new();
    let mut seen = HashSet::new();
    let mut stack = vec![tree];
    let missing = |what: String| Error::MissingBlob { blob: what };
    while let Some(tid) = stack.pop() {
        if !seen.insert(tid) {
            continue;
        }
        let loc = index.get(&tid).ok_or_else(|| missing(format!("tree {tid}")))?;
        packs.insert(loc.pack);
        let t = Tree::decode(&repo.read_blob(&tid, &loc)?, &tid)?;
        for n in &t.nodes {
            for b in &n.content {
                packs.insert(index.get(b).ok_or_else(|| missing(format!("data {b}")))?.pack);
            }
            stack.extend(n.subtree);
        }
    }
    Ok(packs)
}

/// Extends the retention of snapshot `id` and of the packs it needs to at least
/// `now` + the lock period. `None` where the store has no object lock.
pub fn extend_snapshot(repo: &Repository, id: &FileId, now: DateTime<Utc>) -> Result<Option<Extended>> {
    let Some(period) = repo.backend().lock_period() else { return Ok(None) };
    let until = now + period;
    let (_, snap) = repo.find_snapshot(&id.to_hex())?;
    let packs = packs_of(repo, snap.tree)?;
    let b = repo.backend();
    b.extend_retention(Kind::Snapshot, &id.to_hex(), until)?;
    for p in &packs {
        b.extend_retention(Kind::Pack, &p.to_hex(), until)?;
    }
    Ok(Some(Extended { objects: 1 + packs.len(), until }))
}
