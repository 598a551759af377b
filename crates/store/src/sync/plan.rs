//! What to remove from a directory so that it holds only what a snapshot holds:
//! pure, from the restore plan's names and a listing of the directory.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::restore::RestorePlan;

/// What an entry is, as far as replacing it goes: a directory cannot be replaced by
/// a rename or a link, anything else can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Other,
}

/// One entry found under the directory: its path relative to it, and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskEntry {
    pub rel: PathBuf,
    pub kind: Kind,
}

/// The names a snapshot puts under the target, with their kinds, and the temp
/// names its files are written under (an interrupted update's temp files stay, to
/// be resumed).
#[derive(Default)]
pub struct Wanted {
    entries: HashMap<PathBuf, Kind>,
    temps: HashSet<PathBuf>,
}

impl Wanted {
    pub fn from_plan(plan: &RestorePlan) -> Wanted {
        let mut w = Wanted::default();
        for d in &plan.dirs {
            w.entries.insert(d.rel.clone(), Kind::Dir);
        }
        for f in &plan.files {
            w.entries.insert(f.rel.clone(), Kind::Other);
            let tmp: OsString = f.tmp.clone();
            w.temps.insert(f.rel.parent().unwrap_or(Path::new("")).join(tmp));
        }
        for l in &plan.symlinks {
            w.entries.insert(l.rel.clone(), Kind::Other);
        }
        for h in &plan.hardlinks {
            w.entries.insert(h.rel.clone(), Kind::Other);
        }
        w
    }
}

/// The entries to remove, parents before children and none inside a removed
/// directory: everything the snapshot does not hold, and every directory where the
/// snapshot has something else (or the reverse). `keep` are names at the top that
/// are not the snapshot's but stay (the standby's marker). `listing` comes from a
/// walk: each directory before its contents.
pub fn removals(wanted: &Wanted, listing: &[DiskEntry], keep: &[&str]) -> Vec<DiskEntry> {
    let mut out: Vec<DiskEntry> = Vec::new();
    let mut gone: Vec<&Path> = Vec::new();
    for e in listing {
        if gone.iter().any(|g| e.rel.starts_with(g)) {
            continue;
        }
        let top_kept = e.rel.parent() == Some(Path::new("")) && keep.iter().any(|k| e.rel.as_os_str() == *k);
        if top_kept || wanted.temps.contains(&e.rel) {
            continue;
        }
        let stays = match wanted.entries.get(&e.rel) {
            None => false,
            Some(k) => (*k == Kind::Dir) == (e.kind == Kind::Dir),
        };
        if !stays {
            out.push(e.clone());
            if e.kind == Kind::Dir {
                gone.push(&e.rel);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(rel: &str, kind: Kind) -> DiskEntry {
        DiskEntry { rel: PathBuf::from(rel), kind }
    }

    fn wanted(list: &[(&str, Kind)]) -> Wanted {
        let mut w = Wanted::default();
        for (p, k) in list {
            w.entries.insert(PathBuf::from(p), *k);
        }
        w.temps.insert(PathBuf::from("a/.kura-tmp-0123456789abcdef"));
        w
    }

    #[test]
    fn removes_what_the_snapshot_lacks_and_kind_changes_only() {
        let w = wanted(&[("a", Kind::Dir), ("a/f", Kind::Other), ("b", Kind::Other), ("c", Kind::Dir)]);
        let listing = vec![
            e(".kura-standby", Kind::Other),
            e("a", Kind::Dir),
            e("a/.kura-tmp-0123456789abcdef", Kind::Other),
            e("a/f", Kind::Other),
            e("a/old", Kind::Other),
            e("b", Kind::Dir),
            e("b/x", Kind::Other),
            e("b/y", Kind::Dir),
            e("c", Kind::Other),
            e("gone", Kind::Dir),
            e("gone/deep", Kind::Other),
        ];
        let r = removals(&w, &listing, &[".kura-standby"]);
        assert_eq!(r, vec![e("a/old", Kind::Other), e("b", Kind::Dir), e("c", Kind::Other), e("gone", Kind::Dir)]);
    }

    #[test]
    fn an_exact_copy_removes_nothing() {
        let w = wanted(&[("a", Kind::Dir), ("a/f", Kind::Other)]);
        let listing = vec![e("a", Kind::Dir), e("a/f", Kind::Other)];
        assert!(removals(&w, &listing, &[]).is_empty());
    }
}
