//! The local metadata cache of a remote repository: index files, snapshots and the
//! packs that hold trees, kept on local disk so that listing, finding, diffing and
//! planning a restore do not fetch them again, and fetched in bulk (whole tree
//! packs, in parallel) the first time.
//!
//! What is cached is what the repository stores: sealed, so the cache holds nothing
//! in the clear. Everything is checked on use: an index file or snapshot must hash
//! to its name (as when read from the backend), and every blob read from a cached
//! pack is authenticated when it is opened; a pack is hashed against its name when
//! it is stored. A cached object that fails is removed and read from the backend.
//!
//! Layout: `<root>/<repository id>/{index,snapshots,packs}/<object id>`, directories
//! 0700 and files 0600, and a `CACHEDIR.TAG` in the root so that backup tools skip it.
//! Objects the repository no longer lists are removed when it is next listed.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::backend::Kind;
use crate::error::{Error, Result};

const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file marks kura's cache directory: backup tools skip it.\n";

/// The cache of one repository (by its id) under a root directory.
pub struct Cache {
    dir: PathBuf,
}

/// Where caches live unless `--cache-dir` says otherwise: `$KURA_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kura`, else `~/.cache/kura`. `None` when there is no home.
pub fn default_root() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("KURA_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("kura")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("kura")))
}

/// The cache root an operation on `location` uses: none for a local directory (its
/// objects are local files already) or when `disabled`, else `configured` or the
/// default root. One rule for the command line and the daemon.
pub fn root_for(location: &crate::backend::Location, configured: Option<&Path>, disabled: bool) -> Option<PathBuf> {
    if disabled || location.is_local() {
        return None;
    }
    configured.map(Path::to_path_buf).or_else(default_root)
}

fn folder(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Index => Some("index"),
        Kind::Snapshot => Some("snapshots"),
        Kind::Pack => Some("packs"),
        _ => None,
    }
}

fn make_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| Error::io(path, e))
}

impl Cache {
    /// Opens (creating it) the cache of repository `id` under `root`.
    pub fn open(root: &Path, id: &str) -> Result<Cache> {
        if !super::is_object_id(id) {
            return Err(Error::invalid("repository id", format!("{id:?} cannot name a cache directory")));
        }
        make_dir(root)?;
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = write_new(&tag, TAG.as_bytes());
        }
        let dir = root.join(id);
        for f in ["index", "snapshots", "packs"] {
            make_dir(&dir.join(f))?;
        }
        Ok(Cache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of an object, for the kinds the cache keeps and names that are ids.
    fn path(&self, kind: Kind, name: &str) -> Option<PathBuf> {
        let f = folder(kind)?;
        super::is_object_id(name).then(|| self.dir.join(f).join(name))
    }

    /// A whole cached object, if it is there and hashes to its name.
    pub fn get(&self, kind: Kind, name: &str) -> Option<Vec<u8>> {
        let path = self.path(kind, name)?;
        let bytes = fs::read(&path).ok()?;
        if blake3::hash(&bytes).to_hex().as_str() == name {
            Some(bytes)
        } else {
            tracing::warn!("cached {} {name} does not match its name: removed, read from the repository", kind.dir());
            let _ = fs::remove_file(&path);
            None
        }
    }

    /// `len` bytes at `offset` of a cached object (a pack), if it is there.
    pub fn read_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let file = File::open(self.path(kind, name)?).ok()?;
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    pub fn has(&self, kind: Kind, name: &str) -> bool {
        self.path(kind, name).is_some_and(|p| p.is_file())
    }

    /// Stores an object that hashes to its name. Best effort: a cache that cannot be
    /// written only costs the next run a fetch.
    pub fn put(&self, kind: Kind, name: &str, bytes: &[u8]) {
        let Some(path) = self.path(kind, name) else { return };
        if blake3::hash(bytes).to_hex().as_str() != name {
            return;
        }
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", rand::random::<u64>()));
        let res = write_new(&tmp, bytes).and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            tracing::debug!("could not cache {} {name} in {}: {e}", kind.dir(), self.dir.display());
        }
    }

    pub fn remove(&self, kind: Kind, name: &str) {
        if let Some(p) = self.path(kind, name) {
            let _ = fs::remove_file(p);
        }
    }

    /// Removes every cached object of a kind that is not in `keep` (objects the
    /// repository no longer holds), and temp files older than an hour.
    pub fn retain(&self, kind: Kind, keep: &HashSet<String>) {
        let Some(f) = folder(kind) else { return };
        let Ok(entries) = fs::read_dir(self.dir.join(f)) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale_tmp = name.ends_with(".tmp")
                && e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 3600));
            if (super::is_object_id(&name) && !keep.contains(&name)) || stale_tmp {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Creates a file that did not exist, owner-only, with these bytes.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id_of(b: &[u8]) -> String {
        blake3::hash(b).to_hex().to_string()
    }

    #[test]
    fn objects_round_trip_owner_only_and_are_checked_on_use() {
        let tmp = tempfile::tempdir().unwrap();
        let repo_id = "ab".repeat(32);
        let c = Cache::open(tmp.path(), &repo_id).unwrap();
        let (data, name) = (b"sealed bytes".to_vec(), id_of(b"sealed bytes"));
        c.put(Kind::Index, &name, &data);
        assert_eq!(c.get(Kind::Index, &name).unwrap(), data);
        assert_eq!(c.read_range(Kind::Index, &name, 7, 5).unwrap(), b"bytes");
        let file = c.dir().join("index").join(&name);
        assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(c.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(tmp.path().join("CACHEDIR.TAG").is_file());

        // Damage in the cache is noticed, and the object dropped.
        fs::write(&file, b"sealed bytez").unwrap();
        assert!(c.get(Kind::Index, &name).is_none());
        assert!(!file.exists());

        // Content that does not match its name is never stored; nor are other kinds.
        c.put(Kind::Snapshot, &name, b"something else");
        assert!(!c.has(Kind::Snapshot, &name));
        c.put(Kind::Lock, &name, &data);
        assert!(c.get(Kind::Lock, &name).is_none());
        // Names that are not ids never reach the file system.
        assert!(c.get(Kind::Index, "../../etc/passwd").is_none());
    }

    #[test]
    fn retain_drops_what_the_repository_no_longer_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Cache::open(tmp.path(), &"cd".repeat(32)).unwrap();
        let (a, b) = (id_of(b"a"), id_of(b"b"));
        c.put(Kind::Snapshot, &a, b"a");
        c.put(Kind::Snapshot, &b, b"b");
        c.retain(Kind::Snapshot, &HashSet::from([a.clone()]));
        assert!(c.has(Kind::Snapshot, &a));
        assert!(!c.has(Kind::Snapshot, &b));
    }
}
