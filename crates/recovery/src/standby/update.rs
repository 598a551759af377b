//! Keeping a standby current: after every good backup of a system, its standby is
//! brought to the new snapshot by difference, then its verify hooks run. The CLI's
//! `kura backup --system`, `kura standby apply` and the daemon's backup job call
//! this one function.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kura_store::progress::Progress;
use kura_store::repo::snapshot::Snapshot;
use kura_store::repo::Repository;
use kura_store::sync::{SyncOptions, SyncSummary};
use kura_store::types::FileId;
use serde::Serialize;

use super::{hook_env, hook_failure, newest_snapshot, run_hooks, subpath};
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
        sync: Box<SyncSummary>,
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

/// Brings the system's standby to its newest complete snapshot (a no-op for data
/// already current) and verifies it. `Ok(None)`: the system has no standby.
pub fn keep_current(
    state: &State,
    repo: &Arc<Repository>,
    sys: &SystemConfig,
    runner: &dyn HookRunner,
    now: &dyn Fn() -> DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<Option<Update>> {
    let Some(sb) = sys.standby.as_ref() else { return Ok(None) };
    if state.standby(&sys.name)?.is_some_and(|r| r.state == StandbyState::Serving) {
        return Ok(Some(Update::Skipped {
            reason: "the standby serves in the primary's place since a failover: `kura failback` first".into(),
        }));
    }
    let list = repo.snapshots()?;
    let Some((id, snap)) = newest_snapshot(&list, sys, None) else {
        return Ok(Some(Update::Skipped { reason: format!("no complete snapshot tagged {} yet", sys.tag()) }));
    };
    apply(state, repo, sys, sb, id, snap, runner, now, progress).map(Some)
}

/// Brings the standby to `id` and runs its verify hooks, recording both.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    state: &State,
    repo: &Arc<Repository>,
    sys: &SystemConfig,
    sb: &StandbyConfig,
    id: &FileId,
    snap: &Snapshot,
    runner: &dyn HookRunner,
    now: &dyn Fn() -> DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<Update> {
    let sync = bring_to(state, repo, sys, sb, id, snap, progress)?;
    let (verify, verify_ok, verify_error) = verify(state, sys, sb, &id.to_hex(), runner, now(), false)?;
    Ok(Update::Applied { snapshot: id.to_hex(), sync: Box::new(sync), verify, verify_ok, verify_error })
}

/// The data step alone: the standby brought to `id` by difference, recorded
/// (applying before, current after, failed on an error).
pub fn bring_to(
    state: &State,
    repo: &Arc<Repository>,
    sys: &SystemConfig,
    sb: &StandbyConfig,
    id: &FileId,
    snap: &Snapshot,
    progress: &dyn Progress,
) -> Result<SyncSummary> {
    let path = sb.path.display().to_string();
    let hex = id.to_hex();
    state.standby_applying(&sys.name, &path, &hex)?;
    let opts = SyncOptions { target: sb.path.clone(), subpath: subpath(snap), threads: None };
    match kura_store::sync::apply(repo, id, snap, &opts, progress) {
        Ok(sum) => {
            state.standby_applied(&sys.name, &hex, snap.time, Utc::now(), sum.duration_ms, sum.bytes_written)?;
            Ok(sum)
        }
        Err(e) => {
            state.standby_failed(&sys.name, &path, &format!("bringing it to snapshot {}: {e}", id.short()))?;
            Err(Error::Store(e))
        }
    }
}

/// Runs the standby's verify hooks and records the result.
pub fn verify(
    state: &State,
    sys: &SystemConfig,
    sb: &StandbyConfig,
    snapshot: &str,
    runner: &dyn HookRunner,
    now: DateTime<Utc>,
    drill: bool,
) -> Result<(Vec<HookOutcome>, bool, Option<String>)> {
    let env = hook_env(sys, &sb.path, snapshot, "verify", drill);
    match run_hooks(runner, HookStage::Verify, &sb.verify, sb, &env) {
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
