//! Building `ReportFacts` from the state database: the one part of `report/`
//! that reads anything. Every figure comes from what was recorded; the computed
//! ones are derived by `ReportFacts::finalize`.

use chrono::{DateTime, Utc};

use super::{
    EntryKind, GateOverride, HookOutcome, HookResult, IncidentFacts, PeriodEntry, PeriodFacts, PreventionPlan,
    ReportFacts, ReportKind, Review, RunFacts, SystemRow, TimelineEntry, Verification, VerifyResult,
};
use crate::error::{Error, Result};
use crate::incident::Incident;
use crate::orchestrate::queue::Phase;
use crate::state::recovery::{RunKind, RunRecord, SystemRecord};
use crate::state::State;
use kura_store::types::Priority;

fn row(r: &SystemRecord) -> SystemRow {
    let priority = Priority::new(r.priority).unwrap_or(Priority::ALL[3]);
    let mut row = SystemRow::new(r.name.clone(), priority, r.deadline_secs, r.state.into());
    row.target = r.target.clone();
    row.started_at = r.started_at;
    row.ended_at = r.ended_at;
    row.snapshot = r.snapshot.clone();
    row.snapshot_time = r.snapshot_time;
    row.failover = r.failover;
    row.ran_on = r.ran_on.clone();
    row.bytes = (r.bytes > 0 || r.state == Phase::Done).then_some(r.bytes);
    row.files = (r.files > 0).then_some(r.files);
    row.error = r.error.clone();
    row.verification = match &r.verify {
        Some(v) if v.ok => Verification {
            result: VerifyResult::Ok,
            detail: Some(format!("{} files match the snapshot's hashes", v.files_verified)),
        },
        Some(v) => Verification {
            result: VerifyResult::Failed,
            detail: Some(serde_json::to_string(&v.failures).expect("strings serialize")),
        },
        None => Verification::default(),
    };
    if let Some(q) = r.verify.as_ref().and_then(|v| v.quarantine.as_ref()) {
        let note = q.summary();
        row.verification.detail = Some(match row.verification.detail.take() {
            Some(d) => format!("{d}; {note}"),
            None => note,
        });
    }
    row.hooks = r
        .hooks
        .iter()
        .map(|h| HookOutcome {
            phase: h.stage,
            command: h.command.clone(),
            result: if h.skipped {
                HookResult::Skipped
            } else if h.timed_out {
                HookResult::TimedOut
            } else if h.ok {
                HookResult::Ok
            } else {
                HookResult::Failed
            },
            attempts: h.attempts,
            detail: (!h.output.is_empty()).then(|| h.output.clone()),
        })
        .collect();
    row
}

fn run_facts(r: &RunRecord) -> RunFacts {
    RunFacts {
        started_at: r.started_at,
        ended_at: r.ended_at,
        status: r.status,
        from: Some(r.options.from.to_string()),
        parallel: Some(r.options.parallel as u32),
        sandbox: r.options.sandbox.clone(),
    }
}

fn incident_facts(i: &Incident) -> IncidentFacts {
    let f = &i.fields;
    IncidentFacts {
        category: f.category.clone(),
        opened_at: Some(i.opened_at),
        closed_at: i.closed_at,
        real: f.real,
        discovered_at: f.discovered_at,
        down_since: Some(i.clock_start()),
        compromised_since: f.compromised_since,
        scope: f.scope.clone(),
        damage: f.damage.clone(),
        cause: f.cause.clone(),
        response: f.response.clone(),
        board_report: i.report_to_board == Some(true),
        cause_resolved_at: i.cause_resolved_at,
        cause_note: i.cause_resolution.clone(),
        gate_override: i.gate_overrides.first().map(|(at, reason)| GateOverride { at: *at, reason: reason.clone() }),
        prevention_plan: i.prevention_plans.last().map(|(at, t, o)| PreventionPlan {
            at: *at,
            technical: t.join("; "),
            organizational: o.join("; "),
        }),
    }
}

/// The report of an incident and its latest recovery run.
pub fn incident(state: &State, id: i64, now: DateTime<Utc>) -> Result<ReportFacts> {
    let inc = state.incident(id)?;
    let mut f = ReportFacts::new(ReportKind::Incident, format!("Incident {id}: {}", inc.title()), now);
    f.incident_id = Some(id);
    f.clock_start = Some(inc.clock_start());
    f.incident = Some(incident_facts(&inc));
    f.timeline = state
        .timeline(id)?
        .iter()
        .map(|e| TimelineEntry {
            at: e.at,
            kind: e.event.kind().into(),
            text: e.event.describe(),
            hash: Some(e.hash.clone()),
        })
        .collect();
    f.reviews = inc
        .reviews
        .iter()
        .map(|(at, text, actions)| Review { at: *at, text: text.clone(), actions: actions.clone() })
        .collect();
    f.signals = signal_series(state)?;
    if let Some(run) = state.recovery_runs(Some(RunKind::Recovery), Some(id))?.pop() {
        f.run_id = Some(run.id);
        f.plan = Some(run.plan_name.clone());
        f.run = Some(run_facts(&run));
        f.systems = state.run_systems(run.id)?.iter().map(row).collect();
    }
    Ok(f)
}

/// The report of a drill: its clock starts at the drill's start.
pub fn drill(state: &State, run_id: i64, now: DateTime<Utc>) -> Result<ReportFacts> {
    let run = state.recovery_run(run_id)?;
    if run.kind != RunKind::Drill {
        return Err(Error::invalid(format!("run {run_id}"), "is a recovery, not a drill: use --incident"));
    }
    let mut f = ReportFacts::new(ReportKind::Drill, format!("Drill {run_id}: plan {}", run.plan_name), now);
    f.run_id = Some(run_id);
    f.plan = Some(run.plan_name.clone());
    f.clock_start = Some(run.clock_start);
    f.run = Some(run_facts(&run));
    let systems = state.run_systems(run_id)?;
    f.systems = systems.iter().map(row).collect();
    f.timeline = drill_timeline(&run, &systems);
    f.reviews =
        state.drill_reviews(run_id)?.into_iter().map(|(at, text, actions)| Review { at, text, actions }).collect();
    Ok(f)
}

fn drill_timeline(run: &RunRecord, systems: &[SystemRecord]) -> Vec<TimelineEntry> {
    let entry = |at, kind: &str, text: String| TimelineEntry { at, kind: kind.into(), text, hash: None };
    let mut t = vec![entry(run.started_at, "drill-started", format!("drill started with plan {}", run.plan_name))];
    for s in systems {
        if let Some(at) = s.ended_at {
            let verdict = s.verdict.map(|v| format!(", deadline {v}")).unwrap_or_default();
            t.push(entry(at, "system-finished", format!("{} {}{verdict}", s.name, s.state)));
        }
    }
    if let Some(at) = run.ended_at {
        t.push(entry(at, "drill-finished", format!("drill {}", run.status)));
    }
    t.sort_by_key(|e| e.at);
    t
}

/// Every incident (by its clock start) and drill (by its start) in [since, until).
pub fn period(state: &State, since: DateTime<Utc>, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<ReportFacts> {
    let mut entries = vec![];
    for id in state.incident_ids()? {
        let inc = state.incident(id)?;
        let at = inc.clock_start();
        if at < since || at >= until {
            continue;
        }
        let run = state.recovery_runs(Some(RunKind::Recovery), Some(id))?.pop();
        let systems = match &run {
            Some(r) => state.run_systems(r.id)?.iter().map(row).collect(),
            None => vec![],
        };
        entries.push(PeriodEntry {
            kind: EntryKind::Incident,
            id,
            run_id: run.map(|r| r.id),
            title: inc.title().to_string(),
            at,
            systems,
            summary: Default::default(),
            tiers: vec![],
        });
    }
    for run in state.recovery_runs(Some(RunKind::Drill), None)? {
        if run.clock_start < since || run.clock_start >= until {
            continue;
        }
        entries.push(PeriodEntry {
            kind: EntryKind::Drill,
            id: run.id,
            run_id: Some(run.id),
            title: format!("Drill of plan {}", run.plan_name),
            at: run.clock_start,
            systems: state.run_systems(run.id)?.iter().map(row).collect(),
            summary: Default::default(),
            tiers: vec![],
        });
    }
    entries.sort_by_key(|e| e.at);
    let title = format!("Recovery-time compliance {} to {}", since.format("%Y-%m-%d"), until.format("%Y-%m-%d"));
    let mut f = ReportFacts::new(ReportKind::Period, title, now);
    f.period = Some(PeriodFacts { since, until, entries, trend: vec![] });
    Ok(f)
}

/// Every system's stored verdicts, with the held snapshots marked as clean points.
fn signal_series(state: &State) -> Result<Vec<super::SignalSeries>> {
    let held = state.held_snapshots()?;
    let mut by_system: std::collections::BTreeMap<String, Vec<super::SignalPoint>> = Default::default();
    for v in state.all_verdicts()? {
        let Some(system) = v.system.clone() else { continue };
        by_system.entry(system).or_default().push(super::SignalPoint {
            clean_point: held.contains(&v.snapshot),
            snapshot: v.snapshot,
            time: v.snapshot_time,
            change_rate: v.change_rate,
            incompressible: v.incompressible,
            suspect: v.verdict.is_suspect(),
            false_positive: v.false_positive_at.is_some(),
        });
    }
    Ok(by_system.into_iter().map(|(system, points)| super::SignalSeries { system, points }).collect())
}
