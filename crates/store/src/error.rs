//! The store's errors, classified by meaning. `anyhow` lives only in the binary's `cli/`.

use std::path::PathBuf;

use crate::backend::BackendError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backend(#[from] BackendError),

    #[error("wrong passphrase for repository {repo}")]
    WrongPassphrase { repo: String },

    /// No intact key file opens with the passphrase, and some key files are damaged:
    /// the passphrase may belong to one of those.
    #[error(
        "no intact key file of repository {repo} opens with this passphrase, and {} damaged ({}): \
         if the passphrase belongs to a damaged key, copy that file from the remote site or a copy \
         of the repository into keys/, or open the repository with another passphrase",
        if .damaged.len() == 1 { "one key file is".to_string() } else { format!("{} key files are", .damaged.len()) },
        .damaged.join("; ")
    )]
    DamagedKeys { repo: String, damaged: Vec<String> },

    #[error("no repository at {repo}: run `kura init --repo {repo}` first")]
    NoRepository { repo: String },

    /// The location is a file: it cannot hold a repository.
    #[error("{repo} is a file, not a repository directory: give the directory that holds the repository")]
    NotADirectory { repo: String },

    /// Keys or snapshots are stored but the config object is gone: `init` would
    /// create a second repository on top of the first.
    #[error(
        "repository {repo} has lost its config object (the file `config`), but it still holds {holds}. \
         Do not run `kura init` here. Recover the config: copy `config` from the remote site \
         (a `kura copy` of this repository has the same one) or from a copy of this repository: \
         the key files here unlock it"
    )]
    ConfigMissing { repo: String, holds: String },

    #[error("a repository already exists at {repo}")]
    AlreadyInitialized { repo: String },

    /// `init` only creates a repository in an empty or new place.
    #[error(
        "{repo} is not empty (it holds {entry}): `kura init` creates a repository only in an empty or new \
         directory; choose another location"
    )]
    NotEmpty { repo: String, entry: String },

    #[error("cannot read password file {}: {cause}", .path.display())]
    PasswordFile { path: PathBuf, cause: std::io::Error },

    /// A passphrase file exists but holds no passphrase.
    #[error("password file {} is empty: write the repository passphrase into it", .path.display())]
    EmptyPasswordFile { path: PathBuf },

    /// Another process holds the repository's exclusive lock (a prune).
    #[error(
        "the repository is locked: {holder} holds its exclusive lock {lock}; wait for it to finish, \
         or remove locks/{lock} if that process is gone"
    )]
    Locked { holder: String, lock: String },

    /// This process's own lock went unrefreshed for too long.
    #[error(
        "this process's lock on the repository expired (was it suspended?), so its {purpose} stopped \
         before writing its result; run the {purpose} again"
    )]
    LockExpired { purpose: String },

    /// `filter` is the command-line form of the `--host`/`--tag`/`--path` filters that
    /// narrowed the choice (`Filter::describe`), empty when none was given.
    #[error("no snapshot matches {query:?}{}{filter}: list them with `kura snapshots{filter}`",
        if filter.is_empty() { "" } else { " with" })]
    SnapshotNotFound { query: String, filter: String },

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

    /// A repository location that names no backend (`http://x`).
    #[error(transparent)]
    Location(#[from] crate::backend::LocationError),

    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    /// A backup's stream command failed: no snapshot was written.
    #[error("command `{command}` failed ({status}); no snapshot was written{}", if .stderr.is_empty() { String::new() } else { format!(". Its stderr ended with:\n{}", .stderr) })]
    CommandFailed { command: String, status: String, stderr: String },

    /// A backup's stream command ran past its timeout: it was killed, no snapshot was written.
    #[error("command `{command}` did not finish within its timeout of {timeout} (--command-timeout, or command_timeout in the config): it was killed with its process group; no snapshot was written")]
    CommandTimedOut { command: String, timeout: String },

    /// The backup writer thread stopped; its own error says why.
    #[error("the repository writer stopped")]
    WriterStopped,

    /// The cause is part of the message and deliberately not a `#[source]`: the CLI
    /// prints an error's whole chain, which would repeat it (`X: E: E`). Variants
    /// either interpolate their cause or expose it as a source, never both.
    #[error("{}: {cause}", .path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

impl Error {
    pub fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt { object: object.into(), reason: reason.into() }
    }
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), reason: reason.into() }
    }
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause }
    }
}
