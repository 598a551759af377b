//! The recovery side's errors. A store error keeps its own type and message
//! (`Store`); what only recovery can get wrong has variants of its own.

use std::path::PathBuf;

use kura_store::backend::BackendError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository or one of its operations failed.
    #[error(transparent)]
    Store(#[from] kura_store::Error),

    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// A recovery refused at the gate (the message says why and what to do).
    #[error(transparent)]
    Gate(#[from] crate::orchestrate::gate::GateError),

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

    /// Another process held the state database's write lock longer than kura waits.
    #[error(
        "invalid state database {}: {cause}: another kura process kept its write lock (kura waited up to \
         {waited_secs} s); see what runs with `fuser {}` and retry",
        .path.display(),
        .path.display()
    )]
    StateBusy { path: PathBuf, waited_secs: u64, cause: rusqlite::Error },

    /// Any other failure of the state database (SQLite's own message follows).
    #[error("invalid state database {}: {cause}", .path.display())]
    State { path: PathBuf, cause: rusqlite::Error },

    /// A stored value the code does not know. The state database is an audit
    /// trail, so such a row is never read as some default: the error names the
    /// table, the row and the column so that it can be found and repaired.
    #[error("state database: {table} row {row}: {column} {problem}")]
    StateValue { table: &'static str, row: i64, column: &'static str, problem: String },

    /// The cause is part of the message and deliberately not a `#[source]` (see the
    /// store's `Error::Io`).
    #[error("{}: {cause}", .path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Error::Store(e.into())
    }
}

impl Error {
    pub fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Store(kura_store::Error::corrupt(object, reason))
    }
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), reason: reason.into() }
    }
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause }
    }
}
