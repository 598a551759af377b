//! Failover drills: nothing is promoted. A copy of the standby, in a sandbox, is
//! brought to the drill's snapshot by difference (the roll-back a failover would
//! do), the standby's verify hooks run on it with KURA_DRILL=1, and both are timed:
//! how long the roll-back and the switch would take, against the tolerance. The
//! measurement is a `failovers` row of kind `drill`, which forecasts learn from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use kura_store::progress::Progress;
use kura_store::repo::snapshot::Snapshot;
use kura_store::repo::Repository;
use kura_store::types::FileId;

use super::update::verify;
use super::{newest_snapshot, standby_of, subpath};
use crate::config::SystemConfig;
use crate::error::{Error, Result};
use crate::orchestrate::hooks::HookRunner;
use crate::state::standby::{SwitchKind, SwitchPhase, SwitchRecord};
use crate::state::State;

/// Drills the failover of `sys` in `sandbox/NAME`; `snapshot`: the system's newest when `None`.
#[allow(clippy::too_many_arguments)]
pub fn drill(
    state: &State,
    repo: &Arc<Repository>,
    sys: &SystemConfig,
    sandbox: &Path,
    snapshot: Option<(FileId, Snapshot)>,
    runner: &dyn HookRunner,
    now: &dyn Fn() -> DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<SwitchRecord> {
    let sb = standby_of(sys)?;
    let copy: PathBuf = sandbox.join(&sys.name);
    let real: Vec<&Path> = std::iter::once(sb.path.as_path()).chain(sys.paths.iter().map(|p| p.as_path())).collect();
    if real.iter().any(|r| copy.starts_with(r) || r.starts_with(&copy)) {
        return Err(Error::invalid(
            sandbox.display().to_string(),
            format!("the sandbox must be apart from the standby and the paths of {}", sys.name),
        ));
    }
    // A drill killed before it ended is recorded as interrupted; this one starts afresh.
    if let Some(old) = state.switch_unfinished(&sys.name, SwitchKind::Drill)? {
        state.switch_finish(old.id, SwitchPhase::Failed, now(), None, None, None, Some("interrupted"))?;
    }
    let (sid, snap) = match snapshot {
        Some(s) => s,
        None => newest_snapshot(&repo.snapshots()?, sys, None).cloned().ok_or_else(|| {
            Error::invalid(format!("system {}", sys.name), format!("no snapshot tagged {}", sys.tag()))
        })?,
    };
    let id = state.switch_open(&sys.name, SwitchKind::Drill, None, SwitchPhase::Apply, now())?;
    state.switch_snapshot(id, &sid.to_hex(), snap.time)?;
    let res = (|| -> Result<()> {
        if copy.exists() {
            std::fs::remove_dir_all(&copy).map_err(|e| Error::io(&copy, e))?;
        }
        kura_store::sync::copy_tree(&sb.path, &copy)?;
        let t = Instant::now();
        let opts = kura_store::sync::SyncOptions { target: copy.clone(), subpath: subpath(&snap), threads: None };
        kura_store::sync::apply(repo, &sid, &snap, &opts, progress)?;
        state.switch_times(id, Some(t.elapsed().as_millis() as u64), None)?;
        state.switch_phase(id, SwitchPhase::Verify)?;
        let t = Instant::now();
        let mut on_copy = sb.clone();
        on_copy.path = copy.clone();
        let mut sys_copy = sys.clone();
        sys_copy.standby = Some(on_copy.clone());
        let (_, ok, why) = verify(state, &sys_copy, &on_copy, &sid.to_hex(), runner, now(), true)?;
        state.switch_times(id, None, Some(t.elapsed().as_millis() as u64))?;
        if !ok {
            return Err(Error::invalid(format!("system {}", sys.name), why.unwrap_or_default()));
        }
        Ok(())
    })();
    if let Err(e) = res {
        state.switch_finish(id, SwitchPhase::Failed, now(), None, None, None, Some(&e.to_string()))?;
        return Err(e);
    }
    let rec = state.switch(id)?;
    let total_ms = rec.apply_ms.unwrap_or(0) + rec.switch_ms.unwrap_or(0);
    let downtime = (total_ms as i64 + 999) / 1000;
    let met = chrono::Duration::milliseconds(total_ms as i64) <= sys.tolerance();
    state.switch_finish(id, SwitchPhase::Done, now(), Some(downtime), None, Some(met), None)?;
    state.switch(id)
}
