//! Failover drills: nothing is promoted. A copy of the standby, in a sandbox, is
//! brought to the drill's snapshot by difference (the roll-back a failover would
//! do), the standby's verify hooks run on it with KURA_DRILL=1, and both are timed:
//! how long the roll-back and the switch would take, against the tolerance. The
//! measurement is a `failovers` row of kind `drill`, which forecasts learn from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kura_store::repo::snapshot::Snapshot;
use kura_store::types::FileId;

use super::update::{verify, Ctx};
use super::{newest_snapshot, standby_of};
use crate::error::{Error, Result};
use crate::state::standby::{SwitchKind, SwitchPhase, SwitchRecord};

/// Drills the failover of `c.sys` in `sandbox/NAME` (on the standby's host when it
/// lives on an agent); `snapshot`: the system's newest when `None`.
pub fn drill(c: &Ctx, sandbox: &Path, snapshot: Option<(FileId, Snapshot)>) -> Result<SwitchRecord> {
    let (state, repo, sys, now) = (c.state, c.repo, c.sys, c.now);
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
    // The copy is taken of a standby no other operation is changing.
    let _lock = super::lock::StandbyLock::acquire(state.path(), &sys.name, "a failover drill")?;
    let id = state.switch_open(&sys.name, SwitchKind::Drill, None, SwitchPhase::Apply, now())?;
    state.switch_snapshot(id, &sid.to_hex(), snap.time)?;
    let res = (|| -> Result<()> {
        // Only the roll-back is measured (the apply's own time), not the copy.
        let r = c.site.apply_standby(repo, sys, &sid, &snap, &copy, Some(&sb.path), Some(id), c.progress)?;
        state.switch_times(id, Some(r.duration_ms), None)?;
        state.switch_phase(id, SwitchPhase::Verify)?;
        let t = Instant::now();
        let (_, ok, why) = verify(c, sb, &copy, &sid.to_hex(), true)?;
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
