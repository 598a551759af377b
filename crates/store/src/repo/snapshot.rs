//! Snapshots: the last thing a backup writes, naming the root tree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{BlobId, FileId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: DateTime<Utc>,
    pub host: String,
    #[serde(default)]
    pub username: String,
    /// Absolute paths as given to `kura backup`.
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<FileId>,
    /// Root tree: mirrors the absolute paths (`/home/a` is `home` -> `a`).
    pub tree: BlobId,
    /// True when some files could not be read; they are missing from the snapshot.
    #[serde(default)]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<BackupSummary>,
    pub program_version: String,
    /// Set by `kura repair snapshots`: the snapshot this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<FileId>,
    /// Change and entropy signals measured by the backup (absent in snapshots
    /// written before kura measured them, or with signals off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<crate::signals::Signals>,
}

/// Figures of the backup that wrote a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub files_skipped: u64,
    /// Bytes of file content read from disk.
    pub bytes_read: u64,
    /// Total size of the files in the snapshot.
    pub bytes_total: u64,
    /// Bytes written to the repository after dedup, compression and encryption.
    pub bytes_added: u64,
    pub blobs_added: u64,
    pub duration_ms: u64,
}

impl Snapshot {
    pub fn has_tag(&self, t: &str) -> bool {
        self.tags.iter().any(|x| x == t)
    }
}

/// Which snapshots a command considers (`--host`, `--tag`, `--path`): the one rule
/// shared by `snapshots`, `forget` and the daemon's retention, so that a filter means
/// the same whichever entry point is used. An empty filter matches every snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only snapshots of this host.
    pub host: Option<String>,
    /// Every one of these tags must be present.
    pub tags: Vec<String>,
    /// At least one of these tags must be present (empty: no condition). The daemon
    /// uses it to restrict retention to the `system:` tags of its config.
    pub any_tag: Vec<String>,
    /// Each of these paths must be one of the snapshot's paths, compared by
    /// [`same_path`]: `/srv/www/` and `/srv/www` are the same path.
    pub paths: Vec<String>,
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.host == h)
            && self.tags.iter().all(|t| s.has_tag(t))
            && (self.any_tag.is_empty() || self.any_tag.iter().any(|t| s.has_tag(t)))
            && self.paths.iter().all(|p| s.paths.iter().any(|sp| same_path(sp, p)))
    }

    /// Whether no condition is set (every snapshot matches).
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.tags.is_empty() && self.any_tag.is_empty() && self.paths.is_empty()
    }

    /// The filter as command-line options (` --host web1 --tag daily`), for messages
    /// that must say which filters found nothing; empty for an empty filter.
    pub fn describe(&self) -> String {
        fn arg(v: &str) -> String {
            let plain = !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:@,=+".contains(&b));
            if plain {
                v.to_string()
            } else {
                format!("'{}'", v.replace('\'', "'\\''"))
            }
        }
        let mut out = String::new();
        if let Some(h) = &self.host {
            out += &format!(" --host {}", arg(h));
        }
        for t in &self.tags {
            out += &format!(" --tag {}", arg(t));
        }
        for p in &self.paths {
            out += &format!(" --path {}", arg(p));
        }
        if !self.any_tag.is_empty() {
            out += &format!(" (any tag of {})", self.any_tag.join(", "));
        }
        out
    }

    /// Picks one snapshot among those this filter selects, by `latest` (the newest
    /// that matches), a full id or a unique id prefix. `list` must be sorted by time,
    /// oldest first. An id names a snapshot only if it matches the filter too, so a
    /// prefix is unique among the matching snapshots. The one rule behind every
    /// `SNAPSHOT` argument (restore, ls, diff, dump, find).
    pub fn pick<'a>(&self, list: &'a [(FileId, Snapshot)], query: &str) -> Result<&'a (FileId, Snapshot)> {
        let not_found = || Error::SnapshotNotFound { query: query.into(), filter: self.describe() };
        let mut candidates = list.iter().filter(|(_, s)| self.matches(s));
        if query == "latest" {
            return candidates.next_back().ok_or_else(not_found);
        }
        let q = query.to_ascii_lowercase();
        let matches: Vec<_> = candidates.filter(|(id, _)| id.to_hex().starts_with(&q)).collect();
        match matches.as_slice() {
            [one] if !q.is_empty() => Ok(one),
            [] | [_] => Err(not_found()),
            many => Err(Error::AmbiguousSnapshot {
                query: query.into(),
                matches: many.iter().map(|(id, _)| id.short()).collect(),
            }),
        }
    }

    /// The snapshots of `list` that match, in their order.
    pub fn select(&self, list: Vec<(FileId, Snapshot)>) -> Vec<(FileId, Snapshot)> {
        list.into_iter().filter(|(_, s)| self.matches(s)).collect()
    }
}

/// Whether two path lists name the same directories, in any order, by
/// [`same_path`]: a plan's `paths = ["/srv/www/"]` finds the snapshot of `/srv/www`.
pub fn same_paths(a: &[String], b: &[String]) -> bool {
    let covers = |x: &[String], y: &[String]| x.iter().all(|p| y.iter().any(|q| same_path(p, q)));
    covers(a, b) && covers(b, a)
}

/// Whether two snapshot paths name the same directory: trailing slashes do not
/// count, on either side, and `/` stays the root (it does not become empty).
pub fn same_path(a: &str, b: &str) -> bool {
    fn bare(p: &str) -> &str {
        let t = p.trim_end_matches('/');
        if t.is_empty() && p.starts_with('/') {
            "/"
        } else {
            t
        }
    }
    bare(a) == bare(b)
}

/// Picks one snapshot by `latest`, a full id or a unique prefix. `list` must be
/// sorted by time, oldest first. No filter: [`Filter::pick`] with one.
pub fn select<'a>(list: &'a [(FileId, Snapshot)], query: &str) -> Result<&'a (FileId, Snapshot)> {
    Filter::default().pick(list, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(sec: i64) -> Snapshot {
        Snapshot {
            time: DateTime::from_timestamp(sec, 0).unwrap(),
            host: "h".into(),
            username: "u".into(),
            paths: vec!["/x".into()],
            tags: vec![],
            parent: None,
            tree: BlobId([0; 32]),
            partial: false,
            summary: None,
            program_version: "t".into(),
            original: None,
            signals: None,
        }
    }

    #[test]
    fn select_by_prefix() {
        let mut a = [0u8; 32];
        a[0] = 0xab;
        a[1] = 0x10;
        let mut b = a;
        b[1] = 0x20;
        let list = vec![(FileId(a), snap(1)), (FileId(b), snap(2))];
        assert_eq!(select(&list, "latest").unwrap().0, FileId(b));
        assert_eq!(select(&list, "ab1").unwrap().0, FileId(a));
        assert!(matches!(select(&list, "ab"), Err(Error::AmbiguousSnapshot { .. })));
        assert!(matches!(select(&list, "cd"), Err(Error::SnapshotNotFound { .. })));
        assert!(matches!(select(&[], "latest"), Err(Error::SnapshotNotFound { .. })));
    }

    #[test]
    fn pick_latest_among_the_matching_snapshots() {
        let id = |n: u8| FileId([n; 32]);
        let mk = |sec, host: &str, tags: &[&str], path: &str| {
            let mut s = snap(sec);
            s.host = host.into();
            s.tags = tags.iter().map(|t| t.to_string()).collect();
            s.paths = vec![path.into()];
            s
        };
        let list = vec![
            (id(1), mk(1, "web1", &["daily"], "/srv")),
            (id(2), mk(2, "db1", &["daily"], "/var/lib")),
            (id(3), mk(3, "web1", &["hourly"], "/srv")),
            (id(4), mk(4, "db1", &["hourly", "daily"], "/etc")),
        ];
        let f = |host: Option<&str>, tags: &[&str], paths: &[&str]| Filter {
            host: host.map(str::to_string),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            paths: paths.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(f(None, &[], &[]).pick(&list, "latest").unwrap().0, id(4));
        assert_eq!(f(Some("web1"), &[], &[]).pick(&list, "latest").unwrap().0, id(3));
        assert_eq!(f(Some("web1"), &["daily"], &[]).pick(&list, "latest").unwrap().0, id(1));
        assert_eq!(f(None, &["daily"], &["/var/lib/"]).pick(&list, "latest").unwrap().0, id(2));
        assert_eq!(f(Some("db1"), &["hourly", "daily"], &[]).pick(&list, "latest").unwrap().0, id(4));
        // An id outside the filter is not found; the error names the filters.
        let none = f(Some("web1"), &["daily"], &["/etc"]);
        let e = none.pick(&list, "latest").unwrap_err();
        assert!(
            matches!(&e, Error::SnapshotNotFound { filter, .. } if filter == " --host web1 --tag daily --path /etc")
        );
        assert!(e.to_string().contains("with --host web1 --tag daily --path /etc"), "{e}");
        assert!(f(Some("web1"), &[], &[]).pick(&list, &id(2).to_hex()).is_err());
        assert_eq!(f(Some("db1"), &[], &[]).pick(&list, &id(2).to_hex()).unwrap().0, id(2));
        assert_eq!(f(Some("it's"), &[], &[]).describe(), " --host 'it'\\''s'");
    }

    #[test]
    fn filter_paths_ignore_trailing_slashes_on_both_sides() {
        let mut s = snap(1);
        s.paths = vec!["/srv/www/".into(), "/".into()];
        let by = |p: &str| Filter { paths: vec![p.into()], ..Default::default() }.matches(&s);
        assert!(by("/srv/www"));
        assert!(by("/srv/www/"));
        assert!(by("/srv/www//"));
        assert!(by("/"));
        assert!(!by("/srv"));
        assert!(!by("/srv/ww"));
    }

    #[test]
    fn path_lists_compare_as_sets_of_same_paths() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_paths(&v(&["/b/", "/a"]), &v(&["/a", "/b"])));
        assert!(!same_paths(&v(&["/a"]), &v(&["/a", "/b"])));
        assert!(!same_paths(&v(&["/a", "/b"]), &v(&["/a"])));
        assert!(same_paths(&v(&[]), &v(&[])));
    }

    #[test]
    fn filter_tags_all_and_any() {
        let mut s = snap(1);
        s.tags = vec!["a".into(), "b".into()];
        let all = |t: &[&str]| Filter { tags: t.iter().map(|x| x.to_string()).collect(), ..Default::default() };
        assert!(all(&["a", "b"]).matches(&s));
        assert!(!all(&["a", "c"]).matches(&s));
        let any = |t: &[&str]| Filter { any_tag: t.iter().map(|x| x.to_string()).collect(), ..Default::default() };
        assert!(any(&["c", "b"]).matches(&s));
        assert!(!any(&["c"]).matches(&s));
        assert!(Filter::default().matches(&s));
        let host = Filter { host: Some("other".into()), ..Default::default() };
        assert!(!host.matches(&s));
    }
}
