//! Runs a validated `Plan` for an incident (recovery) or a drill: one engine for both.
//!
//! `prepare` chooses a snapshot per system (the newest before the compromise, when
//! one is known) and stores the run with every system `waiting`. `execute` then
//! starts systems in the order `queue::Queue` gives, up to N at a time, each on its
//! own thread: pre hooks -> restore (verified against the snapshot's hashes) ->
//! verify hooks (retried) -> post hooks. Every phase change is committed to the
//! state database before the worker acts on it (the worker waits for the commit),
//! so after a `kill -9` the same command resumes: finished systems stay finished,
//! a half-restored system continues and skips the files already in place.

pub mod deadline;
pub mod drill;
pub mod executor;
pub mod forecast;
pub mod gate;
pub mod hooks;
pub mod queue;
pub mod runlock;
#[cfg(test)]
mod start_tests;
#[cfg(test)]
mod tests;
pub mod waiter;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::incident::Event;
use crate::plan::{Hook, Plan, PlanSystem, Source};
use crate::state::recovery::{NewSystem, Restored, RunKind, RunOptions, RunStatus, SystemRecord, VerifyRecord};
use crate::state::State;
use deadline::{Alert, Verdict};
use hooks::{run_with_retries, HookOutcome, HookRunner, HookStage};
use kura_store::clock::Clock;
use kura_store::progress::Progress;
use kura_store::repo::snapshot::{self, Snapshot};
use kura_store::repo::Repository;
use kura_store::restore::RestoreOptions;
use kura_store::types::FileId;
use queue::{Phase, Queue};
use worker::{spawn_worker, Msg};

/// The newest snapshot of a system taken strictly before `before` (the moment of
/// compromise), or the newest of all. `list` is sorted oldest first.
pub fn choose_snapshot<'a>(
    list: &'a [(FileId, Snapshot)],
    source: &Source,
    before: Option<DateTime<Utc>>,
) -> Option<&'a (FileId, Snapshot)> {
    list.iter().rev().find(|(_, s)| source_matches(source, s) && before.is_none_or(|b| s.time < b))
}

/// Whether a snapshot is one of a plan system's.
fn source_matches(source: &Source, s: &Snapshot) -> bool {
    match source {
        Source::Tag(t) => s.has_tag(t),
        Source::HostPaths { host, paths } => &s.host == host && snapshot::same_paths(&s.paths, paths),
    }
}

/// Where a system is restored: its plan target, or `sandbox/NAME` in a drill.
pub fn target_for(sys: &PlanSystem, sandbox: Option<&Path>) -> PathBuf {
    match sandbox {
        Some(s) => s.join(&sys.name),
        None => sys.target.clone(),
    }
}

/// Chooses the snapshots and stores a new run; returns its id. The systems are
/// stored in the plan's execution order (`plan::order`), the order in which the
/// run's systems are listed everywhere (status, results, reports).
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    state: &mut State,
    snaps: &dyn executor::SnapshotSource,
    plan: &Plan,
    kind: RunKind,
    incident: Option<i64>,
    clock_start: DateTime<Utc>,
    now: DateTime<Utc>,
    options: &RunOptions,
) -> Result<i64> {
    // One listing per repository: the main one, and each agent host's.
    let mut lists: HashMap<Option<String>, Vec<(FileId, Snapshot)>> = HashMap::new();
    for s in &plan.systems {
        if !lists.contains_key(&s.agent) {
            lists.insert(s.agent.clone(), snaps.snapshots_of(s.agent.as_deref())?);
        }
    }
    let sandbox = options.sandbox.as_ref().map(PathBuf::from);
    // A recovery whose incident names no moment of compromise restores each
    // system's clean point (crate::detect): the choice goes on the timeline.
    // One chooser per repository (detection is kept per repository).
    let mut choosers: HashMap<Option<String>, crate::detect::RecoveryChooser> = HashMap::new();
    if kind == RunKind::Recovery && options.compromised_since.is_none() {
        for (host, list) in &lists {
            if let Some(id) = snaps.repo_id_of(host.as_deref()) {
                choosers.insert(host.clone(), crate::detect::RecoveryChooser::new(state, &id, list)?);
            }
        }
    }
    let mut notes: Vec<String> = Vec::new();
    // A recovery fails a system over to its standby when the standby can take over.
    let mut fallbacks = Vec::new();
    let mut failover = HashMap::new();
    for s in plan.systems.iter().filter(|s| s.standby.is_some() && kind == RunKind::Recovery) {
        let (ok, why) = crate::standby::can_take_over(state, s)?;
        failover.insert(s.name.clone(), ok);
        if !ok {
            fallbacks.push(format!("{}: no healthy standby ({why}): restoring it instead", s.name));
        }
    }
    let systems: Vec<NewSystem> = crate::plan::order(plan)
        .flat()
        .map(|i| &plan.systems[i])
        .map(|s| {
            let snapshots = &lists[&s.agent];
            let pinned = s
                .snapshot
                .as_deref()
                .map(|q| snapshot::select(snapshots, q).ok().filter(|(_, snap)| source_matches(&s.source, snap)));
            if let Some(Some((id, _))) = &pinned {
                notes.push(format!("system {}: restoring snapshot {}, named in the plan", s.name, id.short()));
            }
            let chosen = match (choosers.get(&s.agent), pinned) {
                (_, Some(p)) => p,
                (Some(c), None) => {
                    let mine = |snap: &Snapshot| source_matches(&s.source, snap);
                    let (chosen, note) = c.choose(snapshots, &mine, &s.name);
                    notes.extend(note);
                    chosen
                }
                (None, None) => choose_snapshot(snapshots, &s.source, options.compromised_since),
            };
            let error = chosen.is_none().then(|| match (&s.source, options.compromised_since) {
                _ if s.snapshot.is_some() => format!(
                    "snapshot {} named in the plan is not one of this system's snapshots (or not unique)",
                    s.snapshot.as_deref().unwrap_or_default()
                ),
                (Source::Tag(t), Some(b)) => format!("no snapshot tagged {t} taken before the compromise ({b})"),
                (Source::Tag(t), None) => format!("no snapshot tagged {t} in the repository"),
                (Source::HostPaths { host, paths }, _) => {
                    format!(
                        "no snapshot of host {host} with paths {} (before the compromise, if set)",
                        paths.join(", ")
                    )
                }
            });
            let fails_over = failover.get(&s.name).copied().unwrap_or(false);
            NewSystem {
                name: s.name.clone(),
                priority: s.priority.get(),
                deadline_secs: if fails_over {
                    Some(s.tolerance.num_seconds())
                } else {
                    s.deadline.map(|d| d.num_seconds())
                },
                snapshot: chosen.map(|(id, snap)| (id.to_hex(), snap.time)),
                bytes_total: chosen.and_then(|(_, snap)| snap.summary.as_ref()).map(|x| x.bytes_total).unwrap_or(0),
                target: match (&s.standby, fails_over) {
                    (Some(sb), true) => sb.path.display().to_string(),
                    _ => target_for(s, sandbox.as_deref()).display().to_string(),
                },
                error,
                failover: fails_over,
            }
        })
        .collect();
    let plan_path = plan.path.display().to_string();
    let run = state.create_recovery_run(kind, incident, &plan_path, &plan.name, clock_start, now, options, &systems)?;
    if let Some(i) = incident {
        for text in notes {
            state.append_event(i, now, &Event::Note { text })?;
        }
    }
    // A standby about to be rolled to the run's snapshot holds no snapshot completely until it is done.
    for s in systems.iter().filter(|s| s.failover) {
        state.standby_applying(&s.name, &s.target, &s.snapshot.as_ref().map(|x| x.0.clone()).unwrap_or_default())?;
    }
    for text in fallbacks.into_iter().filter(|_| incident.is_some()) {
        state.append_event(incident.unwrap_or_default(), now, &Event::Note { text })?;
    }
    Ok(run)
}

/// What the engine tells the outside world while it runs (the CLI prints it, the
/// daemon sends notifications). Every method has a do-nothing default.
pub trait Observer: Send + Sync {
    fn phase(&self, _system: &str, _phase: Phase) {}
    fn finished(&self, _record: &SystemRecord) {}
    fn alert(&self, _system: &str, _alert: Alert, _detail: &str) {}
    /// Secure restore quarantined files of a system (`on_scan_hit = "quarantine"`).
    fn quarantined(&self, _system: &str, _q: &crate::detect::quarantine::Quarantined) {}
}

pub struct Quiet;
impl Observer for Quiet {}

pub struct Engine {
    pub repo: Arc<Repository>,
    pub clock: Arc<dyn Clock>,
    pub runner: Arc<dyn HookRunner>,
    pub observer: Arc<dyn Observer>,
    /// Restore threads per system (None: the restore's default).
    pub restore_threads: Option<usize>,
    /// Systems on agent hosts run there (`None`: no `[fleet]`, all run here).
    pub fleet: Option<executor::FleetExecutor>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunOutcome {
    pub run: i64,
    pub status: RunStatus,
    pub done: u32,
    pub failed: u32,
    pub skipped: u32,
    pub missed: u32,
}

/// A running system's restore, for its pace: set when the restore has planned its
/// work (pre hooks and a resumed run's finished part do not count).
#[derive(Default)]
struct Live {
    /// When the restore plan's total arrived (engine clock), and that total.
    restore: Option<(DateTime<Utc>, u64)>,
    done: u64,
    last_saved: Option<Instant>,
}

/// Runs (or resumes) a stored run to its end.
pub fn execute(state: &mut State, engine: &Engine, plan: &Plan, run_id: i64) -> Result<RunOutcome> {
    let run = state.recovery_run(run_id)?;
    let records = state.run_systems(run_id)?;
    let by_name: HashMap<&str, &SystemRecord> = records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut phases = Vec::with_capacity(plan.systems.len());
    for s in &plan.systems {
        let r = by_name.get(s.name.as_str()).ok_or_else(|| {
            Error::invalid(
                plan.path.display().to_string(),
                format!("system {} is not part of run {run_id}: the plan changed since the run started", s.name),
            )
        })?;
        phases.push(r.state);
    }
    if records.len() != plan.systems.len() {
        return Err(Error::invalid(
            plan.path.display().to_string(),
            format!(
                "run {run_id} has {} systems but the plan has {}: the plan changed",
                records.len(),
                plan.systems.len()
            ),
        ));
    }
    let drill = run.kind == RunKind::Drill;
    let patched = crate::standby::failover_deadlines(plan, &records);
    let plan = patched.as_ref().unwrap_or(plan);
    // The standbys this run fails over are its own for its whole length: a backup's
    // keep-current waits, then finds them serving (docs/STANDBY.md).
    let what = format!("a failover in recovery run {run_id}");
    let _standbys = records
        .iter()
        .filter(|r| r.failover)
        .map(|r| crate::standby::lock::StandbyLock::acquire(state.path(), &r.name, &what))
        .collect::<Result<Vec<_>>>()?;
    let mut queue = Queue::new(plan, phases.clone(), run.options.parallel);
    let (tx, rx) = unbounded::<Msg>();
    let mut live: HashMap<usize, Live> = HashMap::new();
    let mut workers = Vec::new();

    // Resume the systems that were in the middle of something.
    for (i, p) in phases.iter().enumerate() {
        if p.is_active() {
            let rec = by_name[plan.systems[i].name.as_str()].clone();
            live.insert(i, Live::default());
            workers.push(spawn_worker(state, engine, plan, &run, i, *p, rec, drill, tx.clone())?);
        }
    }

    loop {
        for i in queue.ready() {
            let name = &plan.systems[i].name;
            state.set_phase(run_id, name, Phase::Pre, engine.clock.now())?;
            queue.set_phase(i, Phase::Pre);
            engine.observer.phase(name, Phase::Pre);
            let rec = state.run_system(run_id, name)?;
            live.insert(i, Live::default());
            workers.push(spawn_worker(state, engine, plan, &run, i, Phase::Pre, rec, drill, tx.clone())?);
        }
        for (i, reason) in queue.halt_leftovers() {
            skip(state, engine, &run, plan, i, &reason)?;
        }
        if queue.is_complete() {
            break;
        }
        if queue.running() == 0 && queue.ready().is_empty() {
            // Nothing runs and nothing can start: only possible if the stored state
            // is inconsistent with the plan. Record it rather than wait forever.
            for i in 0..plan.systems.len() {
                if queue.phase(i) == Phase::Waiting {
                    queue.set_phase(i, Phase::Skipped);
                    skip(state, engine, &run, plan, i, "could not be started: its dependencies did not finish")?;
                }
            }
            break;
        }
        match rx.recv_timeout(StdDuration::from_millis(500)) {
            Ok(msg) => handle(state, engine, &run, plan, &mut queue, &mut live, msg)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("the engine holds a sender"),
        }
        check_deadlines(state, engine, &run, plan, &queue, &live)?;
    }
    for w in workers {
        let _ = w.join();
    }
    let records = state.run_systems(run_id)?;
    let count = |p: Phase| records.iter().filter(|r| r.state == p).count() as u32;
    let out = RunOutcome {
        run: run_id,
        status: if count(Phase::Done) as usize == records.len() { RunStatus::Done } else { RunStatus::Failed },
        done: count(Phase::Done),
        failed: count(Phase::Failed),
        skipped: count(Phase::Skipped),
        missed: records.iter().filter(|r| r.verdict == Some(Verdict::Missed)).count() as u32,
    };
    state.finish_recovery_run(run_id, out.status, engine.clock.now())?;
    if let Some(inc) = run.incident {
        let ev = Event::RecoveryFinished {
            run: run_id,
            status: out.status.to_string(),
            done: out.done,
            failed: out.failed,
            skipped: out.skipped,
            missed: out.missed,
        };
        state.append_event(inc, engine.clock.now(), &ev)?;
    }
    Ok(out)
}

fn handle(
    state: &mut State,
    engine: &Engine,
    run: &crate::state::recovery::RunRecord,
    plan: &Plan,
    queue: &mut Queue<'_>,
    live: &mut HashMap<usize, Live>,
    msg: Msg,
) -> Result<()> {
    let now = engine.clock.now();
    match msg {
        Msg::Phase(i, p, ack) => {
            state.set_phase(run.id, &plan.systems[i].name, p, now)?;
            queue.set_phase(i, p);
            engine.observer.phase(&plan.systems[i].name, p);
            let _ = ack.send(());
        }
        Msg::Hooks(i, h, ack) => {
            state.set_hooks(run.id, &plan.systems[i].name, &h)?;
            let _ = ack.send(());
        }
        Msg::Restored { i, figures, verify, ack } => {
            state.set_restored(run.id, &plan.systems[i].name, &figures, &verify)?;
            let _ = ack.send(());
        }
        Msg::Quarantined(i, q, ack) => {
            let name = &plan.systems[i].name;
            state.set_quarantined(run.id, name, &q)?;
            if let Some(inc) = run.incident {
                let text = format!("{name} (recovery run {}): {}", run.id, q.summary());
                state.append_event(inc, now, &Event::Note { text })?;
            }
            engine.observer.quarantined(name, &q);
            let _ = ack.send(());
        }
        Msg::Total(i, total, began) => {
            if let Some(l) = live.get_mut(&i) {
                *l = Live { restore: Some((began, total)), done: 0, last_saved: Some(Instant::now()) };
                state.set_progress(run.id, &plan.systems[i].name, 0, total)?;
            }
        }
        Msg::Progress(i, done) => {
            if let Some(l) = live.get_mut(&i) {
                l.done = done;
                let total = l.restore.map_or(0, |r| r.1);
                if l.last_saved.is_none_or(|t| t.elapsed() >= StdDuration::from_secs(1)) {
                    state.set_progress(run.id, &plan.systems[i].name, done, total)?;
                    l.last_saved = Some(Instant::now());
                }
            }
        }
        Msg::Finished(i, result) => {
            live.remove(&i);
            let sys = &plan.systems[i];
            let ok = result.is_ok();
            let (verdict, margin) = if ok {
                let (v, m) = deadline::verdict(run.clock_start, sys.deadline, now);
                (Some(v), m)
            } else {
                (None, None)
            };
            let rec = state.run_system(run.id, &sys.name)?;
            let (verdict, margin) = match rec.failover {
                true => crate::standby::record_engine_failover(state, run, sys, &rec, ok, now, (verdict, margin))?,
                false => (verdict, margin),
            };
            let phase = if ok { Phase::Done } else { Phase::Failed };
            state.finish_system(
                run.id,
                &sys.name,
                phase,
                now,
                verdict,
                margin,
                result.as_ref().err().map(|e| e.to_string()).as_deref(),
            )?;
            record_finished(state, engine, run, &sys.name)?;
            for (j, reason) in queue.finish(i, ok) {
                skip(state, engine, run, plan, j, &reason)?;
            }
        }
    }
    Ok(())
}

fn skip(
    state: &mut State,
    engine: &Engine,
    run: &crate::state::recovery::RunRecord,
    plan: &Plan,
    i: usize,
    reason: &str,
) -> Result<()> {
    let name = &plan.systems[i].name;
    state.finish_system(run.id, name, Phase::Skipped, engine.clock.now(), None, None, Some(reason))?;
    record_finished(state, engine, run, name)
}

/// Tells the observer and, for a recovery, appends the result to the incident timeline.
fn record_finished(
    state: &mut State,
    engine: &Engine,
    run: &crate::state::recovery::RunRecord,
    name: &str,
) -> Result<()> {
    let rec = state.run_system(run.id, name)?;
    engine.observer.finished(&rec);
    if let Some(inc) = run.incident {
        let ev = Event::SystemFinished {
            run: run.id,
            system: rec.name.clone(),
            priority: rec.priority,
            state: rec.state.to_string(),
            snapshot: rec.snapshot.clone(),
            deadline_secs: rec.deadline_secs,
            achieved_secs: rec
                .ended_at
                .filter(|_| rec.state == Phase::Done)
                .map(|e| (e - run.clock_start).num_seconds()),
            met: match rec.verdict {
                Some(Verdict::Met) => Some(true),
                Some(Verdict::Missed) => Some(false),
                _ => None,
            },
            margin_secs: rec.margin_secs,
            error: rec.error.clone(),
        };
        state.append_event(inc, engine.clock.now(), &ev)?;
    }
    Ok(())
}

/// At-risk and breach alerts, each sent once per system and level.
fn check_deadlines(
    state: &mut State,
    engine: &Engine,
    run: &crate::state::recovery::RunRecord,
    plan: &Plan,
    queue: &Queue<'_>,
    live: &HashMap<usize, Live>,
) -> Result<()> {
    let now = engine.clock.now();
    for (i, sys) in plan.systems.iter().enumerate() {
        if queue.phase(i).is_terminal() {
            continue;
        }
        let remaining = live
            .get(&i)
            .and_then(|l| l.restore.and_then(|(began, total)| deadline::projected(l.done, total, now - began)));
        let Some(alert) = deadline::alert(now, run.clock_start, sys.deadline, remaining) else { continue };
        // Read only when an alert is due: the common tick touches no row.
        let prev = state.run_system(run.id, &sys.name)?.alert;
        if prev == Some(alert) || (prev == Some(Alert::Breach) && alert == Alert::AtRisk) {
            continue;
        }
        let due = run.clock_start + sys.deadline.unwrap_or_default();
        let detail = match alert {
            Alert::Breach => format!("deadline {} passed and the system is not back", due.format("%Y-%m-%d %H:%M UTC")),
            Alert::AtRisk => {
                format!("at the current pace it will be back after its deadline {}", due.format("%Y-%m-%d %H:%M UTC"))
            }
        };
        state.set_alert(run.id, &sys.name, alert)?;
        engine.observer.alert(&sys.name, alert, &detail);
        if let Some(inc) = run.incident {
            let ev = Event::DeadlineAlert { run: run.id, system: sys.name.clone(), level: alert.to_string(), detail };
            state.append_event(inc, now, &ev)?;
        }
    }
    Ok(())
}
