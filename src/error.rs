//! Library errors, classified by meaning. `anyhow` lives only in `cli/`.

use std::path::PathBuf;

use crate::backend::BackendError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] BackendError),

    #[error("wrong passphrase for repository {repo}")]
    WrongPassphrase { repo: String },

    #[error("no repository at {repo}: run `kura init --repo {repo}` first")]
    NoRepository { repo: String },

    #[error("a repository already exists at {repo}")]
    AlreadyInitialized { repo: String },

    #[error("no snapshot matches {query:?}: list them with `kura snapshots`")]
    SnapshotNotFound { query: String },

    #[error("snapshot prefix {query:?} is ambiguous: it matches {}", .matches.join(", "))]
    AmbiguousSnapshot { query: String, matches: Vec<String> },

    #[error("path {path:?} not found in snapshot {snapshot}")]
    PathNotInSnapshot { snapshot: String, path: String },

    /// An object failed authentication or its content hash: it was damaged or tampered with.
    #[error("{object} is damaged: {reason}. Run `kura check --read-data` to see what it affects")]
    Corrupt { object: String, reason: String },

    /// A blob that a tree or snapshot needs is not in any indexed pack.
    #[error("blob {blob} is missing from the repository index. Run `kura check`")]
    MissingBlob { blob: String },

    #[error("unsafe path in snapshot: {0}")]
    UnsafePath(String),

    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// Another process holds what this operation needs; the message says which.
    #[error("{0}")]
    Busy(String),
    /// A command that records something met a state database it cannot write.
    #[error(
        "the state database {} cannot be written ({reason}): nothing was recorded. Run kura as the user that \
         owns it, give that user write access to the file and its directory, or choose another with --state",
        .path.display()
    )]
    ReadOnlyState { path: PathBuf, reason: String },

    /// The backup writer thread stopped; its own error says why.
    #[error("the repository writer stopped")]
    WriterStopped,

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt { object: object.into(), reason: reason.into() }
    }
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), reason: reason.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
