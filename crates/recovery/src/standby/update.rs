//! Keeping a standby current: after every good backup of a system, its standby is
//! brought to the new snapshot by difference, then its verify hooks run. The CLI's
//! `kura backup --system`, `kura standby apply` and the daemon's backup job (after
//! a local backup and after an agent's) call this one function. The standby may
//! live on an agent host (`Site`): the state database is then updated only from
//! the agent's report of what the standby holds.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kura_fleet::proto::StandbyResult;
use kura_store::progress::Progress;
use kura_store::repo::snapshot::Snapshot;
use kura_store::repo::Repository;
use kura_store::types::FileId;
use serde::Serialize;

use super::site::Site;
use super::{hook_env, hook_failure, newest_snapshot, run_hooks};
use crate::config::{StandbyConfig, SystemConfig};
use crate::error::{Error, Result};
use crate::orchestrate::hooks::{HookOutcome, HookRunner, HookStage};
use crate::state::standby::StandbyState;
use crate::state::State;

/// What keeping a standby current did.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Update {
    /// Brought to `snapshot`; `verify_ok` is false when a verify hook failed.
    Applied {
        snapshot: String,
        /// Where the standby is: its agent host (`None`: this machine).
        host: Option<String>,
        sync: Box<StandbyResult>,
        verify: Vec<HookOutcome>,
        verify_ok: bool,
        verify_error: Option<String>,
    },
    /// Not touched, and why (it serves in the primary's place; no snapshot yet).
    Skipped { reason: String },
}

impl Update {
    /// The standby was updated but a verify hook failed.
    pub fn verify_failed(&self) -> bool {
        matches!(self, Update::Applied { verify_ok: false, .. })
    }
}

/// What every standby operation works with: the state database, the repository
/// holding the system's snapshots, the system, where its sides live, and the hook
/// runner of this machine.
pub struct Ctx<'a> {
    pub state: &'a State,
    pub repo: &'a Arc<Repository>,
    pub sys: &'a SystemConfig,
    pub site: &'a Site,
    pub runner: &'a dyn HookRunner,
    pub now: &'a dyn Fn() -> DateTime<Utc>,
    pub progress: &'a dyn Progress,
}

/// Brings the system's standby to its newest complete snapshot (a no-op for data
/// already current) and verifies it. `Ok(None)`: the system has no standby.
/// Holds the standby's lock throughout (waits for another operation on it).
pub fn keep_current(c: &Ctx) -> Result<Option<Update>> {
    let (state, repo, sys) = (c.state, c.repo, c.sys);
    let Some(sb) = sys.standby.as_ref() else { return Ok(None) };
    let _lock = super::lock::StandbyLock::acquire(state.path(), &sys.name, "keeping it current")?;
    if state.standby(&sys.name)?.is_some_and(|r| r.state == StandbyState::Serving) {
        return Ok(Some(Update::Skipped {
            reason: "the standby serves in the primary's place since a failover: `kura failback` first".into(),
        }));
    }
    let list = repo.snapshots()?;
    let Some((id, snap)) = newest_snapshot(&list, sys, None) else {
        return Ok(Some(Update::Skipped { reason: format!("no complete snapshot tagged {} yet", sys.tag()) }));
    };
    apply_unlocked(c, sb, id, snap).map(Some)
}

/// Brings the standby to `id` and runs its verify hooks, recording both (a
/// `kura standby apply --snapshot`). Holds the standby's lock throughout.
pub fn apply(c: &Ctx, sb: &StandbyConfig, id: &FileId, snap: &Snapshot) -> Result<Update> {
    let _lock = super::lock::StandbyLock::acquire(c.state.path(), &c.sys.name, "bringing it to a snapshot")?;
    if c.state.standby(&c.sys.name)?.is_some_and(|r| r.state == StandbyState::Serving) {
        return Ok(Update::Skipped {
            reason: "the standby serves in the primary's place since a failover: `kura failback` first".into(),
        });
    }
    apply_unlocked(c, sb, id, snap)
}

fn apply_unlocked(c: &Ctx, sb: &StandbyConfig, id: &FileId, snap: &Snapshot) -> Result<Update> {
    let sync = bring_to(c, sb, id, snap, None)?;
    let (verify, verify_ok, verify_error) = verify(c, sb, &sb.path, &id.to_hex(), false)?;
    Ok(Update::Applied {
        snapshot: id.to_hex(),
        host: sb.host.clone(),
        sync: Box::new(sync),
        verify,
        verify_ok,
        verify_error,
    })
}

/// How the state database names a standby's directory: `HOST:PATH` on an agent.
pub fn location(sb: &StandbyConfig) -> String {
    match &sb.host {
        Some(h) => format!("{h}:{}", sb.path.display()),
        None => sb.path.display().to_string(),
    }
}

/// The data step alone: the standby brought to `id` by difference, on its host,
/// recorded (applying before, current only after the apply reported that the
/// standby holds `id`, failed on an error). `run`: the failover row it is part of.
pub fn bring_to(c: &Ctx, sb: &StandbyConfig, id: &FileId, snap: &Snapshot, run: Option<i64>) -> Result<StandbyResult> {
    let (state, sys) = (c.state, c.sys);
    let path = location(sb);
    let hex = id.to_hex();
    state.standby_applying(&sys.name, &path, &hex)?;
    match c.site.apply_standby(c.repo, sys, id, snap, &sb.path, None, run, c.progress) {
        Ok(sum) if sum.holds.as_deref() == Some(hex.as_str()) => {
            state.standby_applied(&sys.name, &hex, snap.time, Utc::now(), sum.duration_ms, sum.bytes_written)?;
            Ok(sum)
        }
        Ok(sum) => {
            let why = format!("after the apply to {} it reports holding {:?}", id.short(), sum.holds);
            state.standby_failed(&sys.name, &path, &why)?;
            Err(Error::invalid(format!("standby of {}", sys.name), why))
        }
        Err(e) => {
            state.standby_failed(&sys.name, &path, &format!("bringing it to snapshot {}: {e}", id.short()))?;
            Err(e)
        }
    }
}

/// Runs the standby's verify hooks on its host against `dir` (the standby, or a
/// drill's copy) and records the result (not for a drill).
pub fn verify(
    c: &Ctx,
    sb: &StandbyConfig,
    dir: &std::path::Path,
    snapshot: &str,
    drill: bool,
) -> Result<(Vec<HookOutcome>, bool, Option<String>)> {
    let (state, sys, now) = (c.state, c.sys, (c.now)());
    let env = hook_env(sys, dir, snapshot, "verify", drill);
    let runner = c.site.standby_hooks(c.runner, sys);
    match run_hooks(runner.as_ref(), HookStage::Verify, &sb.verify, sb, &env) {
        Ok(done) => {
            if !drill {
                state.standby_verified(&sys.name, true, now, None)?;
            }
            Ok((done, true, None))
        }
        Err(o) => {
            let why = hook_failure("verify", &o);
            if !drill {
                state.standby_verified(&sys.name, false, now, Some(&why))?;
            }
            Ok((vec![o], false, Some(why)))
        }
    }
}
