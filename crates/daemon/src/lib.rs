//! The daemon: runs the config's jobs on their cron schedules, records every run in
//! the state database, watches each system's recovery point, notifies, and answers
//! the CLI on a unix socket (docs/DAEMON.md).
//!
//! * One entry point, [`serve`]`(listener, options, shutdown)`: the caller binds the
//!   socket ([`api::bind`]) and owns the signals; tests drive it in-process.
//! * One owner of the daemon's state: the in-memory book behind one mutex that is
//!   never held across an `.await` (`daemon.rs`), and SQLite on its own thread
//!   (`db.rs`).
//! * Scheduling decisions are pure (`kura_recovery::schedule`); time comes from the
//!   injected `Clock` only (`scheduler.rs`).
//! * Jobs run on blocking threads (`spawn_blocking`) through the library; a job that
//!   fails or panics is recorded as `failed` and the scheduler goes on (`runs.rs`).
//! * No overlap: a job whose slot comes while its previous run still runs is
//!   deferred; when the run ends it runs once for the latest slot that passed.
//! * Per repository, backups, check, replicate and drill run side by side; prune runs
//!   alone (a per-repository read/write gate; see `JobKind::access`).
//! * Stop (the shutdown future or a `stop` request): no new jobs; running ones get
//!   the shutdown timeout to finish; those still running are recorded `interrupted`.
//!   A scheduled slot is remembered as done only when its run ends, so an
//!   interrupted slot is made up on the next start (catch-up).
//! * Notifications go to the outbox of the state database first (with a failed
//!   run's end, in one transaction); a delivery worker sends them with retries and
//!   marks them delivered after the receiver accepted them (`outbox.rs`).
//! * A reload message reloads the config; an invalid new config is logged and the
//!   old one kept.
//! * The control protocol is one typed set (`api.rs`), spoken by `serve.rs` and
//!   `client.rs`.
//! * Optionally (`[http]`), an HTTP listener bound by the caller serves metrics and
//!   a read-only dashboard on the same runtime, behind a token (`http/`).

mod after_backup;
pub mod api;
pub mod client;
mod daemon;
mod db;
pub mod error;
pub mod fleet;
pub mod http;
pub mod jobs;
mod offsite;
mod outbox;
mod runs;
mod scheduler;
mod serve;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;

pub use api::{default_socket, Reply, Request, Response};
pub use client::{Client, ClientError, RunAnswer};
pub use error::DaemonError;
pub use jobs::{Access, Executor, JobKind, JobProgress, JobSpec, LibraryExecutor, RunOutput, RunRequest, SlotDetail};
pub use serve::serve;
pub use status::{DaemonInfo, JobStatus, RunState, RunningStatus, Status, SystemStatus};

use kura_recovery::config::{Config, Problems};
use kura_store::clock::Clock;

/// Reads a config file (the CLI passes `config::load`); used again on each reload.
pub type ConfigLoader = Arc<dyn Fn(&Path) -> std::result::Result<Config, Problems> + Send + Sync>;

/// What [`serve`] runs with.
pub struct Options {
    pub config: Config,
    pub loader: ConfigLoader,
    pub state: PathBuf,
    /// How long running jobs may take to finish after a stop was asked.
    pub shutdown_timeout: StdDuration,
    /// The only source of time: schedules, catch-up, lateness, run times.
    pub clock: Arc<dyn Clock>,
    pub executor: Arc<dyn Executor>,
    /// Each message reloads the config file (the binary sends one per SIGHUP).
    pub reload: Option<tokio::sync::mpsc::Receiver<()>>,
    /// The `[http]` listener (metrics and dashboard), bound by the caller.
    pub http: Option<http::Listener>,
    /// The `[fleet]` listener (agents, remote operators), bound by the caller.
    pub fleet: Option<fleet::Listener>,
}

/// "3 h 2 min", "45 s", "52 h": kura's one duration formatter
/// (`kura_recovery::human::human_secs`), never negative.
pub fn human_duration(d: Duration) -> String {
    kura_recovery::human::human_secs(d.num_seconds().max(0))
}

#[cfg(test)]
mod tests;
