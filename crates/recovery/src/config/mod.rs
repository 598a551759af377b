//! The daemon's and the recovery's configuration (`kura.toml`): the repository,
//! the remote site, and the systems with their recovery priorities. This file is
//! the one place a system and its priority are declared; plans refer to systems
//! by name. Parsing (serde, unknown fields rejected) is followed by validation
//! into these types; every problem is reported with file, line and field.
//! See docs/CONFIG.md.

use std::path::PathBuf;

use chrono::Duration;

pub use crate::plan::problems::{Problem, Problems};
use kura_store::types::Priority;

#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub repository: RepoSpec,
    pub remote: Option<RepoSpec>,
    /// SQLite state database; `None` means the default location.
    pub state: Option<PathBuf>,
    /// Recovery deadline per priority (index = priority); `None` = no deadline.
    pub deadlines: [Option<Duration>; 4],
    /// Allowed age of the last good backup per priority (RPO watch); `None` = not watched.
    pub max_backup_age: [Option<Duration>; 4],
    pub catch_up: CatchUp,
    pub systems: Vec<SystemConfig>,
    pub jobs: Jobs,
    pub notify: Notify,
    /// The metrics and dashboard listener; `None` (no `[http]` table) = off.
    pub http: Option<Http>,
    /// The fleet listener and its settings; `None` (no `[fleet]` table) = no agents.
    pub fleet: Option<Fleet>,
    /// Incident detection in the backups (`[detect]`).
    pub detect: Detect,
}

/// `[detect]`: where the indicator list is and how the baseline is taken.
#[derive(Clone, Debug, Default)]
pub struct Detect {
    /// Replaces the built-in list of ransom-note names and malware extensions.
    pub names: Option<PathBuf>,
    pub rules: crate::detect::Rules,
}

impl Config {
    pub fn system(&self, name: &str) -> Option<&SystemConfig> {
        self.systems.iter().find(|s| s.name == name)
    }

    /// The agent host that runs `sys`'s work: its `host`, when the config has a
    /// `[fleet]` and that host is not the coordinator itself. `None`: this machine.
    pub fn agent_host<'a>(&'a self, sys: &'a SystemConfig) -> Option<&'a str> {
        let fleet = self.fleet.as_ref()?;
        sys.host.as_deref().filter(|h| *h != fleet.name)
    }
}

/// `[fleet]`: the coordinator's listener for agents and remote operators (docs/FLEET.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    pub listen: std::net::SocketAddr,
    /// The coordinator's own host name: systems with this `host` run here.
    pub name: String,
    /// Names (DNS or IP) in the server certificate besides `name`, localhost and 127.0.0.1.
    pub advertise: Vec<String>,
    /// An agent not heard from for this long puts its systems at risk.
    pub agent_lost_after: std::time::Duration,
    /// How long a poll is held open; an agent unseen for 3 times this is unreachable.
    pub heartbeat: std::time::Duration,
    /// All hosts back up into the one repository (opt-in; see docs/FLEET.md).
    pub shared_repository: bool,
    /// At most this many systems of one host restored at once (`None`: only `--parallel`).
    pub per_host_parallel: Option<usize>,
}

/// The port `[fleet]` listens on when `listen` is not given.
pub const DEFAULT_FLEET_PORT: u16 = 9443;

/// A repository location (a directory, or `s3:...` once the S3 backend exists) and
/// the file holding its passphrase.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    /// Local paths are already resolved against the config file's directory.
    pub location: kura_store::backend::Location,
    pub password_file: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// A job whose slot passed while the daemon was down runs once on start.
    #[default]
    Once,
    /// Missed slots are skipped; the job waits for its next slot.
    Skip,
}

#[derive(Clone, Debug)]
pub struct SystemConfig {
    pub name: String,
    pub priority: Priority,
    /// Host recorded in its snapshots; default this machine's host name.
    pub host: Option<String>,
    /// Absolute paths to back up.
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
    /// Backup schedule; `None` = only on demand (`kura run`).
    pub schedule: Option<Schedule>,
    /// A command whose stdout each backup stores as `/NAME` (beside `paths`).
    pub stream: Option<kura_store::backup::StreamSource>,
    /// A warm standby kept current from the backups (docs/STANDBY.md).
    pub standby: Option<StandbyConfig>,
    /// Priority 3: the downtime and data loss within which "must not stop" is met;
    /// `None`: the default, `DEFAULT_TOLERANCE_SECS`.
    pub tolerance: Option<Duration>,
}

impl SystemConfig {
    /// The tag every backup of this system carries; recovery selects snapshots by it.
    pub fn tag(&self) -> String {
        format!("system:{}", self.name)
    }

    /// The warning every readiness view shows for this system: a priority-3 system
    /// without a standby cannot meet "must not stop" (a restore takes too long).
    pub fn readiness_warning(&self) -> Option<String> {
        (self.priority.get() == 3 && self.standby.is_none()).then(|| {
            format!(
                "system {:?} has priority 3 (must not stop) but no standby: a restore cannot meet its deadline; \
                 add a [system.standby] (docs/STANDBY.md)",
                self.name
            )
        })
    }

    /// The priority-3 tolerance (docs/STANDBY.md): the config's, else 5 minutes.
    pub fn tolerance(&self) -> Duration {
        self.tolerance.unwrap_or(Duration::seconds(DEFAULT_TOLERANCE_SECS))
    }

    /// The paths its snapshots record: `paths`, and the stream's `/NAME`, sorted.
    pub fn snapshot_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self.paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        out.extend(self.stream.as_ref().map(|s| s.snapshot_path()));
        out.sort();
        out
    }
}

/// A parsed cron expression and its source text.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub expr: String,
    pub cron: cron::Schedule,
}

#[derive(Clone, Debug, Default)]
pub struct Jobs {
    pub replicate: Option<Schedule>,
    pub prune: Option<PruneJob>,
    pub check: Option<CheckJob>,
    pub drill: Option<DrillJob>,
}

#[derive(Clone, Debug)]
pub struct PruneJob {
    pub schedule: Schedule,
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct CheckJob {
    pub schedule: Schedule,
    /// Read 1/n of the packs per run, rotating (`check --read-data-subset next/n`).
    pub read_data_subset: u32,
}

#[derive(Clone, Debug)]
pub struct DrillJob {
    pub schedule: Schedule,
    pub plan: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Notify {
    /// HTTP(S) POST of a JSON event.
    pub webhook: Option<String>,
    /// Run through `sh -c` with the JSON event on stdin and KURA_EVENT set.
    pub command: Option<String>,
    /// PEM file of CA certificates trusted for the webhook, besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// First delay before a failed delivery is tried again; it doubles up to `retry_max`.
    pub retry_initial: std::time::Duration,
    pub retry_max: std::time::Duration,
    /// A `system_late` event for a system still late is sent again after this long.
    pub repeat_after: std::time::Duration,
}

impl Default for Notify {
    fn default() -> Notify {
        Notify {
            webhook: None,
            command: None,
            ca_file: None,
            retry_initial: std::time::Duration::from_secs(1),
            retry_max: std::time::Duration::from_secs(300),
            repeat_after: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// `[http]`: where the daemon serves `/metrics` and the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http {
    /// Default `127.0.0.1:9187`.
    pub listen: std::net::SocketAddr,
    /// The bearer token's file; `None` = `http-token` beside the state database.
    pub token_file: Option<PathBuf>,
}

/// The port `[http]` listens on when `listen` is not given.
pub const DEFAULT_HTTP_PORT: u16 = 9187;

mod env;
mod error;
mod parse;
mod schedule;
mod standby;
pub(crate) mod tree;

pub use error::{DurationError, RangeError, ScheduleError};
pub use parse::{load, parse_str, valid_system_name, DEFAULT_MAX_BACKUP_AGE};
pub use schedule::parse_schedule;
pub use standby::{StandbyConfig, DEFAULT_STANDBY_HOOK_TIMEOUT, DEFAULT_TOLERANCE_SECS};
pub use tree::{format_duration, parse_duration};

impl Config {
    /// The recovery deadline of a priority (the config's override, else the standard's).
    pub fn deadline(&self, p: Priority) -> Option<Duration> {
        self.deadlines[p.get() as usize]
    }
}

#[cfg(test)]
mod tests;
