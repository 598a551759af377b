//! Storage backends: where the repository's objects live.
//!
//! The contract every implementation keeps (checked by the shared tests in
//! `tests/it/backend.rs` and the unit tests below):
//! * `put` is atomic and durable: after it returns, a reader sees either nothing or
//!   the whole object, also after a crash. Putting the same content-addressed name
//!   twice is harmless (packs, indexes, snapshots are named by their content hash).
//! * `get` of an object that does not exist is `BackendError::NotFound`.
//! * `list` returns complete objects only, never half-written temp files.
//! * `delete` of a missing object is `NotFound`; callers that do not care ignore it.
//!
//! The trait is synchronous: the backup and restore pipelines call it from their
//! own worker threads (see docs/ARCHITECTURE.md for why).

pub mod fault;
pub mod local;
pub mod memory;
pub mod s3;

use std::fmt;
use std::sync::Arc;

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
    /// Incident timeline anchors: the entry count and head MAC of one incident's chain.
    Anchor,
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
            Kind::Anchor => "anchors",
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
            Kind::Anchor => "incident anchor",
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
pub trait Backend: Send + Sync {
    /// Human-readable location, for messages ("/srv/kura", "s3:...").
    fn location(&self) -> String;
    /// Creates the empty layout. Fails with `AlreadyExists` if a config is present.
    fn create(&self) -> BResult<()>;
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()>;
    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>>;
    /// Reads `len` bytes at `offset`. Short objects are an error, not a short read.
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>>;
    /// Names and sizes of every complete object of a kind.
    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>>;
    fn delete(&self, kind: Kind, name: &str) -> BResult<()>;
    /// Removes leftovers of interrupted writes (temp files older than an hour, which
    /// no running writer still owns). Called by maintenance (prune). Best effort.
    fn cleanup(&self) {}
    fn exists(&self, kind: Kind, name: &str) -> BResult<bool> {
        match self.get_range(kind, name, 0, 0) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// Until when an object is protected by object-lock retention (S3), if that date is
    /// still ahead. Such an object cannot be deleted or overwritten; maintenance keeps it
    /// and everything that references it. Stores without retention say `None`.
    fn retained_until(&self, _kind: Kind, _name: &str) -> BResult<Option<chrono::DateTime<chrono::Utc>>> {
        Ok(None)
    }
}

/// Opens a repository location: `s3:...` (see `s3::settings`) or a local directory.
pub fn open(location: &str) -> crate::error::Result<Arc<dyn Backend>> {
    if location.starts_with("s3:") {
        return Ok(Arc::new(s3::S3Backend::open(location)?));
    }
    if location.is_empty() {
        return Err(crate::error::Error::invalid("repository location", "it is empty"));
    }
    Ok(Arc::new(local::LocalBackend::new(location)))
}

/// The object's display name in errors: "pack 3fa2...".
pub fn object_name(kind: Kind, name: &str) -> String {
    if kind == Kind::Config {
        "repository config".into()
    } else {
        format!("{kind} {name}")
    }
}
