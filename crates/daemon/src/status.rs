//! The answer to `status`: facts read from the state database on its thread, the
//! book copied under its lock, then put together by a pure function.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::daemon::Daemon;
use crate::error::Result;
use crate::jobs::{self, JobKind, JobSpec};
use kura_recovery::config::{Config, Schedule};
use kura_recovery::notify::outbox::Summary;
use kura_recovery::schedule::{self, Decision, Trigger};
use kura_recovery::standby::{self, Health};
use kura_recovery::state::jobs::{JobRun, Outcome, RunFilter};
use kura_recovery::state::standby::StandbyRecord;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub daemon: DaemonInfo,
    pub systems: Vec<SystemStatus>,
    pub jobs: Vec<JobStatus>,
    pub running: Vec<RunningStatus>,
    /// The notification outbox: pending, delivered, dropped, the oldest pending.
    #[serde(default)]
    pub notifications: Summary,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub config: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub repository: String,
    pub stopping: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// The last backup run's duration, once it ended.
    #[serde(default)]
    pub last_run_secs: Option<i64>,
    /// What the last backup run stored.
    #[serde(default)]
    pub last_run_bytes: Option<u64>,
    pub next_run: Option<DateTime<Utc>>,
    pub running: bool,
    /// The agent host that runs it (`[fleet]`); absent: the coordinator's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Why it is late besides its age, e.g. "agent db1 unreachable since T".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_reason: Option<String>,
    /// Its warm standby, when it has one (docs/STANDBY.md).
    #[serde(default)]
    pub standby: Option<StandbyStatus>,
}

/// A standby as `status` shows it: what it holds, its lag, its last verification, its health.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StandbyStatus {
    pub path: String,
    /// applying | current | failed | serving (none: never applied).
    pub state: Option<String>,
    pub snapshot: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    /// Behind the primary's last good backup.
    pub lag_secs: Option<i64>,
    pub verify_ok: Option<bool>,
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub health: Health,
    pub error: Option<String>,
}

impl StandbyStatus {
    /// The standby of `sys` from its record, judged against the system's last good
    /// backup (`last_backup`: when it started, as its snapshot's time) and its allowed age.
    pub fn of(
        sys: &kura_recovery::config::SystemConfig,
        rec: Option<&StandbyRecord>,
        last_backup: Option<DateTime<Utc>>,
        allowed: Option<chrono::Duration>,
    ) -> Option<StandbyStatus> {
        let sb = sys.standby.as_ref()?;
        let health = standby::health(rec, last_backup, allowed);
        Some(StandbyStatus {
            path: standby::update::location(sb),
            state: rec.map(|r| r.state.to_string()),
            snapshot: rec.and_then(|r| r.snapshot.clone()),
            snapshot_time: rec.and_then(|r| r.snapshot_time),
            applied_at: rec.and_then(|r| r.applied_at),
            lag_secs: rec.and_then(|r| standby::health::lag(r, last_backup)).map(|l| l.num_seconds()),
            verify_ok: rec.and_then(|r| r.verify_ok),
            verified_at: rec.and_then(|r| r.verified_at),
            health,
            error: rec.and_then(|r| r.error.clone()),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: String,
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_outcome: Option<Outcome>,
    pub running: bool,
}

/// Where a started job is: waiting for the repository (prune runs alone) or running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Waiting,
    Running,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunningStatus {
    pub run: Option<i64>,
    pub job: String,
    pub kind: JobKind,
    pub system: Option<String>,
    pub trigger: Trigger,
    pub state: RunState,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub elapsed_secs: Option<i64>,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub files_done: u64,
}

/// What the state database says, per system (last good backup, last backup run)
/// and per repository-wide job (last run), in config order.
struct Facts {
    /// Agent hosts lost past `[fleet] agent_lost_after`, with their last contact.
    lost: Vec<(String, Option<DateTime<Utc>>)>,
    systems: Vec<(Option<JobRun>, Option<JobRun>)>,
    /// Per system, its standby's record (if it was ever applied).
    standbys: Vec<Option<StandbyRecord>>,
    jobs: Vec<Option<JobRun>>,
    notifications: Summary,
}

/// The book's part of the answer, copied under its lock.
struct Seen {
    running: Vec<RunningStatus>,
    watching: HashMap<String, DateTime<Utc>>,
    last_slot: HashMap<String, Option<DateTime<Utc>>>,
}

fn repo_wide(cfg: &Config) -> Vec<(JobSpec, Option<&Schedule>)> {
    jobs::jobs_of(cfg).into_iter().filter(|(j, _)| j.kind != JobKind::Backup).collect()
}

impl Daemon {
    pub async fn status(&self) -> Result<Status> {
        let cfg = self.config();
        let systems: Vec<String> = cfg.systems.iter().map(|s| s.name.clone()).collect();
        let kinds: Vec<JobKind> = repo_wide(&cfg).iter().map(|(j, _)| j.kind).collect();
        let mut facts = self.db.call(move |st| read_facts(st, &systems, &kinds)).await?;
        let now = self.clock.now();
        facts.lost = crate::fleet::lost_agents(self, &cfg, now).await;
        let seen = self.with_book(|b| Seen {
            running: b.active.values().map(|a| running_status(a, now)).collect(),
            watching: b.watching.clone(),
            last_slot: b.last_slot.clone(),
        });
        let info = DaemonInfo {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started_at,
            now,
            config: cfg.path.clone(),
            state: self.state_path.clone(),
            socket: self.socket.clone(),
            repository: cfg.repository.location.to_string(),
            stopping: self.is_stopping(),
        };
        Ok(build(&cfg, info, facts, seen))
    }
}

fn read_facts(st: &mut kura_recovery::state::State, systems: &[String], kinds: &[JobKind]) -> Facts {
    let last = |f: RunFilter| st.list_runs(&RunFilter { limit: Some(1), ..f }).ok().and_then(|v| v.into_iter().next());
    Facts {
        lost: Vec::new(),
        systems: systems
            .iter()
            .map(|s| {
                let good = st.last_good_backup(s).ok().flatten();
                (good, last(RunFilter { system: Some(s.clone()), job: Some(JobKind::Backup), limit: None }))
            })
            .collect(),
        standbys: systems.iter().map(|s| st.standby(s).ok().flatten()).collect(),
        jobs: kinds.iter().map(|k| last(RunFilter { job: Some(*k), ..Default::default() })).collect(),
        notifications: st
            .outbox_summary()
            .map_err(|e| tracing::error!(error = %e, "reading the outbox"))
            .unwrap_or_default(),
    }
}

fn running_status(a: &crate::daemon::Active, now: DateTime<Utc>) -> RunningStatus {
    let (done, total, files) = a.progress.snapshot();
    RunningStatus {
        run: a.run,
        job: a.spec.key.clone(),
        kind: a.spec.kind,
        system: a.spec.system.clone(),
        trigger: a.trigger,
        state: if a.run.is_some() { RunState::Running } else { RunState::Waiting },
        queued_at: a.queued_at,
        started_at: a.started_at,
        elapsed_secs: a.started_at.map(|t| (now - t).num_seconds()),
        bytes_done: done,
        bytes_total: total,
        files_done: files,
    }
}

/// Puts the answer together; no I/O, no locks.
fn build(cfg: &Config, info: DaemonInfo, facts: Facts, mut seen: Seen) -> Status {
    let now = info.now;
    let is_running = |key: &str| seen.running.iter().any(|r| r.job == key);
    let next_of = |key: &str, sched: Option<&Schedule>| -> Option<DateTime<Utc>> {
        let sched = sched?;
        if is_running(key) {
            return schedule::next_slot(&sched.cron, now, &chrono::Local);
        }
        let since = seen.watching.get(key).copied().unwrap_or(now);
        let last = seen.last_slot.get(key).copied().flatten();
        match schedule::decide(&sched.cron, last, since, cfg.catch_up, now, &chrono::Local) {
            Decision::Run { .. } => Some(now),
            Decision::Skip { .. } => schedule::next_slot(&sched.cron, now, &chrono::Local),
            Decision::Wait { next } => next,
        }
    };
    let systems = cfg
        .systems
        .iter()
        .zip(facts.systems)
        .zip(facts.standbys)
        .map(|((s, (good, last_run)), sb)| {
            let key = format!("backup:{}", s.name);
            let last_at = good.as_ref().and_then(|r| r.ended_at);
            let since = seen.watching.get(&format!("rpo:{}", s.name)).copied().unwrap_or(info.started_at);
            let max = cfg.max_backup_age[s.priority.get() as usize];
            let r = schedule::rpo(last_at, max, since, now);
            // The last run could not reach the system's agent: late, and why.
            let late_reason = last_run
                .as_ref()
                .filter(|r| r.outcome == Outcome::Failed)
                .filter(|r| r.detail.as_ref().is_some_and(|d| d.get("agent_unreachable").is_some()))
                .and_then(|r| r.error.clone())
                .or_else(|| {
                    let host = cfg.agent_host(s)?;
                    let (_, seen) = facts.lost.iter().find(|(h, _)| h == host)?;
                    let since = seen.map_or("it never connected".to_string(), |t| {
                        format!("not heard from since {}", t.format("%Y-%m-%d %H:%M:%S UTC"))
                    });
                    Some(format!("agent {host} lost ({since}): the system is at risk"))
                });
            let standby = StandbyStatus::of(s, sb.as_ref(), good.as_ref().map(|g| g.started_at), max);
            SystemStatus {
                name: s.name.clone(),
                priority: s.priority.get(),
                schedule: s.schedule.as_ref().map(|x| x.expr.clone()),
                last_backup: last_at,
                last_snapshot: good.and_then(|r| r.snapshot),
                age_secs: r.age.map(|a| a.num_seconds()),
                max_age_secs: max.map(|m| m.num_seconds()),
                late: r.late || late_reason.is_some(),
                host: cfg.agent_host(s).map(str::to_string),
                late_reason,
                last_run_secs: last_run.as_ref().and_then(|r| Some((r.ended_at? - r.started_at).num_seconds())),
                last_run_bytes: last_run.as_ref().and_then(|r| r.bytes),
                last_outcome: last_run.map(|r| r.outcome),
                next_run: next_of(&key, s.schedule.as_ref()),
                running: is_running(&key),
                standby,
            }
        })
        .collect();
    let jobs = repo_wide(cfg)
        .into_iter()
        .zip(facts.jobs)
        .map(|((j, sched), last)| JobStatus {
            job: j.key.clone(),
            schedule: sched.map(|s| s.expr.clone()),
            next_run: next_of(&j.key, sched),
            last_run: last.as_ref().map(|r| r.started_at),
            last_outcome: last.map(|r| r.outcome),
            running: is_running(&j.key),
        })
        .collect();
    seen.running.sort_by_key(|a| a.queued_at);
    Status { daemon: info, systems, jobs, running: seen.running, notifications: facts.notifications }
}
