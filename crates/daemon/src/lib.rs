//! The daemon: runs the config's jobs on their cron schedules, records every run in
//! the state database, watches each system's recovery point, notifies, and answers
//! the CLI on a unix socket (docs/DAEMON.md).
//!
//! * Scheduling decisions are pure (`kura_recovery::schedule`); time comes from a `Clock`.
//! * Jobs run on blocking threads (`spawn_blocking`) through the library; a job that
//!   fails or panics is recorded as `failed` and the scheduler goes on.
//! * No overlap: a job whose slot comes while its previous run still runs is
//!   deferred; when the run ends it runs once for the latest slot that passed.
//! * Per repository, backups, check, replicate and drill run side by side; prune runs
//!   alone (a per-repository read/write gate; see `JobKind::access`).
//! * SIGTERM/SIGINT or `kura daemon stop`: no new jobs; running ones get the shutdown
//!   timeout to finish; those still running are recorded `interrupted`. A scheduled
//!   slot is remembered as done only when its run ends, so an interrupted slot is
//!   made up on the next start (catch-up).
//! * SIGHUP reloads the config; an invalid new config is logged and the old one kept.

pub mod api;
pub mod jobs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

pub use api::{default_socket, Request, Response};
pub use jobs::{Access, Executor, JobKind, JobProgress, JobSpec, LibraryExecutor, RunOutput, RunRequest};
use kura_recovery::config::{Config, Problems};
use kura_recovery::error::Result;
use kura_recovery::notify::{Event, EventKind};
use kura_recovery::schedule::{self, Decision, LateTracker, Transition, Trigger};
use kura_recovery::state::jobs::{JobRun, Outcome, RunEnd, RunFilter};
use kura_recovery::state::State;
use kura_store::clock::Clock;

/// Reads a config file (the CLI passes `config::load`); used again on SIGHUP.
pub type ConfigLoader = Arc<dyn Fn(&Path) -> std::result::Result<Config, Problems> + Send + Sync>;

pub struct Options {
    pub config: Config,
    pub loader: ConfigLoader,
    pub state: PathBuf,
    pub socket: PathBuf,
    /// How long running jobs may take to finish after SIGTERM.
    pub shutdown_timeout: StdDuration,
    pub clock: Arc<dyn Clock>,
    pub executor: Arc<dyn Executor>,
}

/// A job that was started and has not ended.
struct Active {
    spec: JobSpec,
    trigger: Trigger,
    /// Set once it got past the repository gate and was recorded.
    run: Option<i64>,
    queued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    progress: Arc<JobProgress>,
}

pub struct Daemon {
    config: RwLock<Arc<Config>>,
    loader: ConfigLoader,
    state: Mutex<State>,
    state_path: PathBuf,
    socket: PathBuf,
    clock: Arc<dyn Clock>,
    executor: Arc<dyn Executor>,
    shutdown_timeout: StdDuration,
    started_at: DateTime<Utc>,
    active: Mutex<HashMap<String, Active>>,
    /// Per repository location: backups and readers share, prune is exclusive.
    gates: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
    /// When the daemon started watching each job / system (start or reload).
    watching: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The slot each job last ran (or is running) for.
    last_slot: Mutex<HashMap<String, Option<DateTime<Utc>>>>,
    late: Mutex<LateTracker>,
    wake: tokio::sync::Notify,
    stop_tx: watch::Sender<bool>,
    stopping: AtomicBool,
}

fn log_err<T>(what: &str, r: Result<T>) -> Option<T> {
    r.map_err(|e| tracing::error!(error = %e, "{what}")).ok()
}

impl Daemon {
    /// Opens the state database and marks runs left `running` by a daemon that was
    /// killed as `interrupted`.
    pub fn new(o: Options) -> Result<Arc<Daemon>> {
        let state = State::open(&o.state)?;
        let now = o.clock.now();
        let n = state.mark_interrupted(now, "the daemon stopped before the run ended (killed or crashed)", None)?;
        if n > 0 {
            tracing::warn!(runs = n, "marked runs left running by a previous daemon as interrupted");
        }
        let (stop_tx, _) = watch::channel(false);
        Ok(Arc::new(Daemon {
            config: RwLock::new(Arc::new(o.config)),
            loader: o.loader,
            state: Mutex::new(state),
            state_path: o.state,
            socket: o.socket,
            clock: o.clock,
            executor: o.executor,
            shutdown_timeout: o.shutdown_timeout,
            started_at: now,
            active: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            watching: Mutex::new(HashMap::new()),
            last_slot: Mutex::new(HashMap::new()),
            late: Mutex::new(LateTracker::default()),
            wake: tokio::sync::Notify::new(),
            stop_tx,
            stopping: AtomicBool::new(false),
        }))
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap().clone()
    }

    /// Asks the daemon to stop (as SIGTERM does).
    pub fn request_stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            tracing::info!("stopping: no new jobs; waiting for running ones");
        }
        self.stop_tx.send_replace(true);
        self.wake.notify_waiters();
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Resolves when a stop was requested.
    pub async fn stopping(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Reloads the config from its file; on problems the old one stays.
    pub fn reload(&self) -> std::result::Result<(), Problems> {
        let path = self.config().path.clone();
        let cfg = (self.loader)(&path)?;
        let names: Vec<&str> = cfg.systems.iter().map(|s| s.name.as_str()).collect();
        self.late.lock().unwrap().retain(&names);
        *self.config.write().unwrap() = Arc::new(cfg);
        tracing::info!(config = %path.display(), "config reloaded");
        self.wake.notify_waiters();
        Ok(())
    }

    fn watching_since(&self, key: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        *self.watching.lock().unwrap().entry(key.to_string()).or_insert(now)
    }

    /// The cached last slot of a job, read from the state on a miss. Never holds the
    /// cache's lock while it takes the state's: `status` takes them the other way round.
    fn last_slot(&self, key: &str) -> Option<DateTime<Utc>> {
        if let Some(v) = self.last_slot.lock().unwrap().get(key) {
            return *v;
        }
        let v = log_err("reading schedule state", self.state.lock().unwrap().schedule_state(key))
            .flatten()
            .and_then(|s| s.last_slot);
        *self.last_slot.lock().unwrap().entry(key.to_string()).or_insert(v)
    }

    fn gate(&self, location: &str) -> Arc<tokio::sync::RwLock<()>> {
        self.gates.lock().unwrap().entry(location.to_string()).or_default().clone()
    }

    /// One pass of the scheduler: starts due jobs, watches recovery points. Returns
    /// when the next slot is due.
    pub fn tick(self: &Arc<Self>) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let cfg = self.config();
        let mut next: Option<DateTime<Utc>> = None;
        if !self.is_stopping() {
            for (spec, sched) in jobs::jobs_of(&cfg) {
                let Some(sched) = sched else { continue };
                let since = self.watching_since(&spec.key, now);
                if self.active.lock().unwrap().contains_key(&spec.key) {
                    // Deferred: its slots are made up (once) when the current run ends.
                    continue;
                }
                let last = self.last_slot(&spec.key);
                match schedule::decide(&sched.cron, last, since, cfg.catch_up, now, &chrono::Local) {
                    Decision::Run { slot, trigger, missed } => {
                        if trigger == Trigger::CatchUp {
                            tracing::info!(job = %spec.key, missed, "catching up once for slots missed while the daemon was down");
                        }
                        let detail = serde_json::json!({ "slot": slot, "missed_slots": missed });
                        if self.dispatch(spec.clone(), trigger, Some(slot), detail, None).is_ok() {
                            self.last_slot.lock().unwrap().insert(spec.key.clone(), Some(slot));
                        }
                        let n = schedule::next_slot(&sched.cron, now, &chrono::Local);
                        next = min_opt(next, n);
                    }
                    Decision::Skip { slot, missed } => {
                        tracing::info!(job = %spec.key, missed, "skipping slots missed while the daemon was down (catch_up = skip)");
                        log_err(
                            "saving schedule state",
                            self.state.lock().unwrap().set_schedule_state(&spec.key, slot, None),
                        );
                        self.last_slot.lock().unwrap().insert(spec.key.clone(), Some(slot));
                        next = min_opt(next, schedule::next_slot(&sched.cron, now, &chrono::Local));
                    }
                    Decision::Wait { next: n } => next = min_opt(next, n),
                }
            }
        }
        self.watch_rpo(&cfg, now);
        next
    }

    /// The RPO watch: notifies when a system becomes late (once per transition).
    fn watch_rpo(self: &Arc<Self>, cfg: &Config, now: DateTime<Utc>) {
        for s in &cfg.systems {
            let since = self.watching_since(&format!("rpo:{}", s.name), now);
            let max = cfg.max_backup_age[s.priority.get() as usize];
            let last = log_err("reading job runs", self.state.lock().unwrap().last_good_backup(&s.name)).flatten();
            let last_at = last.as_ref().and_then(|r| r.ended_at);
            let r = schedule::rpo(last_at, max, since, now);
            match self.late.lock().unwrap().update(&s.name, r.late) {
                Some(Transition::BecameLate) => {
                    let age = last_at.map(|t| now - t);
                    let msg = match age {
                        Some(a) => format!(
                            "system {} (priority {}) is late: its last good backup is {} old, {} allowed",
                            s.name,
                            s.priority,
                            human_duration(a),
                            human_duration(max.unwrap_or_default())
                        ),
                        None => format!(
                            "system {} (priority {}) is late: no good backup yet, {} allowed",
                            s.name,
                            s.priority,
                            human_duration(max.unwrap_or_default())
                        ),
                    };
                    tracing::warn!(system = %s.name, "{msg}");
                    let mut ev = Event::new(EventKind::SystemLate, now, msg);
                    ev.system = Some(s.name.clone());
                    ev.priority = Some(s.priority.get());
                    ev.last_backup = last_at;
                    ev.age_secs = age.map(|a| a.num_seconds());
                    ev.max_age_secs = max.map(|m| m.num_seconds());
                    self.notify(cfg, ev);
                }
                Some(Transition::BackOnTime) => {
                    tracing::info!(system = %s.name, "system is back within its allowed backup age")
                }
                None => {}
            }
        }
    }

    fn notify(&self, cfg: &Config, ev: Event) {
        let n = cfg.notify.clone();
        if n.webhook.is_none() && n.command.is_none() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            for f in kura_recovery::notify::send(&n, &ev) {
                tracing::warn!(event = ev.event.as_str(), "notification not delivered: {f}");
            }
        });
    }

    /// Starts a run of `spec` unless one is running. The receiver gets the run when it
    /// ends (or an error if it never started).
    pub fn dispatch(
        self: &Arc<Self>,
        spec: JobSpec,
        trigger: Trigger,
        slot: Option<DateTime<Utc>>,
        detail: serde_json::Value,
        started: Option<oneshot::Sender<std::result::Result<i64, String>>>,
    ) -> std::result::Result<oneshot::Receiver<std::result::Result<JobRun, String>>, String> {
        if self.is_stopping() {
            return Err("the daemon is shutting down".into());
        }
        {
            let mut active = self.active.lock().unwrap();
            if let Some(a) = active.get(&spec.key) {
                return Err(match a.run {
                    Some(id) => format!("{} is already running (run {id})", spec.key),
                    None => format!("{} is already queued", spec.key),
                });
            }
            active.insert(
                spec.key.clone(),
                Active {
                    spec: spec.clone(),
                    trigger,
                    run: None,
                    queued_at: self.clock.now(),
                    started_at: None,
                    progress: Arc::new(JobProgress::default()),
                },
            );
        }
        let (tx, rx) = oneshot::channel();
        let me = self.clone();
        tokio::spawn(async move {
            let key = spec.key.clone();
            let res = me.run_job(spec, trigger, slot, detail, started).await;
            me.active.lock().unwrap().remove(&key);
            me.wake.notify_waiters();
            let _ = tx.send(res);
        });
        Ok(rx)
    }

    async fn run_job(
        self: &Arc<Self>,
        spec: JobSpec,
        trigger: Trigger,
        slot: Option<DateTime<Utc>>,
        mut detail: serde_json::Value,
        started: Option<oneshot::Sender<std::result::Result<i64, String>>>,
    ) -> std::result::Result<JobRun, String> {
        let cfg = self.config();
        let gate = self.gate(&cfg.repository.location);
        // Held until the run ends: shared for most jobs, exclusive for prune.
        let _held = tokio::select! {
            g = async {
                match spec.kind.access() {
                    Access::Shared => (Some(gate.read_owned().await), None),
                    Access::Exclusive => (None, Some(gate.write_owned().await)),
                }
            } => g,
            _ = self.stopping() => {
                let e = "the daemon stopped before the job could start".to_string();
                if let Some(s) = started { let _ = s.send(Err(e.clone())); }
                return Err(e);
            }
        };
        // The config may have been reloaded while waiting.
        let cfg = self.config();
        let check_part = match (spec.kind, &cfg.jobs.check) {
            (JobKind::Check, Some(c)) => Some(self.next_check_part(c.read_data_subset)),
            _ => None,
        };
        if let (Some((n, m)), Some(obj)) = (check_part, detail.as_object_mut()) {
            obj.insert("part".into(), n.into());
            obj.insert("of".into(), m.into());
        }
        let now = self.clock.now();
        let id = {
            let st = self.state.lock().unwrap();
            st.start_run(spec.kind.as_str(), spec.system.as_deref(), trigger, now).map_err(|e| e.to_string())
        };
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(job = %spec.key, error = %e, "cannot record the run; not starting it");
                if let Some(s) = started {
                    let _ = s.send(Err(e.clone()));
                }
                return Err(e);
            }
        };
        let progress = {
            let mut active = self.active.lock().unwrap();
            let a = active.get_mut(&spec.key).expect("dispatched jobs are active");
            a.run = Some(id);
            a.started_at = Some(now);
            a.progress.clone()
        };
        if let Some(s) = started {
            let _ = s.send(Ok(id));
        }
        tracing::info!(job = %spec.key, run = id, trigger = trigger.as_str(), "job started");
        let exec = self.executor.clone();
        let req = RunRequest { spec: spec.clone(), check_part };
        let cfg2 = cfg.clone();
        let span_key = spec.key.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _span = tracing::info_span!("job", job = %span_key, run = id).entered();
            exec.execute(&cfg2, &req, &progress)
        })
        .await;
        let end = match joined {
            Ok(Ok(out)) => {
                if let (Some(obj), serde_json::Value::Object(extra)) = (detail.as_object_mut(), out.detail) {
                    obj.extend(extra);
                }
                RunEnd {
                    outcome: out.outcome.unwrap_or(Outcome::Ok),
                    bytes: out.bytes,
                    snapshot: out.snapshot,
                    error: out.error,
                    detail: Some(detail),
                }
            }
            Ok(Err(e)) => RunEnd {
                outcome: Outcome::Failed,
                bytes: None,
                snapshot: None,
                error: Some(e.to_string()),
                detail: Some(detail),
            },
            Err(je) => {
                let msg = if je.is_panic() {
                    let p = je.into_panic();
                    let text = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    format!("the job panicked: {text}")
                } else {
                    "the job was cancelled".to_string()
                };
                RunEnd { outcome: Outcome::Failed, bytes: None, snapshot: None, error: Some(msg), detail: Some(detail) }
            }
        };
        let ended = self.clock.now();
        let run = {
            let st = self.state.lock().unwrap();
            log_err("recording the end of a run", st.finish_run(id, ended, &end));
            if let Some(slot) = slot {
                log_err("saving schedule state", st.set_schedule_state(&spec.key, slot, Some(now)));
            }
            st.run(id).ok().flatten()
        };
        match end.outcome {
            Outcome::Failed => {
                let err = end.error.clone().unwrap_or_default();
                tracing::error!(job = %spec.key, run = id, error = %err, "job failed");
                let mut ev = Event::new(EventKind::JobFailed, ended, format!("{} failed: {err}", spec.key));
                ev.job = Some(spec.kind.as_str().to_string());
                ev.system = spec.system.clone();
                ev.priority = spec.system.as_deref().and_then(|s| cfg.system(s)).map(|s| s.priority.get());
                ev.run = Some(id);
                ev.error = Some(err);
                self.notify(&cfg, ev);
            }
            o => tracing::info!(job = %spec.key, run = id, outcome = o.as_str(), bytes = end.bytes, "job ended"),
        }
        run.ok_or_else(|| format!("run {id} is missing from the state database"))
    }

    /// The next part for a rotating check: the one after the last clean check's part.
    fn next_check_part(&self, of: u32) -> (u32, u32) {
        let of = of.max(1);
        let last =
            log_err("reading job runs", self.state.lock().unwrap().last_run_with("check", &[Outcome::Ok])).flatten();
        let prev = last
            .and_then(|r| r.detail)
            .filter(|d| d["of"].as_u64() == Some(of as u64))
            .and_then(|d| d["part"].as_u64())
            .unwrap_or(0) as u32;
        (prev % of + 1, of)
    }

    /// Ids of the runs that are recorded and still going.
    pub fn running_ids(&self) -> Vec<i64> {
        self.active.lock().unwrap().values().filter_map(|a| a.run).collect()
    }

    pub fn active_count(&self) -> usize {
        self.active.lock().unwrap().len()
    }

    /// Waits until nothing runs, up to `timeout`; then records what still runs as
    /// interrupted. Returns how many were interrupted.
    pub async fn drain(&self, timeout: StdDuration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.active_count() == 0 {
                return 0;
            }
            let notified = self.wake.notified();
            if self.active_count() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let ids = self.running_ids();
        let n = log_err(
            "marking runs interrupted",
            self.state.lock().unwrap().mark_interrupted(
                self.clock.now(),
                &format!("the daemon stopped; the run did not end within {} s", timeout.as_secs()),
                Some(&ids),
            ),
        )
        .unwrap_or(0);
        tracing::warn!(runs = n, "stopped with runs still going: recorded as interrupted");
        n
    }

    /// Answers one control request.
    pub async fn answer(self: &Arc<Self>, req: Request) -> Response {
        match req {
            Request::Status => Response::ok(serde_json::to_value(self.status()).expect("status serializes")),
            Request::Jobs { system, job, limit } => {
                let f = RunFilter { system, job, limit: Some(limit.unwrap_or(50)) };
                match self.state.lock().unwrap().list_runs(&f) {
                    Ok(runs) => Response::ok(serde_json::json!({ "runs": runs })),
                    Err(e) => Response::err(e.to_string()),
                }
            }
            Request::Run { target, wait } => {
                let spec = match jobs::resolve(&self.config(), &target) {
                    Ok(s) => s,
                    Err(e) => return Response::err(e),
                };
                let (stx, srx) = oneshot::channel();
                let done = match self.dispatch(spec.clone(), Trigger::Manual, None, serde_json::json!({}), Some(stx)) {
                    Ok(rx) => rx,
                    Err(e) => return Response::err(e),
                };
                if wait {
                    match done.await {
                        Ok(Ok(run)) => Response::ok(serde_json::json!({ "run": run })),
                        Ok(Err(e)) => Response::err(e),
                        Err(_) => Response::err("the run was lost (the daemon is stopping)"),
                    }
                } else {
                    match srx.await {
                        Ok(Ok(id)) => Response::ok(serde_json::json!({ "job": spec.key, "started": id })),
                        Ok(Err(e)) => Response::err(e),
                        Err(_) => Response::err("the run did not start"),
                    }
                }
            }
            Request::Stop => {
                self.request_stop();
                Response::ok(serde_json::json!({ "stopping": true, "pid": std::process::id() }))
            }
        }
    }

    pub fn status(&self) -> Status {
        let now = self.clock.now();
        let cfg = self.config();
        let st = self.state.lock().unwrap();
        let active = self.active.lock().unwrap();
        let next_of = |key: &str, sched: Option<&kura_recovery::config::Schedule>| -> Option<DateTime<Utc>> {
            let sched = sched?;
            if active.contains_key(key) {
                return schedule::next_slot(&sched.cron, now, &chrono::Local);
            }
            let since = self.watching.lock().unwrap().get(key).copied().unwrap_or(now);
            let last = self.last_slot.lock().unwrap().get(key).copied().flatten();
            match schedule::decide(&sched.cron, last, since, cfg.catch_up, now, &chrono::Local) {
                Decision::Run { .. } => Some(now),
                Decision::Skip { .. } => schedule::next_slot(&sched.cron, now, &chrono::Local),
                Decision::Wait { next } => next,
            }
        };
        let systems = cfg
            .systems
            .iter()
            .map(|s| {
                let key = format!("backup:{}", s.name);
                let last = st.last_good_backup(&s.name).ok().flatten();
                let last_at = last.as_ref().and_then(|r| r.ended_at);
                let since =
                    self.watching.lock().unwrap().get(&format!("rpo:{}", s.name)).copied().unwrap_or(self.started_at);
                let max = cfg.max_backup_age[s.priority.get() as usize];
                let r = schedule::rpo(last_at, max, since, now);
                let last_run = st.list_runs(&RunFilter {
                    system: Some(s.name.clone()),
                    job: Some("backup".into()),
                    limit: Some(1),
                });
                SystemStatus {
                    name: s.name.clone(),
                    priority: s.priority.get(),
                    schedule: s.schedule.as_ref().map(|x| x.expr.clone()),
                    last_backup: last_at,
                    last_snapshot: last.and_then(|r| r.snapshot),
                    age_secs: r.age.map(|a| a.num_seconds()),
                    max_age_secs: max.map(|m| m.num_seconds()),
                    late: r.late,
                    last_outcome: last_run.ok().and_then(|v| v.into_iter().next()).map(|r| r.outcome),
                    next_run: next_of(&key, s.schedule.as_ref()),
                    running: active.contains_key(&key),
                }
            })
            .collect();
        let jobs = jobs::jobs_of(&cfg)
            .into_iter()
            .filter(|(j, _)| j.kind != JobKind::Backup)
            .map(|(j, sched)| {
                let last = st.list_runs(&RunFilter {
                    job: Some(j.kind.as_str().into()),
                    limit: Some(1),
                    ..Default::default()
                });
                let last = last.ok().and_then(|v| v.into_iter().next());
                JobStatus {
                    job: j.key.clone(),
                    schedule: sched.map(|s| s.expr.clone()),
                    next_run: next_of(&j.key, sched),
                    last_run: last.as_ref().map(|r| r.started_at),
                    last_outcome: last.map(|r| r.outcome),
                    running: active.contains_key(&j.key),
                }
            })
            .collect();
        let mut running: Vec<RunningStatus> = active
            .values()
            .map(|a| {
                let (done, total, files) = a.progress.snapshot();
                RunningStatus {
                    run: a.run,
                    job: a.spec.key.clone(),
                    kind: a.spec.kind,
                    system: a.spec.system.clone(),
                    trigger: a.trigger,
                    state: if a.run.is_some() { "running" } else { "waiting" },
                    queued_at: a.queued_at,
                    started_at: a.started_at,
                    elapsed_secs: a.started_at.map(|t| (now - t).num_seconds()),
                    bytes_done: done,
                    bytes_total: total,
                    files_done: files,
                }
            })
            .collect();
        running.sort_by_key(|a| a.queued_at);
        Status {
            daemon: DaemonInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION"),
                started_at: self.started_at,
                now,
                config: cfg.path.clone(),
                state: self.state_path.clone(),
                socket: self.socket.clone(),
                repository: cfg.repository.location.clone(),
                stopping: self.is_stopping(),
            },
            systems,
            jobs,
            running,
        }
    }

    /// Runs the scheduler until a stop is requested, then drains. The caller runs the
    /// control API beside it (`api::serve`) and handles signals.
    pub async fn run_scheduler(self: &Arc<Self>) {
        loop {
            if self.is_stopping() {
                break;
            }
            let wake = self.wake.notified();
            let next = self.tick();
            let now = self.clock.now();
            // Sleep until the next slot, but look again at least every second (the
            // RPO watch, the clock moving, jobs that were deferred).
            let mut wait = next.map(|n| (n - now).to_std().unwrap_or_default()).unwrap_or(StdDuration::from_secs(1));
            wait = wait.clamp(StdDuration::from_millis(20), StdDuration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake => {}
                _ = self.stopping() => {}
            }
        }
    }

    pub fn shutdown_timeout(&self) -> StdDuration {
        self.shutdown_timeout
    }
}

fn min_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// "3 h 2 min", "45 s", "52 h": kura's one duration formatter
/// (`kura_recovery::human::human_secs`), never negative.
pub fn human_duration(d: Duration) -> String {
    kura_recovery::human::human_secs(d.num_seconds().max(0))
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub daemon: DaemonInfo,
    pub systems: Vec<SystemStatus>,
    pub jobs: Vec<JobStatus>,
    pub running: Vec<RunningStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub config: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub repository: String,
    pub stopping: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SystemStatus {
    pub name: String,
    pub priority: u8,
    pub schedule: Option<String>,
    /// When its last good backup ended.
    pub last_backup: Option<DateTime<Utc>>,
    pub last_snapshot: Option<String>,
    pub age_secs: Option<i64>,
    pub max_age_secs: Option<i64>,
    pub late: bool,
    pub last_outcome: Option<Outcome>,
    pub next_run: Option<DateTime<Utc>>,
    pub running: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_outcome: Option<Outcome>,
    pub running: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunningStatus {
    pub run: Option<i64>,
    pub job: String,
    pub kind: JobKind,
    pub system: Option<String>,
    pub trigger: Trigger,
    /// `waiting` (for the repository: prune runs alone) or `running`.
    pub state: &'static str,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub elapsed_secs: Option<i64>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub files_done: u64,
}

#[cfg(test)]
mod tests;
