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
pub mod forecast;
pub mod gate;
pub mod hooks;
pub mod queue;
pub mod runlock;
#[cfg(test)]
mod start_tests;
#[cfg(test)]
mod tests;

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
use crate::state::recovery::{NewSystem, RunKind, RunOptions, RunStatus, SystemRecord, VerifyRecord};
use crate::state::State;
use deadline::{Alert, Verdict};
use hooks::{run_with_retries, HookOutcome, HookRunner, HookStage};
use kura_store::clock::Clock;
use kura_store::progress::Progress;
use kura_store::repo::snapshot::Snapshot;
use kura_store::repo::Repository;
use kura_store::restore::RestoreOptions;
use kura_store::types::FileId;
use queue::{Phase, Queue};

/// The newest snapshot of a system taken strictly before `before` (the moment of
/// compromise), or the newest of all. `list` is sorted oldest first.
pub fn choose_snapshot<'a>(
    list: &'a [(FileId, Snapshot)],
    source: &Source,
    before: Option<DateTime<Utc>>,
) -> Option<&'a (FileId, Snapshot)> {
    list.iter().rev().find(|(_, s)| {
        let mine = match source {
            Source::Tag(t) => s.has_tag(t),
            Source::HostPaths { host, paths } => {
                let mut a = s.paths.clone();
                let mut b = paths.clone();
                a.sort();
                b.sort();
                &s.host == host && a == b
            }
        };
        mine && before.is_none_or(|b| s.time < b)
    })
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
    repo: &Repository,
    plan: &Plan,
    kind: RunKind,
    incident: Option<i64>,
    clock_start: DateTime<Utc>,
    now: DateTime<Utc>,
    options: &RunOptions,
) -> Result<i64> {
    let snapshots = repo.snapshots()?;
    let sandbox = options.sandbox.as_ref().map(PathBuf::from);
    let systems: Vec<NewSystem> = crate::plan::order(plan)
        .flat()
        .map(|i| &plan.systems[i])
        .map(|s| {
            let chosen = choose_snapshot(&snapshots, &s.source, options.compromised_since);
            let error = chosen.is_none().then(|| match (&s.source, options.compromised_since) {
                (Source::Tag(t), Some(b)) => format!("no snapshot tagged {t} taken before the compromise ({b})"),
                (Source::Tag(t), None) => format!("no snapshot tagged {t} in the repository"),
                (Source::HostPaths { host, paths }, _) => {
                    format!(
                        "no snapshot of host {host} with paths {} (before the compromise, if set)",
                        paths.join(", ")
                    )
                }
            });
            NewSystem {
                name: s.name.clone(),
                priority: s.priority.get(),
                deadline_secs: s.deadline.map(|d| d.num_seconds()),
                snapshot: chosen.map(|(id, snap)| (id.to_hex(), snap.time)),
                bytes_total: chosen.and_then(|(_, snap)| snap.summary.as_ref()).map(|x| x.bytes_total).unwrap_or(0),
                target: target_for(s, sandbox.as_deref()).display().to_string(),
                error,
            }
        })
        .collect();
    let plan_path = plan.path.display().to_string();
    state.create_recovery_run(kind, incident, &plan_path, &plan.name, clock_start, now, options, &systems)
}

/// What the engine tells the outside world while it runs (the CLI prints it, the
/// daemon sends notifications). Every method has a do-nothing default.
pub trait Observer: Send + Sync {
    fn phase(&self, _system: &str, _phase: Phase) {}
    fn finished(&self, _record: &SystemRecord) {}
    fn alert(&self, _system: &str, _alert: Alert, _detail: &str) {}
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

enum Msg {
    Phase(usize, Phase, Sender<()>),
    Hooks(usize, Vec<HookOutcome>, Sender<()>),
    Restored {
        i: usize,
        bytes: u64,
        files: u64,
        ms: u64,
        verify: VerifyRecord,
        ack: Sender<()>,
    },
    /// The restore planned its work: bytes it will write (the pace's total), and when.
    Total(usize, u64, DateTime<Utc>),
    Progress(usize, u64),
    Finished(usize, std::result::Result<(), String>),
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
    let mut queue = Queue::new(plan, phases.clone(), run.options.parallel);
    let (tx, rx) = unbounded::<Msg>();
    let mut live: HashMap<usize, Live> = HashMap::new();
    let mut workers = Vec::new();

    // Resume the systems that were in the middle of something.
    for (i, p) in phases.iter().enumerate() {
        if p.is_active() {
            let rec = by_name[plan.systems[i].name.as_str()].clone();
            live.insert(i, Live::default());
            workers.push(spawn_worker(engine, plan, &run, i, *p, rec, drill, tx.clone()));
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
            workers.push(spawn_worker(engine, plan, &run, i, Phase::Pre, rec, drill, tx.clone()));
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
        Msg::Restored { i, bytes, files, ms, verify, ack } => {
            state.set_restored(run.id, &plan.systems[i].name, bytes, files, ms, &verify)?;
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
            let phase = if ok { Phase::Done } else { Phase::Failed };
            state.finish_system(
                run.id,
                &sys.name,
                phase,
                now,
                verdict,
                margin,
                result.as_ref().err().map(|s| s.as_str()),
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

/// Sends restore progress to the engine thread.
struct ChannelProgress {
    i: usize,
    tx: Sender<Msg>,
    clock: Arc<dyn Clock>,
    done: std::sync::atomic::AtomicU64,
}

impl Progress for ChannelProgress {
    fn set_total(&self, total: u64) {
        self.done.store(0, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(Msg::Total(self.i, total, self.clock.now()));
    }
    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        let _ = self.tx.send(Msg::Progress(self.i, done));
    }
}

struct Worker {
    i: usize,
    tx: Sender<Msg>,
}

impl Worker {
    /// Sends a state change and waits until the engine has committed it.
    fn commit(&self, make: impl FnOnce(Sender<()>) -> Msg) -> std::result::Result<(), String> {
        let (ack_tx, ack_rx): (Sender<()>, Receiver<()>) = bounded(1);
        self.tx.send(make(ack_tx)).map_err(|_| "the engine stopped".to_string())?;
        ack_rx.recv().map_err(|_| "the engine stopped before recording the change".to_string())
    }
    fn phase(&self, p: Phase) -> std::result::Result<(), String> {
        let i = self.i;
        self.commit(|ack| Msg::Phase(i, p, ack))
    }
    fn hooks(&self, h: &[HookOutcome]) -> std::result::Result<(), String> {
        let i = self.i;
        let h = h.to_vec();
        self.commit(|ack| Msg::Hooks(i, h, ack))
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn_worker(
    engine: &Engine,
    plan: &Plan,
    run: &crate::state::recovery::RunRecord,
    i: usize,
    from: Phase,
    rec: SystemRecord,
    drill: bool,
    tx: Sender<Msg>,
) -> std::thread::JoinHandle<()> {
    let sys = plan.systems[i].clone();
    let hook_env = plan.hook_env.clone();
    let repo = engine.repo.clone();
    let runner = engine.runner.clone();
    let threads = engine.restore_threads;
    let clock = engine.clock.clone();
    let run_id = run.id;
    let incident = run.incident;
    std::thread::Builder::new()
        .name(format!("recover-{}", sys.name))
        .spawn(move || {
            let w = Worker { i, tx: tx.clone() };
            let ctx = SystemJob {
                sys: &sys,
                rec: &rec,
                repo: &repo,
                runner: runner.as_ref(),
                hook_env: &hook_env,
                drill,
                run_id,
                incident,
                threads,
                clock,
            };
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.run(&w, from))).unwrap_or_else(|p| {
                    let msg =
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    Err(format!("internal error (panic): {}", msg.unwrap_or_default()))
                });
            let _ = tx.send(Msg::Finished(i, result));
        })
        .expect("spawning a recovery thread")
}

struct SystemJob<'a> {
    sys: &'a PlanSystem,
    rec: &'a SystemRecord,
    repo: &'a Arc<Repository>,
    runner: &'a dyn HookRunner,
    /// The plan's `hook_env`: names passed on from kura's environment.
    hook_env: &'a [String],
    drill: bool,
    run_id: i64,
    incident: Option<i64>,
    threads: Option<usize>,
    clock: Arc<dyn Clock>,
}

impl SystemJob<'_> {
    fn env(&self, stage: HookStage) -> Vec<(String, String)> {
        let mut env = vec![
            ("KURA_SYSTEM".to_string(), self.sys.name.clone()),
            ("KURA_PRIORITY".to_string(), self.sys.priority.to_string()),
            ("KURA_TARGET".to_string(), self.rec.target.clone().unwrap_or_default()),
            ("KURA_SNAPSHOT".to_string(), self.rec.snapshot.clone().unwrap_or_default()),
            ("KURA_DRILL".to_string(), if self.drill { "1" } else { "0" }.to_string()),
            ("KURA_RUN".to_string(), self.run_id.to_string()),
            ("KURA_PHASE".to_string(), stage.to_string()),
        ];
        if let Some(inc) = self.incident {
            env.push(("KURA_INCIDENT".to_string(), inc.to_string()));
        }
        env.extend(hooks::allowed_env(self.hook_env));
        env
    }

    fn hooks_stage(
        &self,
        w: &Worker,
        stage: HookStage,
        list: &[Hook],
        done: &mut Vec<HookOutcome>,
    ) -> std::result::Result<(), String> {
        for hook in list {
            if self.drill && !hook.drill {
                done.push(HookOutcome {
                    stage,
                    command: hook.command.clone(),
                    ok: true,
                    attempts: 0,
                    exit_code: None,
                    timed_out: false,
                    duration_ms: 0,
                    output: "not run: not marked safe for drills (drill = false)".into(),
                    skipped: true,
                });
                w.hooks(done)?;
                continue;
            }
            let o = run_with_retries(self.runner, stage, hook, &self.env(stage));
            let ok = o.ok;
            let why = if o.timed_out {
                format!("timed out after {:?}", hook.timeout)
            } else {
                format!("exit code {}", o.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()))
            };
            let attempts = o.attempts;
            let output = o.output.lines().last().unwrap_or("").to_string();
            done.push(o);
            w.hooks(done)?;
            if !ok {
                return Err(format!(
                    "{stage} hook `{}` failed ({why}, {attempts} attempt{}){}",
                    hook.command,
                    if attempts == 1 { "" } else { "s" },
                    if output.is_empty() { String::new() } else { format!(": {output}") }
                ));
            }
        }
        Ok(())
    }

    fn run(&self, w: &Worker, from: Phase) -> std::result::Result<(), String> {
        let mut done: Vec<HookOutcome> = self.rec.hooks.clone();
        if from <= Phase::Pre {
            done.retain(|h| h.stage != HookStage::Pre);
            self.hooks_stage(w, HookStage::Pre, &self.sys.hooks.pre, &mut done)?;
            w.phase(Phase::Restoring)?;
        }
        if from <= Phase::Restoring {
            self.restore(w)?;
            w.phase(Phase::Verifying)?;
        }
        if from <= Phase::Verifying {
            done.retain(|h| h.stage == HookStage::Pre);
            self.hooks_stage(w, HookStage::Verify, &self.sys.hooks.verify, &mut done)?;
            w.phase(Phase::Post)?;
        }
        done.retain(|h| h.stage != HookStage::Post);
        self.hooks_stage(w, HookStage::Post, &self.sys.hooks.post, &mut done)?;
        Ok(())
    }

    fn restore(&self, w: &Worker) -> std::result::Result<(), String> {
        let snap_hex = self.rec.snapshot.clone().ok_or("no snapshot was chosen for this system")?;
        let (id, snap) = self.repo.find_snapshot(&snap_hex).map_err(|e| format!("snapshot {snap_hex}: {e}"))?;
        let subpath = self.sys.subpath.clone().or_else(|| (snap.paths.len() == 1).then(|| snap.paths[0].clone()));
        let target = PathBuf::from(self.rec.target.clone().ok_or("no target recorded")?);
        let opts = RestoreOptions { target, subpath, includes: vec![], verify: true, threads: self.threads };
        let progress =
            ChannelProgress { i: w.i, tx: w.tx.clone(), clock: self.clock.clone(), done: Default::default() };
        let started = Instant::now();
        let sum =
            kura_store::restore::run(self.repo, &id, &snap, &opts, &progress).map_err(|e| format!("restore: {e}"))?;
        let ms = started.elapsed().as_millis() as u64;
        let failures = sum.verify_failures.len();
        let verify = VerifyRecord {
            ok: failures == 0,
            files_verified: sum.files_verified,
            failures: sum.verify_failures.iter().take(20).cloned().collect(),
        };
        let i = w.i;
        let bytes = sum.bytes_written;
        let files = sum.files_restored + sum.files_skipped;
        w.commit(|ack| Msg::Restored { i, bytes, files, ms, verify, ack })?;
        if let Some(d) = sum.damaged.first() {
            return Err(format!(
                "restore: {} file(s) not restored, their data is damaged in the repository, e.g. {} \
                 (blob {} in pack {}: {})",
                sum.damaged.len(),
                d.snapshot_path,
                d.blob,
                d.pack,
                d.reason
            ));
        }
        if failures > 0 {
            return Err(format!(
                "{failures} restored file(s) do not match the snapshot, e.g. {}",
                sum.verify_failures[0]
            ));
        }
        Ok(())
    }
}
