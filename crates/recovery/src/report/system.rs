//! One system's row in a report: its state, hooks, verification and the figures
//! derived from them (`ReportFacts::finalize` fills the computed fields).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{text, HookStage, Verdict};
use crate::error::{Error, Result};
use crate::orchestrate::forecast::Confidence;
use crate::orchestrate::queue::Phase;
use kura_store::types::Priority;

/// A system's state in the run (the `recovery_systems.state` values, plus two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemState {
    Waiting,
    Restoring,
    Verifying,
    Done,
    Failed,
    Skipped,
    /// Never went down, so nothing was restored: its time is 0.
    Unaffected,
    /// A forecast row: nothing ran, the times are predicted.
    Planned,
}

/// The report's view of an engine [`Phase`]: the one place the two meet. The
/// report's documented vocabulary is coarser (a system running its pre hooks is
/// `restoring`, one in its post hooks `verifying`) and adds what no run stores
/// (`unaffected`, `planned`), so it stays an enum of its own.
impl From<Phase> for SystemState {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Waiting => SystemState::Waiting,
            Phase::Pre | Phase::Restoring => SystemState::Restoring,
            Phase::Verifying | Phase::Post => SystemState::Verifying,
            Phase::Done => SystemState::Done,
            Phase::Failed => SystemState::Failed,
            Phase::Skipped => SystemState::Skipped,
        }
    }
}

impl SystemState {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemState::Waiting => "waiting",
            SystemState::Restoring => "restoring",
            SystemState::Verifying => "verifying",
            SystemState::Done => "done",
            SystemState::Failed => "failed",
            SystemState::Skipped => "skipped",
            SystemState::Unaffected => "unaffected",
            SystemState::Planned => "planned",
        }
    }
    /// Still running or not yet started.
    pub fn in_progress(self) -> bool {
        matches!(self, SystemState::Waiting | SystemState::Restoring | SystemState::Verifying)
    }
}

impl std::str::FromStr for SystemState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "waiting" => SystemState::Waiting,
            "restoring" => SystemState::Restoring,
            "verifying" => SystemState::Verifying,
            "done" => SystemState::Done,
            "failed" => SystemState::Failed,
            "skipped" => SystemState::Skipped,
            "unaffected" => SystemState::Unaffected,
            "planned" => SystemState::Planned,
            _ => {
                return Err(Error::invalid(
                    "system state",
                    format!(
                        "{s:?} is not one of waiting, restoring, verifying, done, failed, skipped, unaffected, planned"
                    ),
                ))
            }
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyResult {
    /// Every restored file matched the snapshot's content hashes.
    Ok,
    Failed,
    #[default]
    NotRun,
}

impl VerifyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyResult::Ok => "ok",
            VerifyResult::Failed => "failed",
            VerifyResult::NotRun => "not_run",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub result: VerifyResult,
    /// E.g. "1204 files checked" or the first mismatching file.
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookResult {
    Ok,
    Failed,
    TimedOut,
    /// Not run, e.g. not marked safe for drills.
    Skipped,
}

impl HookResult {
    pub fn as_str(self) -> &'static str {
        match self {
            HookResult::Ok => "ok",
            HookResult::Failed => "failed",
            HookResult::TimedOut => "timed_out",
            HookResult::Skipped => "skipped",
        }
    }
}

/// The outcome of one hook of a system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookOutcome {
    pub phase: HookStage,
    pub command: String,
    pub result: HookResult,
    /// How many times it ran (verify hooks retry).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub detail: Option<String>,
}

/// One system of a recovery, drill or forecast. Fields marked "computed" are
/// derived by [`ReportFacts::finalize`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemRow {
    pub name: String,
    pub priority: Priority,
    /// Seconds from the clock start; None = no deadline (priority 0). 0 = must not stop.
    pub deadline_secs: Option<i64>,
    pub state: SystemState,
    /// Where it was restored (the sandbox for drills).
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds from the clock start to the start of its restore. Computed from
    /// `started_at` unless `predicted`, when the forecast supplies it.
    #[serde(default)]
    pub start_secs: Option<i64>,
    /// Seconds from the clock start until it was restored (achieved), or would be
    /// (predicted). Computed from `ended_at` for done systems (0 for unaffected)
    /// unless `predicted`, when the forecast supplies it.
    #[serde(default)]
    pub time_secs: Option<i64>,
    /// The times are a forecast's prediction, not a measurement.
    #[serde(default)]
    pub predicted: bool,
    /// Computed: met | missed | pending | none.
    #[serde(default)]
    pub verdict: Verdict,
    /// Computed: deadline minus time; positive = early, negative = late. For a
    /// system still in progress: deadline minus the time elapsed so far.
    #[serde(default)]
    pub margin_secs: Option<i64>,
    /// The snapshot restored (id).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// When that snapshot was taken.
    #[serde(default)]
    pub snapshot_time: Option<DateTime<Utc>>,
    /// Computed: the snapshot's age at the clock start, i.e. the data lost (RPO).
    /// 0 when the snapshot is newer than the clock start.
    #[serde(default)]
    pub rpo_secs: Option<i64>,
    /// It failed over to its standby instead of being restored (docs/STANDBY.md):
    /// judged on its downtime and its data lost, both within its tolerance (the deadline).
    #[serde(default)]
    pub failover: bool,
    /// The fleet host it ran on (its agent, or its replacement / `--on` host);
    /// `None`: the coordinator's own machine.
    #[serde(default)]
    pub ran_on: Option<String>,
    /// Bytes restored (or, predicted: to restore).
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub files: Option<u64>,
    /// Computed: `ended_at - started_at`, the restore's own duration.
    #[serde(default)]
    pub restore_secs: Option<i64>,
    /// Computed: bytes / restore_secs.
    #[serde(default)]
    pub throughput_bps: Option<u64>,
    #[serde(default)]
    pub verification: Verification,
    #[serde(default)]
    pub hooks: Vec<HookOutcome>,
    /// Why it failed, or why it was skipped.
    #[serde(default)]
    pub error: Option<String>,
    /// A forecast row: how far its figure can be trusted (drills learned from, their
    /// age, how far the data moved since). None for measured rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

impl SystemRow {
    /// A row with the given identity and everything else empty.
    pub fn new(name: impl Into<String>, priority: Priority, deadline_secs: Option<i64>, state: SystemState) -> Self {
        SystemRow {
            name: name.into(),
            priority,
            deadline_secs,
            state,
            target: None,
            started_at: None,
            ended_at: None,
            start_secs: None,
            time_secs: None,
            predicted: false,
            verdict: Verdict::NoDeadline,
            margin_secs: None,
            snapshot: None,
            snapshot_time: None,
            rpo_secs: None,
            failover: false,
            ran_on: None,
            bytes: None,
            files: None,
            restore_secs: None,
            throughput_bps: None,
            verification: Verification::default(),
            hooks: Vec::new(),
            error: None,
            confidence: None,
        }
    }

    /// How the system came back: "failover to its standby" or "restore" (every format's wording).
    pub fn how(&self) -> &'static str {
        if self.failover {
            "failover to its standby"
        } else {
            "restore"
        }
    }

    /// One line summing up the hooks: "pre ok, verify ok (3 attempts), post skipped".
    pub fn hooks_summary(&self) -> String {
        text::hooks_summary(&self.hooks)
    }
}
