//! Where a system's work runs. The engine and the daemon's backups ask `Dispatch`
//! for systems that live on an agent host: the task goes into the state
//! database's task table (the queue the coordinator's agent routes hand out), and
//! the caller waits for its result (the process's one task waiter, `waiter.rs`,
//! reads the table for all callers every 200 ms). A caller killed while it
//! waits loses nothing: the agent finishes and reports, and the next caller finds
//! the task done (`Dispatch::run` picks up an open or finished task of the same
//! spec instead of inserting a second one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use kura_fleet::proto::{HookResult, HookStage, TaskSpec};
use kura_store::backend::Location;
use kura_store::progress::Progress;
use kura_store::repo::snapshot::Snapshot;
use kura_store::repo::Repository;
use kura_store::types::FileId;

use super::hooks::{HookOutcome, HookRunner};
use crate::config::Config;
use crate::error::Error;
use crate::fleet_dir::FleetDir;
use crate::plan::{Hook, PlanSystem};
use crate::state::fleet::TaskState;
use crate::state::State;

/// Why a dispatched task did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("agent {host} unreachable since {since}")]
    Unreachable { host: String, since: String },
    #[error(
        "agent {host} has never connected: enrol it (`kura agent enroll {host}`) and start `kura agent run` there"
    )]
    NeverSeen { host: String },
    #[error("on {host}: {error}")]
    Failed { host: String, error: String },
    #[error("agent {host} lost while it held task {id} (not heard from since {since}): the task was cancelled")]
    Lost { host: String, id: i64, since: String },
    #[error("task {id} on {host} was cancelled")]
    Cancelled { host: String, id: i64 },
    #[error("{0}")]
    State(#[from] Error),
}

/// Sends tasks to agents through the state database at `state`.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub state: PathBuf,
    /// An agent not seen for this long when a task is due is unreachable.
    pub unreachable_after: StdDuration,
    /// An agent not seen for this long is lost: its systems go to their replacement host.
    pub lost_after: StdDuration,
}

fn human(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

impl Dispatch {
    /// Whether `host`'s agent has not been seen for `lost_after` (or ever).
    pub fn is_lost(&self, host: &str) -> std::result::Result<bool, DispatchError> {
        let st = State::open(&self.state)?;
        let limit = chrono::Duration::from_std(self.lost_after).unwrap_or_default();
        Ok(st.fleet_last_seen(host)?.is_none_or(|seen| Utc::now() - seen > limit))
    }

    /// Refuses at once when `host`'s agent is not connected (seen within `unreachable_after`).
    pub fn check_reachable(&self, st: &State, host: &str) -> std::result::Result<(), DispatchError> {
        let seen = st.fleet_last_seen(host)?;
        let Some(seen) = seen else { return Err(DispatchError::NeverSeen { host: host.into() }) };
        let limit = chrono::Duration::from_std(self.unreachable_after).unwrap_or_default();
        if Utc::now() - seen > limit {
            return Err(DispatchError::Unreachable { host: host.into(), since: human(seen) });
        }
        Ok(())
    }

    /// Runs `spec` on `host` and waits for its result. A task of the same spec that
    /// is still open (a waiter before this one was killed) is waited for instead.
    pub fn run(
        &self,
        host: &str,
        spec: &TaskSpec,
        progress: &dyn Progress,
    ) -> std::result::Result<serde_json::Value, DispatchError> {
        let mut st = State::open(&self.state)?;
        let of_a_run = matches!(spec, TaskSpec::Restore { run: Some(_), .. } | TaskSpec::Hook { run: Some(_), .. });
        let existing = match st.fleet_find_task(host, spec)? {
            Some(t) if !t.state.is_terminal() => Some(t.id),
            // A resumed run: the agent finished while nobody waited.
            Some(t) if of_a_run && t.state == TaskState::Done => return Ok(t.result.unwrap_or_default()),
            _ => None,
        };
        let id = match existing {
            Some(id) => id,
            None => {
                self.check_reachable(&st, host)?;
                st.fleet_insert_task(host, spec, Utc::now())?
            }
        };
        // The process's one waiter reads the row each round (no connection of our own).
        drop(st);
        let mut ticket = super::waiter::Waiter::of(&self.state).watch(id);
        let (mut last_total, mut last_done) = (None, 0u64);
        let mut round = 0u64;
        loop {
            round += 1;
            // An agent gone for good would leave its caller waiting forever.
            if round.is_multiple_of(25) && self.is_lost(host)? {
                let mut st = State::open(&self.state)?;
                st.fleet_cancel(id, Utc::now())?;
                let since = st.fleet_last_seen(host)?.map_or("never".to_string(), human);
                return Err(DispatchError::Lost { host: host.into(), id, since });
            }
            let t = ticket
                .next_round()?
                .ok_or_else(|| Error::invalid(format!("fleet task {id}"), "it disappeared from the task table"))?;
            if let Some(p) = &t.progress {
                let (done, total) = (p["done"].as_u64().unwrap_or(0), p["total"].as_u64().unwrap_or(0));
                if last_total != Some(total) {
                    progress.set_total(total);
                    last_total = Some(total);
                    last_done = 0;
                }
                if done > last_done {
                    progress.advance(done - last_done);
                    last_done = done;
                }
            }
            match t.state {
                TaskState::Done => return Ok(t.result.unwrap_or_default()),
                TaskState::Failed => {
                    return Err(DispatchError::Failed { host: host.into(), error: t.error.unwrap_or_default() })
                }
                TaskState::Cancelled => return Err(DispatchError::Cancelled { host: host.into(), id }),
                // The next round of the waiter.
                TaskState::Queued | TaskState::Running => {}
            }
        }
    }
}

/// Where the engine finds a system's snapshots: the main repository, or the
/// repository of the agent host that holds the system.
pub trait SnapshotSource {
    /// The snapshots (oldest first) of the repository that `host`'s systems back
    /// up into; `None`: the coordinator's own systems.
    fn snapshots_of(&self, host: Option<&str>) -> Result<Vec<(FileId, Snapshot)>, Error>;
    /// The id of that repository (detection's verdicts and scans are kept per
    /// repository); `None` when it cannot be told.
    fn repo_id_of(&self, _host: Option<&str>) -> Option<String> {
        None
    }
}

impl SnapshotSource for Repository {
    fn snapshots_of(&self, host: Option<&str>) -> Result<Vec<(FileId, Snapshot)>, Error> {
        match host {
            None => Ok(self.snapshots()?),
            Some(h) => Err(Error::invalid(
                format!("agent host {h}"),
                "its systems' snapshots are in its own repository: recover with the config that has [fleet]",
            )),
        }
    }

    fn repo_id_of(&self, host: Option<&str>) -> Option<String> {
        host.is_none().then(|| self.config().id.clone())
    }
}

impl<T: SnapshotSource + ?Sized> SnapshotSource for std::sync::Arc<T> {
    fn snapshots_of(&self, host: Option<&str>) -> Result<Vec<(FileId, Snapshot)>, Error> {
        (**self).snapshots_of(host)
    }

    fn repo_id_of(&self, host: Option<&str>) -> Option<String> {
        (**self).repo_id_of(host)
    }
}

/// The fleet's snapshots: the main repository's, and each host's repository.
pub struct FleetSnapshots<'a> {
    pub main: &'a Repository,
    pub config: &'a Config,
    pub dir: FleetDir,
}

impl SnapshotSource for FleetSnapshots<'_> {
    fn snapshots_of(&self, host: Option<&str>) -> Result<Vec<(FileId, Snapshot)>, Error> {
        let shared = self.config.fleet.as_ref().is_some_and(|f| f.shared_repository);
        match host {
            Some(h) if !shared => Ok(self.dir.open_host_repo(self.config, h)?.snapshots()?),
            _ => Ok(self.main.snapshots()?),
        }
    }

    fn repo_id_of(&self, host: Option<&str>) -> Option<String> {
        let shared = self.config.fleet.as_ref().is_some_and(|f| f.shared_repository);
        match host {
            Some(h) if !shared => self.dir.open_host_repo(self.config, h).ok().map(|r| r.config().id.clone()),
            _ => Some(self.main.config().id.clone()),
        }
    }
}

/// What the engine needs to run systems on agents.
#[derive(Clone, Debug)]
pub struct FleetExecutor {
    pub dispatch: Dispatch,
    /// The main repository; a host's is `<main>/hosts/HOST` unless shared.
    pub main: Location,
    pub shared: bool,
    /// `[fleet] per_host_parallel`: systems of one host restored at once.
    pub slots: HostSlots,
}

/// Per-host slots: a system's worker holds one of its host's while it runs.
#[derive(Clone, Debug, Default)]
pub struct HostSlots {
    limit: Option<usize>,
    taken: std::sync::Arc<(std::sync::Mutex<std::collections::HashMap<String, usize>>, std::sync::Condvar)>,
}

/// A held slot; given back when dropped.
pub struct HostSlot {
    slots: HostSlots,
    host: String,
}

impl HostSlots {
    pub fn new(limit: Option<usize>) -> HostSlots {
        HostSlots { limit, taken: Default::default() }
    }

    /// Waits for a free slot of `host` (at once without a limit).
    pub fn acquire(&self, host: &str) -> Option<HostSlot> {
        let limit = self.limit?;
        let (lock, cv) = &*self.taken;
        let mut taken = lock.lock().unwrap_or_else(|e| e.into_inner());
        while taken.get(host).copied().unwrap_or(0) >= limit {
            taken = cv.wait(taken).unwrap_or_else(|e| e.into_inner());
        }
        *taken.entry(host.to_string()).or_default() += 1;
        Some(HostSlot { slots: self.clone(), host: host.to_string() })
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let (lock, cv) = &*self.slots.taken;
        let mut taken = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = taken.get_mut(&self.host) {
            *n = n.saturating_sub(1);
        }
        cv.notify_all();
    }
}

impl FleetExecutor {
    /// For a config with `[fleet]`; `state` is the coordinator's state database.
    pub fn for_config(config: &Config, state: &Path) -> Option<FleetExecutor> {
        let f = config.fleet.as_ref()?;
        Some(FleetExecutor {
            dispatch: Dispatch {
                state: state.to_path_buf(),
                unreachable_after: f.heartbeat * 3,
                lost_after: f.agent_lost_after,
            },
            main: config.repository.location.clone(),
            shared: f.shared_repository,
            slots: HostSlots::new(f.per_host_parallel),
        })
    }

    /// The repository host `host`'s systems are in (`None`: the coordinator's own).
    pub fn repository_of(&self, host: Option<&str>) -> String {
        match host {
            Some(h) if !self.shared => crate::fleet_dir::host_location(&self.main, h).to_string(),
            _ => self.main.to_string(),
        }
    }

    /// Where `sys` runs in this run: the `--on` override, else its own agent host,
    /// else (its agent lost past `agent_lost_after`) its plan's replacement host.
    /// `None`: on this machine.
    pub fn placement(&self, sys: &PlanSystem, on: &BTreeMap<String, String>) -> Option<Placement> {
        self.placement_of(sys, on, false)
    }

    /// As `placement`; a system failing over to a standby on an agent host runs
    /// there (its hooks, and the apply by difference as a StandbyApply task).
    pub fn placement_of(&self, sys: &PlanSystem, on: &BTreeMap<String, String>, failover: bool) -> Option<Placement> {
        if let (true, Some(h)) = (failover, sys.standby.as_ref().and_then(|s| s.host.clone())) {
            return Some(Placement {
                run_on: h,
                repository: self.repository_of(sys.agent.as_deref()),
                fleet: self.clone(),
            });
        }
        let run_on = match (on.get(&sys.name), &sys.agent, &sys.replacement_host) {
            (Some(h), _, _) => h.clone(),
            (None, Some(home), Some(repl)) if self.dispatch.is_lost(home).unwrap_or(false) => {
                tracing::warn!(system = %sys.name, lost = %home, to = %repl, "agent lost: restoring on the replacement host");
                repl.clone()
            }
            (None, Some(home), _) => home.clone(),
            (None, None, _) => return None,
        };
        Some(Placement { run_on, repository: self.repository_of(sys.agent.as_deref()), fleet: self.clone() })
    }
}

/// Where a system's hooks and restore run, and the repository its snapshot is in.
#[derive(Clone, Debug)]
pub struct Placement {
    pub run_on: String,
    pub repository: String,
    pub fleet: FleetExecutor,
}

/// Runs one attempt of a hook on the system's host, as a Hook task. Only the
/// KURA_* variables go along: the plan's `hook_env` values stay on the coordinator
/// (a task is stored in the state database).
pub struct RemoteHooks {
    pub fleet: FleetExecutor,
    pub host: String,
    pub system: String,
    /// The recovery or drill run (a resumed run finds its finished hooks); `None`:
    /// every call runs the hook again (a standby's hooks).
    pub run: Option<i64>,
}

impl HookRunner for RemoteHooks {
    fn run_once(&self, hook: &Hook, env: &[(String, String)]) -> HookOutcome {
        let phase = env.iter().find(|(k, _)| k == "KURA_PHASE").map(|(_, v)| v.as_str()).unwrap_or_default();
        let Some(stage) = HookStage::from_name(phase) else {
            let mut out = HookOutcome::not_run(&hook.command);
            out.output = format!("unknown hook stage {phase:?}");
            return out;
        };
        let spec = TaskSpec::Hook {
            system: self.system.clone(),
            stage,
            command: hook.command.clone(),
            env: env.iter().filter(|(k, _)| k.starts_with("KURA_")).cloned().collect(),
            timeout_ms: hook.timeout.as_millis() as u64,
            run: self.run,
        };
        let started = std::time::Instant::now();
        let mut out = HookOutcome::not_run(&hook.command);
        match self.fleet.dispatch.run(&self.host, &spec, &kura_store::progress::NoProgress) {
            Ok(v) => match serde_json::from_value::<HookResult>(v) {
                Ok(r) => {
                    out.ok = r.ok;
                    out.exit_code = r.exit_code;
                    out.timed_out = r.timed_out;
                    out.duration_ms = r.duration_ms;
                    out.output = r.output;
                }
                Err(e) => out.output = format!("unreadable result from {}: {e}", self.host),
            },
            Err(e) => {
                out.output = e.to_string();
                out.duration_ms = started.elapsed().as_millis() as u64;
            }
        }
        out
    }
}
