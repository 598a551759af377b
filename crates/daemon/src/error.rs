//! What can go wrong inside the daemon, by meaning. The control API sends the
//! message of these to the client; nothing in the daemon passes errors as strings.

use std::path::PathBuf;
use std::sync::Arc;

/// An error of the daemon. `Clone` because one failure can have two listeners (the
/// caller that waits for a run to start and the one that waits for its end); sources
/// are shared behind `Arc` for that.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("{job} is already running (run {run})")]
    AlreadyRunning { job: String, run: i64 },
    #[error("{job} is already queued")]
    AlreadyQueued { job: String },
    #[error(
        "no job or system named {target:?} in {}: known jobs are {}",
        config.display(),
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    UnknownTarget { target: String, config: PathBuf, known: Vec<String> },
    #[error("the daemon stopped before the job could start")]
    StoppedBeforeStart,
    #[error("the run was lost (the daemon is stopping)")]
    RunLost,
    #[error("{}", match incident {
        Some(i) => format!("incident {i} has no recovery run yet"),
        None => "no recovery has been run yet".to_string(),
    })]
    NoRecovery { incident: Option<i64> },
    #[error("run {0} is missing from the state database")]
    RunMissing(i64),
    /// The thread that owns the state database is gone (it panicked).
    #[error("the state database thread has stopped")]
    StateGone,
    #[error("cannot start the state database thread")]
    StateThread(#[source] Arc<std::io::Error>),
    #[error(transparent)]
    State(Arc<kura_recovery::error::Error>),
}

impl From<kura_recovery::error::Error> for DaemonError {
    fn from(e: kura_recovery::error::Error) -> Self {
        DaemonError::State(Arc::new(e))
    }
}

pub type Result<T, E = DaemonError> = std::result::Result<T, E>;
