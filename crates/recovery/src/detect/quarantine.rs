//! Secure restore's quarantine (a plan's `on_scan_hit = "quarantine"`,
//! docs/DETECTION.md): the files of a restored system that matched an indicator
//! are moved out of its target into a directory beside it, owner-only, keeping
//! their relative paths, with a manifest of what hit each one. The system then
//! goes on (verify and post hooks) without them.
//!
//! Layout: `TARGET.quarantine/manifest.json` and `TARGET.quarantine/files/REL`.
//! Crash safety: the manifest is written (atomically) before any file moves, and a
//! resumed run restores the target again and moves again, merging into the same
//! directory, so a kill at any point leaves every hit file either in the target or
//! in the quarantine, and the manifest naming it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::scan::Hit;
use crate::error::{Error, Result};

/// What a system's quarantine holds, as the run records it (state database, with
/// the restore's verification) and the report and `recover status` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The quarantine directory.
    pub dir: String,
    /// Every hit of the files moved (a file may match several indicators).
    pub hits: Vec<Hit>,
}

impl Quarantined {
    /// The files moved, each once, in order.
    pub fn files(&self) -> Vec<&str> {
        group(&self.hits).into_keys().collect()
    }

    /// One line: "2 file(s) quarantined in DIR: a.txt (yara Ransom_note), ...".
    pub fn summary(&self) -> String {
        let files = self.files();
        let shown: Vec<String> = group(&self.hits)
            .iter()
            .take(5)
            .map(|(path, why)| {
                let why: Vec<String> = why.iter().map(|(by, ind)| format!("{by} {ind}")).collect();
                format!("{path} ({})", why.join(", "))
            })
            .collect();
        let more = if files.len() > 5 { format!(", and {} more", files.len() - 5) } else { String::new() };
        format!("{} file(s) quarantined in {}: {}{more}", files.len(), self.dir, shown.join(", "))
    }
}

/// The manifest file: which indicator hit each quarantined file, and when.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    target: String,
    /// By path relative to the target (and to `files/`).
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    moved_at: DateTime<Utc>,
    matched: Vec<Matched>,
}

/// One indicator a file matched: `by` is `hash`, `name` or `yara`.
#[derive(Debug, Serialize, Deserialize)]
struct Matched {
    by: String,
    indicator: String,
}

/// Where a target's quarantine lives: beside it, `TARGET.quarantine`.
pub fn dir_of(target: &Path) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "restore".into());
    name.push(".quarantine");
    target.with_file_name(name)
}

/// Hits grouped by file, in path order (pure).
fn group(hits: &[Hit]) -> BTreeMap<&str, Vec<(&str, &str)>> {
    let mut m: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for h in hits {
        let why = m.entry(h.path.as_str()).or_default();
        if !why.contains(&(h.by.as_str(), h.indicator.as_str())) {
            why.push((h.by.as_str(), h.indicator.as_str()));
        }
    }
    m
}

/// A hit's path is relative and stays inside the target (pure).
fn safe_rel(path: &str) -> Option<&Path> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then_some(p)
}

/// Moves every file with a hit (paths relative to `target`, as `scan::scan_dir`
/// gives them) into the quarantine beside `target`.
pub fn quarantine(target: &Path, hits: &[Hit], now: DateTime<Utc>) -> Result<Quarantined> {
    let grouped = group(hits);
    for path in grouped.keys() {
        safe_rel(path).ok_or_else(|| Error::invalid(format!("quarantine {path:?}"), "not a path inside the target"))?;
    }
    let dir = dir_of(target);
    let files_dir = dir.join("files");
    kura_store::private_file::create_dir(&files_dir)?;
    for d in [&dir, &files_dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(d, e))?;
    }
    // The manifest first: a kill while moving leaves it naming every file.
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Manifest = match std::fs::read(&manifest_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::invalid(manifest_path.display().to_string(), format!("does not parse ({e}); move it away"))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => return Err(Error::io(&manifest_path, e)),
    };
    manifest.target = target.display().to_string();
    for (path, why) in &grouped {
        let matched = why.iter().map(|(b, i)| Matched { by: b.to_string(), indicator: i.to_string() }).collect();
        manifest.files.insert(path.to_string(), Entry { moved_at: now, matched });
    }
    let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    kura_store::private_file::write(&manifest_path, &json)?;
    for rel in grouped.keys().filter_map(|p| safe_rel(p)) {
        move_file(&target.join(rel), &files_dir.join(rel))?;
    }
    Ok(Quarantined { dir: dir.display().to_string(), hits: hits.to_vec() })
}

/// Moves one file (a rename; a copy and delete across file systems), leaving it 0600
/// in 0700 directories.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        kura_store::private_file::create_dir(parent)?;
    }
    // Restrict it before it moves, so it is never readable by others in the quarantine.
    std::fs::set_permissions(from, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(from, e))?;
    if let Err(e) = std::fs::rename(from, to) {
        if e.raw_os_error() != Some(libc::EXDEV) {
            return Err(Error::io(from, e));
        }
        std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
        std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(|e| Error::io(to, e))?;
        std::fs::remove_file(from).map_err(|e| Error::io(from, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn hit(path: &str, by: &str, ind: &str) -> Hit {
        Hit { path: path.into(), by: by.into(), indicator: ind.into() }
    }

    #[test]
    fn moves_hits_beside_the_target_owner_only() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("web");
        std::fs::create_dir_all(target.join("a/b")).unwrap();
        std::fs::write(target.join("a/b/note.txt"), b"pay up").unwrap();
        std::fs::write(target.join("keep.txt"), b"fine").unwrap();
        let hits = vec![hit("a/b/note.txt", "name", "note"), hit("a/b/note.txt", "yara", "Ransom")];
        let q = quarantine(&target, &hits, Utc::now()).unwrap();
        assert_eq!(q.files(), vec!["a/b/note.txt"]);
        assert!(q.summary().contains("a/b/note.txt (name note, yara Ransom)"), "{}", q.summary());
        let dir = t.path().join("web.quarantine");
        assert!(!target.join("a/b/note.txt").exists());
        assert!(target.join("keep.txt").exists());
        let moved = dir.join("files/a/b/note.txt");
        assert_eq!(std::fs::read(&moved).unwrap(), b"pay up");
        assert_eq!(std::fs::metadata(&moved).unwrap().mode() & 0o777, 0o600);
        for d in [&dir, &dir.join("files/a"), &dir.join("files/a/b")] {
            assert_eq!(std::fs::metadata(d).unwrap().mode() & 0o777, 0o700, "{}", d.display());
        }
        let m: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(m.files["a/b/note.txt"].matched.len(), 2);
        // A path leaving the target is refused.
        assert!(quarantine(&target, &[hit("../x", "name", "n")], Utc::now()).is_err());
    }
}
