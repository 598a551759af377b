//! What `/metrics` and the dashboard show, gathered once per request: the same
//! [`Status`] that `kura status` answers with, plus facts read from the state
//! database on its thread (runs per job and outcome, the latest recovery, the
//! incident). Deadlines and progress come from the recovery library's own rules.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::daemon::Daemon;
use crate::error::Result;
use crate::status::Status;
use kura_recovery::incident::{Entry, Incident};
use kura_recovery::orchestrate::deadline;
use kura_recovery::schedule::JobKind;
use kura_recovery::state::jobs::Outcome;
use kura_recovery::state::recovery::{RunKind, RunRecord, SystemRecord};
use kura_recovery::state::State;

#[derive(Serialize)]
pub struct View {
    pub status: Status,
    pub runs: Vec<RunCount>,
    /// The latest recovery run (running or ended), if any.
    pub recovery: Option<RecoveryView>,
    /// The latest recovery's incident, else the latest incident.
    pub incident: Option<IncidentView>,
}

#[derive(Serialize)]
pub struct RunCount {
    pub job: JobKind,
    pub outcome: Outcome,
    pub runs: u64,
}

#[derive(Serialize)]
pub struct RecoveryView {
    pub run: RunRecord,
    pub systems: Vec<RecoverySystem>,
}

#[derive(Serialize)]
pub struct RecoverySystem {
    #[serde(flatten)]
    pub record: SystemRecord,
    pub deadline_at: Option<DateTime<Utc>>,
    /// Seconds to its deadline (negative: past it), while not finished.
    pub time_left_secs: Option<i64>,
    pub progress_percent: Option<f64>,
}

#[derive(Serialize)]
pub struct IncidentView {
    pub incident: Incident,
    pub timeline: Vec<Entry>,
}

struct Facts {
    runs: Vec<(JobKind, Outcome, u64)>,
    recovery: Option<(RunRecord, Vec<SystemRecord>)>,
    incident: Option<(Incident, Vec<Entry>)>,
}

fn read(st: &mut State) -> kura_recovery::error::Result<Facts> {
    let runs = st.run_counts()?;
    let recovery = match st.recovery_runs(Some(RunKind::Recovery), None)?.pop() {
        Some(run) => {
            let systems = st.run_systems(run.id)?;
            Some((run, systems))
        }
        None => None,
    };
    let id = match recovery.as_ref().and_then(|(r, _)| r.incident) {
        Some(id) => Some(id),
        None => st.incident_ids()?.into_iter().max(),
    };
    let incident = match id {
        Some(id) => Some((st.incident(id)?, st.timeline(id)?)),
        None => None,
    };
    Ok(Facts { runs, recovery, incident })
}

pub async fn gather(daemon: &Daemon) -> Result<View> {
    let status = daemon.status().await?;
    let facts = daemon.db.query(read).await?;
    let now = status.daemon.now;
    Ok(View {
        runs: facts.runs.into_iter().map(|(job, outcome, runs)| RunCount { job, outcome, runs }).collect(),
        recovery: facts.recovery.map(|(run, systems)| recovery_view(run, systems, now)),
        incident: facts.incident.map(|(incident, timeline)| IncidentView { incident, timeline }),
        status,
    })
}

fn recovery_view(run: RunRecord, systems: Vec<SystemRecord>, now: DateTime<Utc>) -> RecoveryView {
    let systems = systems
        .into_iter()
        .map(|s| RecoverySystem {
            deadline_at: deadline::due_at(run.clock_start, s.deadline_secs),
            time_left_secs: deadline::time_left_secs(run.clock_start, s.deadline_secs, s.state.is_terminal(), now),
            progress_percent: s.progress_percent(),
            record: s,
        })
        .collect();
    RecoveryView { run, systems }
}
