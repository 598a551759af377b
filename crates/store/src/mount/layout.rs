//! The directories `kura mount` shows above the snapshots' own trees. Pure: built
//! from the list of snapshots once, when the mount starts.
//!
//! ```text
//! ids/<short id>/                  each snapshot by its id (8 hex digits; longer
//!                                  when two snapshots share the first 8)
//! snapshots/<time>/ + latest       every snapshot by its time
//! hosts/<host>/<time>/ + latest    the snapshots of each host
//! tags/<tag>/<time>/ + latest      the snapshots carrying each tag
//! ```
//!
//! `<time>` is the snapshot's UTC time to the second, `2026-12-06T01:02:03Z`. When
//! two snapshots of one directory share a second, each of them is named
//! `<time>-<short id>`, so that no name depends on which one was listed first.
//! `latest` is a relative symlink to the newest entry of its directory.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::repo::snapshot::Snapshot;
use crate::types::FileId;

/// One entry of a layout directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Another layout directory, by its index in [`Layout::dirs`].
    Dir(usize),
    /// The root tree of a snapshot, by its index in the list the layout was built from.
    Snapshot(usize),
    /// A symlink with this target.
    Link(String),
}

/// A layout directory: its entries by name, and the time it shows.
#[derive(Clone, Debug)]
pub struct Dir {
    pub entries: BTreeMap<String, Entry>,
    pub mtime: DateTime<Utc>,
}

/// Every layout directory; `dirs[0]` is the mount's root.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dirs: Vec<Dir>,
}

/// How a snapshot time is written as a directory name.
pub fn time_name(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A host name or tag as one file name: `/` and NUL become `_`, and a name that is
/// empty, `.` or `..` gets a `_` in front.
pub fn safe_name(s: &str) -> String {
    let n: String = s.chars().map(|c| if c == '/' || c == '\0' { '_' } else { c }).collect();
    if n.is_empty() || n == "." || n == ".." {
        format!("_{n}")
    } else {
        n
    }
}

impl Layout {
    /// The layout of `snaps`, which are sorted oldest first (as
    /// `Repository::snapshots` returns them).
    pub fn build(snaps: &[(FileId, Snapshot)]) -> Layout {
        let newest = snaps.iter().map(|(_, s)| s.time).max().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let mut l = Layout { dirs: vec![Dir { entries: BTreeMap::new(), mtime: newest }] };
        let ids = id_names(snaps);
        let by_id = l.add_dir(newest);
        for (i, name) in ids.iter().enumerate() {
            l.dirs[by_id].entries.insert(name.clone(), Entry::Snapshot(i));
        }
        let all: Vec<usize> = (0..snaps.len()).collect();
        let by_time = l.timeline(snaps, &all);
        let hosts = l.grouped(snaps, |s| vec![s.host.clone()]);
        let tags = l.grouped(snaps, |s| s.tags.clone());
        for (name, d) in [("ids", by_id), ("snapshots", by_time), ("hosts", hosts), ("tags", tags)] {
            l.dirs[0].entries.insert(name.into(), Entry::Dir(d));
        }
        l
    }

    fn add_dir(&mut self, mtime: DateTime<Utc>) -> usize {
        self.dirs.push(Dir { entries: BTreeMap::new(), mtime });
        self.dirs.len() - 1
    }

    /// A directory of the snapshots `members` by time, with `latest`.
    fn timeline(&mut self, snaps: &[(FileId, Snapshot)], members: &[usize]) -> usize {
        let mut count: HashMap<String, usize> = HashMap::new();
        for &i in members {
            *count.entry(time_name(&snaps[i].1.time)).or_default() += 1;
        }
        let newest = members.iter().map(|&i| snaps[i].1.time).max().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let d = self.add_dir(newest);
        let mut latest: Option<(DateTime<Utc>, FileId, String)> = None;
        for &i in members {
            let (id, s) = &snaps[i];
            let t = time_name(&s.time);
            let name = if count[&t] > 1 { format!("{t}-{}", id.short()) } else { t };
            self.dirs[d].entries.insert(name.clone(), Entry::Snapshot(i));
            if latest.as_ref().is_none_or(|(lt, lid, _)| (s.time, *id) > (*lt, *lid)) {
                latest = Some((s.time, *id, name));
            }
        }
        if let Some((_, _, name)) = latest {
            self.dirs[d].entries.insert("latest".into(), Entry::Link(name));
        }
        d
    }

    /// A directory with one timeline per key (`keys` gives a snapshot's keys).
    fn grouped(&mut self, snaps: &[(FileId, Snapshot)], keys: impl Fn(&Snapshot) -> Vec<String>) -> usize {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (_, s)) in snaps.iter().enumerate() {
            for k in keys(s) {
                let members = groups.entry(safe_name(&k)).or_default();
                if members.last() != Some(&i) {
                    members.push(i);
                }
            }
        }
        let newest = snaps.iter().map(|(_, s)| s.time).max().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let d = self.add_dir(newest);
        for (name, members) in groups {
            let t = self.timeline(snaps, &members);
            self.dirs[d].entries.insert(name, Entry::Dir(t));
        }
        d
    }

    /// The entry `name` of the layout directory `dir`.
    pub fn lookup(&self, dir: usize, name: &str) -> Option<&Entry> {
        self.dirs.get(dir)?.entries.get(name)
    }
}

/// Each snapshot's name under `ids/`: its short id, or its full id when another
/// snapshot has the same short id.
fn id_names(snaps: &[(FileId, Snapshot)]) -> Vec<String> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for (id, _) in snaps {
        *count.entry(id.short()).or_default() += 1;
    }
    snaps.iter().map(|(id, _)| if count[&id.short()] > 1 { id.to_hex() } else { id.short() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::BlobId;

    fn snap(id: u8, sec: i64, host: &str, tags: &[&str]) -> (FileId, Snapshot) {
        let mut fid = [0u8; 32];
        fid[0] = id;
        let s = Snapshot {
            time: DateTime::from_timestamp(sec, 0).unwrap(),
            host: host.into(),
            username: "u".into(),
            paths: vec!["/x".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            tree: BlobId([id; 32]),
            partial: false,
            summary: None,
            program_version: "t".into(),
            original: None,
            signals: None,
        };
        (FileId(fid), s)
    }

    /// The entry at a slash-separated path from the root.
    fn at(l: &Layout, path: &str) -> Option<Entry> {
        let mut e = Entry::Dir(0);
        for part in path.split('/') {
            let Entry::Dir(d) = e else { return None };
            e = l.lookup(d, part)?.clone();
        }
        Some(e)
    }

    #[test]
    fn names_by_id_time_host_and_tag_with_latest_links() {
        let snaps = vec![
            snap(1, 1_796_000_000, "web1", &["daily"]),
            snap(2, 1_796_000_060, "db/1", &["daily", "weekly"]),
            snap(3, 1_796_000_120, "web1", &[]),
        ];
        let l = Layout::build(&snaps);
        let root: Vec<_> = l.dirs[0].entries.keys().cloned().collect();
        assert_eq!(root, ["hosts", "ids", "snapshots", "tags"]);
        assert_eq!(at(&l, &format!("ids/{}", snaps[1].0.short())), Some(Entry::Snapshot(1)));
        let t0 = time_name(&snaps[0].1.time);
        assert_eq!(t0, "2026-11-30T00:53:20Z");
        assert_eq!(at(&l, &format!("snapshots/{t0}")), Some(Entry::Snapshot(0)));
        let t2 = time_name(&snaps[2].1.time);
        assert_eq!(at(&l, "snapshots/latest"), Some(Entry::Link(t2.clone())));
        assert_eq!(at(&l, "hosts/web1/latest"), Some(Entry::Link(t2)));
        // A slash in a host name cannot make a path.
        assert_eq!(at(&l, &format!("hosts/db_1/{}", time_name(&snaps[1].1.time))), Some(Entry::Snapshot(1)));
        assert_eq!(at(&l, "tags/weekly/latest"), Some(Entry::Link(time_name(&snaps[1].1.time))));
        let daily: Vec<_> = match at(&l, "tags/daily") {
            Some(Entry::Dir(d)) => l.dirs[d].entries.keys().cloned().collect(),
            e => panic!("{e:?}"),
        };
        assert_eq!(daily.len(), 3, "{daily:?}");
    }

    #[test]
    fn snapshots_of_the_same_second_are_named_with_their_ids() {
        let snaps = vec![snap(1, 1_796_000_000, "h", &[]), snap(2, 1_796_000_000, "h", &[])];
        let l = Layout::build(&snaps);
        let Some(Entry::Dir(d)) = at(&l, "snapshots") else { panic!() };
        let names: Vec<_> = l.dirs[d].entries.keys().cloned().collect();
        let t = time_name(&snaps[0].1.time);
        let (a, b) = (format!("{t}-{}", snaps[0].0.short()), format!("{t}-{}", snaps[1].0.short()));
        assert_eq!(names, [a, b.clone(), "latest".to_string()]);
        assert_eq!(at(&l, "snapshots/latest"), Some(Entry::Link(b)));
    }

    #[test]
    fn colliding_short_ids_use_full_ids_and_bad_names_are_made_safe() {
        let mut snaps = vec![snap(1, 1, "h", &[]), snap(1, 2, "h", &[])];
        snaps[1].0 .0[31] = 9;
        let l = Layout::build(&snaps);
        assert_eq!(at(&l, &format!("ids/{}", snaps[1].0.to_hex())), Some(Entry::Snapshot(1)));
        assert_eq!(safe_name(".."), "_..");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("a/b\0"), "a_b_");
        let empty = Layout::build(&[]);
        assert_eq!(at(&empty, "snapshots/latest"), None);
        assert_eq!(empty.dirs[0].entries.len(), 4);
    }
}
