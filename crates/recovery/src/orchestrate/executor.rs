//! Where a system's work runs. The engine and the daemon's backups ask `Dispatch`
//! for systems that live on an agent host: the task goes into the state
//! database's task table (the queue the coordinator's agent routes hand out), and
//! the caller waits for its result by polling the table. A caller killed while it
//! waits loses nothing: the agent finishes and reports, and the next caller finds
//! the task done (`Dispatch::run` picks up an open or finished task of the same
//! spec instead of inserting a second one).

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use kura_fleet::proto::TaskSpec;
use kura_store::progress::Progress;

use crate::error::Error;
use crate::state::fleet::TaskState;
use crate::state::State;

/// How often a waiting caller looks at the task table.
const POLL: StdDuration = StdDuration::from_millis(200);

/// Why a dispatched task did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("agent {host} unreachable since {since}")]
    Unreachable { host: String, since: String },
    #[error("agent {host} has never connected: enrol it (`kura agent enroll {host}`) and start `kura agent run` there")]
    NeverSeen { host: String },
    #[error("on {host}: {error}")]
    Failed { host: String, error: String },
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
}

fn human(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

impl Dispatch {
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
        let existing = st.fleet_open_tasks(host)?.into_iter().find(|t| &t.spec == spec).map(|t| t.id);
        let id = match existing {
            Some(id) => id,
            None => {
                self.check_reachable(&st, host)?;
                st.fleet_insert_task(host, spec, Utc::now())?
            }
        };
        let (mut last_total, mut last_done) = (None, 0u64);
        loop {
            let t = st
                .fleet_task(id)?
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
                TaskState::Queued | TaskState::Running => std::thread::sleep(POLL),
            }
        }
    }
}
