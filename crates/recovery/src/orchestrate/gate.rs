//! Starting (or resuming) a recovery: the gate and the run's first records, in
//! one place for every caller.
//!
//! Rules that must stay true:
//! * A caller holds the run lock ([`RunLock`]) for the state database it starts a
//!   run in; every function here takes it, so no caller can forget it.
//! * A new run starts only when the incident's cause is resolved, or with
//!   `force` and a non-empty reason, which is appended to the incident's
//!   timeline before the run is stored.
//! * An unfinished run of the same incident and plan is resumed, never doubled;
//!   the gate was passed when it started.

use chrono::{DateTime, Utc};

use super::runlock::RunLock;
use crate::error::Result;
use crate::incident::{Event, Incident, Status};
use crate::plan::Plan;
use crate::state::recovery::{RunKind, RunOptions, Site};
use crate::state::State;

/// Why a recovery may not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("incident {0} is closed; open a new incident for a new recovery")]
    Closed(i64),
    #[error(
        "incident {0}: its cause is not resolved yet, so recovery is refused: systems restored now could be \
         compromised again by the same cause.\nFix the cause, then run `kura incident resolve-cause {0} --note \
         \"what was done\"`.\nTo restore anyway, add --force --reason \"why\" (the override is recorded on the \
         incident's timeline)."
    )]
    CauseNotResolved(i64),
    #[error("--force needs a non-empty --reason")]
    NoReason,
}

/// What `kura recover` asks for.
pub struct RecoveryRequest {
    pub incident: i64,
    /// The site, and the repository location it names.
    pub from: Site,
    pub location: String,
    pub parallel: usize,
    /// `--force`: start although the cause is not resolved, for `reason`.
    pub force: bool,
    pub reason: Option<String>,
    pub config: Option<String>,
    /// Systems to restore on another agent host than their own (`--on SYSTEM=HOST`).
    pub on: std::collections::BTreeMap<String, String>,
}

/// A recovery run that may go on: new, or resumed.
#[derive(Clone, Debug)]
pub struct StartedRecovery {
    pub run: i64,
    /// Set when an unfinished run was resumed: when it started.
    pub resumed_from: Option<DateTime<Utc>>,
    pub clock_start: DateTime<Utc>,
}

/// The incident to recover, refused when it is closed. Called before the
/// repository is opened, so that a closed incident is named first.
pub fn admit(state: &State, lock: &RunLock, incident: i64) -> Result<Incident> {
    lock.check_guards(state)?;
    let inc = state.incident(incident)?;
    if inc.status == Status::Closed {
        return Err(GateError::Closed(incident).into());
    }
    Ok(inc)
}

/// Resumes the unfinished run of this incident and plan, or passes the gate
/// (recording an override) and stores a new run with its `recovery-started` entry.
pub fn start_recovery(
    state: &mut State,
    lock: &RunLock,
    repo: &dyn super::executor::SnapshotSource,
    plan: &Plan,
    incident: &Incident,
    req: RecoveryRequest,
    now: DateTime<Utc>,
) -> Result<StartedRecovery> {
    lock.check_guards(state)?;
    let id = req.incident;
    let plan_path = plan.path.display().to_string();
    if let Some(r) = state.unfinished_recovery_run(RunKind::Recovery, Some(id), &plan_path)? {
        return Ok(StartedRecovery { run: r.id, resumed_from: Some(r.started_at), clock_start: r.clock_start });
    }
    if incident.cause_resolved_at.is_none() {
        if !req.force {
            return Err(GateError::CauseNotResolved(id).into());
        }
        let reason = req.reason.clone().unwrap_or_default();
        if reason.trim().is_empty() {
            return Err(GateError::NoReason.into());
        }
        state.append_event(id, now, &Event::GateOverridden { reason, plan: plan_path.clone() })?;
    }
    let options = RunOptions {
        from: req.from,
        repository: req.location,
        parallel: req.parallel.max(1),
        forced_reason: req.force.then(|| req.reason.unwrap_or_default()),
        compromised_since: incident.fields.compromised_since,
        config: req.config,
        on: req.on,
        ..Default::default()
    };
    let clock_start = incident.clock_start();
    let run = super::prepare(state, repo, plan, RunKind::Recovery, Some(id), clock_start, now, &options)?;
    state.append_event(id, now, &Event::RecoveryStarted { run, plan: plan_path })?;
    Ok(StartedRecovery { run, resumed_from: None, clock_start })
}
