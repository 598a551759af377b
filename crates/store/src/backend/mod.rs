//! Storage backends: where the repository's objects live.
//!
//! The contract every implementation keeps is stated on [`Backend`]; each clause is
//! a named check in [`contract`], run on memory, local, the fault wrapper and S3.
//!
//! The trait is synchronous: the backup and restore pipelines call it from their
//! own worker threads (see docs/ARCHITECTURE.md for why).

#[doc(hidden)]
pub mod contract;
pub mod fault;
pub mod local;
pub mod location;
pub mod memory;
pub mod s3;

use std::fmt;
use std::sync::Arc;

pub use location::{Location, LocationError};

/// The kinds of object in a repository; each maps to a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
    /// Records of packs that prune has marked and a later prune deletes.
    Pending,
    /// Damaged or stray objects moved aside by `kura repair`, named
    /// `<folder>/<name>` after where they were found (`snapshots/README`).
    /// Never read by any command.
    Quarantine,
    /// Incident timeline anchors: the entry count and head MAC of one incident's chain.
    Anchor,
    /// Versions of the coordinator's state database, pushed to the remote site
    /// (kura_recovery's `state::offsite`). No other command reads them.
    Coordinator,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Key => "keys",
            Kind::Pack => "data",
            Kind::Index => "index",
            Kind::Snapshot => "snapshots",
            Kind::Lock => "locks",
            Kind::Pending => "pending",
            Kind::Quarantine => "quarantine",
            Kind::Anchor => "anchors",
            Kind::Coordinator => "coordinator",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Config => "config",
            Kind::Key => "key",
            Kind::Pack => "pack",
            Kind::Index => "index",
            Kind::Snapshot => "snapshot",
            Kind::Lock => "lock",
            Kind::Pending => "pending-deletion record",
            Kind::Quarantine => "quarantined object",
            Kind::Anchor => "incident anchor",
            Kind::Coordinator => "coordinator state copy",
        })
    }
}

/// Errors by meaning, so callers can decide to retry, ignore or stop.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{object} not found")]
    NotFound { object: String },
    #[error("{object} already exists")]
    AlreadyExists { object: String },
    #[error("temporary failure on {object}: {reason} (retrying later may succeed)")]
    Transient { object: String, reason: String },
    #[error("{object}: {reason}")]
    Permanent { object: String, reason: String },
}

impl BackendError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}

pub type BResult<T> = std::result::Result<T, BackendError>;

/// Where a repository's objects are stored.
///
/// The contract, one clause per check in [`contract`] (named in brackets):
/// * `put` is atomic and durable: after it returns, a reader sees either nothing or
///   the whole object, also after a crash; `get` returns exactly what was put
///   (`put_get_roundtrip`). `list` shows complete objects only, never half-written
///   temp files.
/// * Putting the same name twice is harmless (`put_same_name_is_harmless`): packs,
///   indexes and snapshots are named by their content hash, so a retried upload
///   writes the same bytes. Writers rely on it when a put failed after it landed.
/// * A missing object is `NotFound` for `get`, `get_range` and `delete`, and `exists`
///   is false (`missing_objects_are_not_found`). Callers that do not care ignore it.
/// * `get_range` returns exactly `len` bytes; an object shorter than the range is a
///   `Permanent` error saying so, never a short read; a zero-length range at the end
///   is empty (`get_range_exact_and_short_reads`).
/// * `list` names every object of one kind with its size, sorted by name
///   (`list_reports_names_and_sizes`).
/// * Kinds are separate folders: one name in two kinds is two objects
///   (`kinds_are_separate`).
/// * `Kind::Config` is one object whatever name is passed, for every call, listed
///   as `config` (`config_has_one_name`).
/// * `create` refuses a place holding a config with `AlreadyExists`
///   (`create_refuses_an_existing_repository`).
/// * After `delete`, the object is gone for every call and nothing else is touched
///   (`delete_then_not_found`).
/// * `retained_until` is `None` unless the store has object-lock retention
///   (`no_retention_without_object_lock`).
///
/// Errors are by meaning (`BackendError`), mapped in one place per implementation.
pub trait Backend: Send + Sync {
    /// Human-readable location, for messages ("/srv/kura", "s3:...").
    fn location(&self) -> String;
    /// Creates the empty layout. Fails with `AlreadyExists` if a config is present.
    fn create(&self) -> BResult<()>;
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()>;
    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>>;
    /// Reads `len` bytes at `offset`. Short objects are an error, not a short read.
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>>;
    /// Like `get_range`, into `buf` (replaced): a reader of many ranges (restore)
    /// keeps one buffer's memory instead of fresh pages for every range.
    fn get_range_into(&self, kind: Kind, name: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> BResult<()> {
        *buf = self.get_range(kind, name, offset, len)?;
        Ok(())
    }
    /// Names and sizes of every complete object of a kind.
    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>>;
    fn delete(&self, kind: Kind, name: &str) -> BResult<()>;
    /// Removes leftovers of interrupted writes (temp files older than an hour, which
    /// no running writer still owns). Called by maintenance (prune). Best effort.
    /// Returns how many it removed.
    fn cleanup(&self) -> usize {
        0
    }
    /// Temp files of interrupted writes that `cleanup` would remove, as (name, size).
    fn stale_temp_files(&self) -> BResult<Vec<(String, u64)>> {
        Ok(Vec::new())
    }
    /// The name of something already stored at the location, if anything is: `init`
    /// refuses a place that is not empty.
    fn first_entry(&self) -> BResult<Option<String>> {
        for kind in [Kind::Key, Kind::Snapshot, Kind::Index, Kind::Pack, Kind::Lock, Kind::Pending] {
            if let Some((name, _)) = self.list(kind)?.into_iter().next() {
                return Ok(Some(object_name(kind, &name)));
            }
        }
        Ok(None)
    }
    fn exists(&self, kind: Kind, name: &str) -> BResult<bool> {
        match self.get_range(kind, name, 0, 0) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// Moves a damaged or stray object to `quarantine/<folder>/<name>`, where no
    /// command reads it, and returns that new name. Stores that can rename do so;
    /// the default copies and then deletes.
    fn quarantine(&self, kind: Kind, name: &str) -> BResult<String> {
        let to = quarantine_name(kind, name);
        let data = self.get(kind, name)?;
        self.put(Kind::Quarantine, &to, &data)?;
        self.delete(kind, name)?;
        Ok(to)
    }
    /// Until when an object is protected by object-lock retention (S3), if that date is
    /// still ahead. Such an object cannot be deleted or overwritten; maintenance keeps it
    /// and everything that references it. Stores without retention say `None`.
    fn retained_until(&self, _kind: Kind, _name: &str) -> BResult<Option<chrono::DateTime<chrono::Utc>>> {
        Ok(None)
    }
    /// The object-lock period new objects get (S3 `object_lock_days`), if the store
    /// has one.
    fn lock_period(&self) -> Option<chrono::Duration> {
        None
    }
    /// Extends an object's object-lock retention to at least `until` (never
    /// shortens it). Returns the retention date now in force, or `None` where the
    /// store sets no retention.
    fn extend_retention(
        &self,
        _kind: Kind,
        _name: &str,
        _until: chrono::DateTime<chrono::Utc>,
    ) -> BResult<Option<chrono::DateTime<chrono::Utc>>> {
        Ok(None)
    }
}

/// Opens a repository location given as text (see [`Location::parse`]).
pub fn open(location: &str) -> crate::error::Result<Arc<dyn Backend>> {
    open_location(&Location::parse(location)?)
}

/// Opens a repository location: S3 (see `s3::settings`) or a local directory.
pub fn open_location(location: &Location) -> crate::error::Result<Arc<dyn Backend>> {
    let dir = match location {
        Location::S3(spec) => return Ok(Arc::new(s3::S3Backend::open(spec)?)),
        Location::Local(dir) => dir,
    };
    if dir.metadata().is_ok_and(|m| !m.is_dir()) {
        return Err(crate::error::Error::NotADirectory { repo: dir.display().to_string() });
    }
    local::warn_if_loose(dir);
    Ok(Arc::new(local::LocalBackend::new(dir)))
}

/// A pack's path under `data/`: `<first two digits>/<name>`. A listed name that
/// already holds its folder (a stray file, see `pack_list_name`) is used as is.
pub fn pack_path(name: &str) -> String {
    if name.contains('/') {
        return name.to_string();
    }
    format!("{}/{name}", name.get(..2).unwrap_or(name))
}

/// The name `list(Kind::Pack)` gives a file found in `data/<folder>/`: its own name
/// when the folder is the one its name implies, else `<folder>/<file>`, so that a
/// stray file can still be read, quarantined or deleted by that name.
pub fn pack_list_name(folder: &str, file: &str) -> String {
    if file.get(..2) == Some(folder) {
        file.to_string()
    } else {
        format!("{folder}/{file}")
    }
}

/// Where `Backend::quarantine` puts an object: `<folder>/<name>` under `quarantine/`.
pub fn quarantine_name(kind: Kind, name: &str) -> String {
    let dir = if kind == Kind::Config { "config" } else { kind.dir() };
    format!("{dir}/{name}")
}

/// The object's display name in errors: "pack 3fa2...".
pub fn object_name(kind: Kind, name: &str) -> String {
    if kind == Kind::Config {
        "repository config".into()
    } else {
        format!("{kind} {name}")
    }
}
