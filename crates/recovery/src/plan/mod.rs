//! Restoration plans (TOML files under `plans/`): which systems to restore, from
//! which backups, into which targets, in which order, with which hooks.
//!
//! `parse` reads the TOML (unknown fields rejected), `validate` resolves it against
//! the config (priorities live there) into a `Plan`, reporting every problem with
//! file, line and field. `order` is pure: tiers by priority, waves by dependency.
//! See docs/PLANS.md.

mod load;
mod order;
pub mod problems;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use chrono::Duration;
use serde::Serialize;

use kura_store::types::Priority;
pub use load::{
    check_syntax, load, parse_str, resolve_config, DEFAULT_HOOK_TIMEOUT, DEFAULT_RETRY_DELAY, DEFAULT_VERIFY_RETRIES,
};
pub use order::{dependency_indexes, order, rank};
pub use problems::{Problem, Problems, Severity};

/// A validated plan: every name unique, every dependency known, no cycle, no
/// dependency on a lower priority, no two targets overlapping.
#[derive(Clone, Debug)]
pub struct Plan {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    /// A lower tier may start while a higher one still runs (default false).
    pub allow_overlap: bool,
    pub on_failure: OnFailure,
    /// Names of kura's environment variables that hooks get besides the default
    /// few (PATH, HOME, LANG, ...); nothing else of kura's environment reaches them.
    pub hook_env: Vec<String>,
    pub systems: Vec<PlanSystem>,
}

impl Plan {
    pub fn system(&self, name: &str) -> Option<&PlanSystem> {
        self.systems.iter().find(|s| s.name == name)
    }
}

/// What happens to the rest of a tier when one of its systems fails. Dependents
/// of the failed system are always skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Finish the running systems, start nothing else.
    Halt,
    /// Carry on with every system that does not depend on the failed one.
    #[default]
    Continue,
}

/// Secure restore: the restored files checked against indicators before the
/// system is promoted (docs/DETECTION.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanStep {
    /// The plan's `scan`: the indicator file.
    pub indicators: PathBuf,
    /// The plan's `on_scan_hit`.
    pub on_hit: OnScanHit,
}

/// What a hit in the restored files does to the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnScanHit {
    /// The system fails before it is promoted; its dependents are skipped.
    #[default]
    Stop,
    /// The files with a hit move to a quarantine beside the target; the system goes on.
    Quarantine,
}

#[derive(Clone, Debug)]
pub struct PlanSystem {
    pub name: String,
    /// From the config (the one place priorities are declared).
    pub priority: Priority,
    /// From the priority, or the config's override; `None` = no deadline.
    pub deadline: Option<Duration>,
    pub source: Source,
    /// A path inside the snapshot whose contents land directly in `target`.
    pub subpath: Option<String>,
    pub target: PathBuf,
    pub depends_on: Vec<String>,
    pub hooks: Hooks,
    /// The agent host that holds the system (its config `host`, with `[fleet]`);
    /// `None`: the coordinator's own machine.
    pub agent: Option<String>,
    /// Where it is restored when its agent is lost (`[fleet] agent_lost_after`).
    pub replacement_host: Option<String>,
    /// The plan's `scan`: an indicator file the restored files are checked against
    /// before the system is promoted (verify hooks, post hooks), and what a hit does.
    pub scan: Option<ScanStep>,
    /// From the config: its warm standby, which a recovery fails over to when it is
    /// healthy (docs/STANDBY.md).
    pub standby: Option<crate::config::StandbyConfig>,
    /// From the config: the priority-3 tolerance on downtime and data loss.
    pub tolerance: Duration,
    /// A snapshot (id or unique prefix) this system restores, whatever the clean
    /// point or the incident's compromised-since would choose.
    pub snapshot: Option<String>,
}

/// Which snapshots belong to the system: by default those tagged `system:NAME`
/// (what the daemon and `kura backup --system` write); a plan may instead name a
/// host and paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Tag(String),
    HostPaths { host: String, paths: Vec<String> },
}

#[derive(Clone, Debug, Default)]
pub struct Hooks {
    pub pre: Vec<Hook>,
    pub verify: Vec<Hook>,
    pub post: Vec<Hook>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// Run through `sh -c`.
    pub command: String,
    pub timeout: std::time::Duration,
    /// Extra attempts after the first failure (verify hooks; default 0 for others).
    pub retries: u32,
    pub retry_delay: std::time::Duration,
    /// Safe to run during a drill (default: verify hooks yes, pre/post no).
    pub drill: bool,
}

/// The execution order: tiers from priority 3 down to 0; inside a tier, waves in
/// which every system's dependencies are in earlier waves or higher tiers; inside
/// a wave, earliest deadline first, then name. Values are indexes into `systems`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    pub tiers: Vec<Tier>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub priority: Priority,
    pub waves: Vec<Vec<usize>>,
}

impl Order {
    /// Every system index in execution order.
    pub fn flat(&self) -> impl Iterator<Item = usize> + '_ {
        self.tiers.iter().flat_map(|t| t.waves.iter().flatten().copied())
    }
}
