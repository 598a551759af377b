//! What the recovery engine asks of standbys: whether a system fails over instead
//! of being restored, the standby's hooks added to its plan hooks, its deadline
//! (the tolerance), and the record of a failover the engine performed.

use chrono::{DateTime, Duration, Utc};

use super::switch::p3_met;
use crate::error::Result;
use crate::incident::Event;
use crate::orchestrate::deadline::Verdict;
use crate::plan::{Plan, PlanSystem};
use crate::state::recovery::{RunRecord, SystemRecord};
use crate::state::standby::{SwitchKind, SwitchPhase};
use crate::state::State;

/// Whether the system's standby can take over now, and if not, why (for the timeline).
pub fn can_take_over(state: &State, s: &PlanSystem) -> Result<(bool, String)> {
    let Some(sb) = &s.standby else { return Ok((false, "none configured".into())) };
    let rec = state.standby(&s.name)?;
    let health = super::health(rec.as_ref(), None, None);
    if !health.can_take_over() {
        return Ok((false, format!("it is {}", health.kind())));
    }
    if sb.host.is_some() {
        // On an agent host: its record is only ever set from the agent's report of
        // what the directory holds completely.
        return Ok(match rec.as_ref().and_then(|r| r.snapshot.as_ref()) {
            Some(_) => (true, String::new()),
            None => (false, "it does not hold a complete snapshot".into()),
        });
    }
    // The marker beside the directory is the truth about what it holds completely.
    match kura_store::sync::held(&sb.path) {
        Ok(Some(_)) => Ok((true, String::new())),
        Ok(None) => Ok((false, "it does not hold a complete snapshot".into())),
        Err(e) => Ok((false, e.to_string())),
    }
}

/// The standby's fence (pre), verify and promote (post) hooks, after the plan's own.
pub fn add_standby_hooks(sys: &mut PlanSystem) {
    let Some(sb) = sys.standby.clone() else { return };
    sys.hooks.pre.extend(sb.fence.iter().map(|c| super::hook(c, &sb)));
    sys.hooks.verify.extend(sb.verify.iter().map(|c| super::hook(c, &sb)));
    sys.hooks.post.extend(sb.promote.iter().map(|c| super::hook(c, &sb)));
}

/// The plan with each failing-over system's deadline set to its tolerance (`None`:
/// no system of the run fails over).
pub fn failover_deadlines(plan: &Plan, records: &[SystemRecord]) -> Option<Plan> {
    let over: Vec<&str> = records.iter().filter(|r| r.failover).map(|r| r.name.as_str()).collect();
    if over.is_empty() {
        return None;
    }
    let mut p = plan.clone();
    for s in p.systems.iter_mut().filter(|s| over.contains(&s.name.as_str())) {
        s.deadline = Some(s.tolerance);
    }
    Some(p)
}

/// A failover the engine finished: the standby serves (or failed), the failover is
/// recorded with its measured downtime and data loss (what forecasts learn from),
/// and the verdict is judged on both against the tolerance.
pub fn record_engine_failover(
    state: &mut State,
    run: &RunRecord,
    sys: &PlanSystem,
    rec: &SystemRecord,
    ok: bool,
    now: DateTime<Utc>,
    judged: (Option<Verdict>, Option<i64>),
) -> Result<(Option<Verdict>, Option<i64>)> {
    let path = rec.target.clone().unwrap_or_default();
    if !ok {
        let why = format!("failover in recovery run {} failed: {}", run.id, rec.error.clone().unwrap_or_default());
        state.standby_failed(&sys.name, &path, &why)?;
        return Ok(judged);
    }
    let snap = rec.snapshot.clone().unwrap_or_default();
    let snap_time = rec.snapshot_time.unwrap_or(run.clock_start);
    let downtime = now - run.clock_start;
    let data_loss = (run.clock_start - snap_time).max(Duration::zero());
    let met = p3_met(downtime, data_loss, sys.tolerance);
    let margin = (sys.tolerance - downtime.max(data_loss)).num_seconds();
    state.standby_applying(&sys.name, &path, &snap)?;
    state.standby_applied(&sys.name, &snap, snap_time, now, rec.restore_ms.unwrap_or(0), rec.bytes)?;
    state.standby_set_serving(&sys.name, true)?;
    let id = state.switch_open(
        &sys.name,
        SwitchKind::Failover,
        run.incident,
        SwitchPhase::Verify,
        rec.started_at.unwrap_or(now),
    )?;
    state.switch_snapshot(id, &snap, snap_time)?;
    let hooks_ms: u64 = rec.hooks.iter().map(|h| h.duration_ms).sum();
    state.switch_times(id, rec.restore_ms, Some(hooks_ms))?;
    let (d, l) = (downtime.num_seconds(), data_loss.num_seconds());
    state.switch_finish(id, SwitchPhase::Done, now, Some(d), Some(l), Some(met), None)?;
    if let Some(inc) = run.incident {
        let ev = Event::FailedOver {
            system: sys.name.clone(),
            snapshot: snap,
            downtime_secs: d,
            data_loss_secs: l,
            tolerance_secs: sys.tolerance.num_seconds(),
            met,
        };
        state.append_event(inc, now, &ev)?;
    }
    Ok((Some(if met { Verdict::Met } else { Verdict::Missed }), Some(margin)))
}

/// What forecasts use for a system with a standby: its measured failovers (drills
/// and real ones), the medians of the data step and of the switch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasuredFailover {
    pub count: usize,
    pub apply_secs: f64,
    pub switch_secs: f64,
}

pub fn measured_failovers(state: &State, system: &str) -> Result<Option<MeasuredFailover>> {
    let done: Vec<_> = state
        .switches(Some(system))?
        .into_iter()
        .filter(|r| matches!(r.kind, SwitchKind::Failover | SwitchKind::Drill) && r.phase == SwitchPhase::Done)
        .collect();
    let secs = |v: Vec<u64>| crate::orchestrate::forecast::median(v.into_iter().map(|ms| ms as f64 / 1000.0).collect());
    let apply = secs(done.iter().filter_map(|r| r.apply_ms).collect());
    let switch = secs(done.iter().map(|r| r.switch_ms.unwrap_or(0)).collect());
    Ok(apply.map(|a| MeasuredFailover { count: done.len(), apply_secs: a, switch_secs: switch.unwrap_or(0.0) }))
}
