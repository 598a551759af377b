//! The kura agent: runs on every host that holds a system. It connects out to the
//! coordinator over HTTPS with mutual TLS, long-polls for its host's tasks, runs
//! them with the store (backups, restores) and the hooks runner, and reports.
//! See docs/FLEET.md.
//!
//! * `identity`: the agent's directory (key 0600, certificate, CA, coordinator URL)
//!   and the HTTPS client that trusts the fleet CA only.
//! * `join`: enrolment with a one-time token (the key pair is made here).
//! * `run`: the poll loop; each task is persisted (spec only, no secret) before it
//!   runs and its result until it is reported, so a kill -9 loses nothing.
//! * `work`: what a task does.

pub mod identity;
pub mod join;
pub mod run;
pub mod work;

/// What can go wrong on the agent's side.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {cause}")]
    Io { path: std::path::PathBuf, cause: std::io::Error },
    #[error("{0}")]
    Fleet(#[from] kura_fleet::Error),
    #[error("{0}")]
    Store(#[from] kura_store::Error),
    #[error("cannot reach the coordinator at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// The coordinator refused (status and its sentence).
    #[error("the coordinator refused: {message} (HTTP {status})")]
    Refused { status: u16, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl AgentError {
    pub fn io(path: impl Into<std::path::PathBuf>, cause: std::io::Error) -> AgentError {
        AgentError::Io { path: path.into(), cause }
    }
}

pub type Result<T> = std::result::Result<T, AgentError>;
