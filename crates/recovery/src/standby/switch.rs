//! Failover, failback and failover drills. Each is a row in `failovers` whose
//! phase is stored before the step runs, so that after a kill -9 the same command
//! resumes at that step (hooks should be idempotent, as every recovery hook).
//!
//! * failover: fence (the primary stops) -> apply (the standby rolled back or
//!   forward to the newest snapshot before the incident's compromise, by
//!   difference) -> promote -> verify -> done, with the downtime and data loss
//!   measured against the tolerance and written to the incident's timeline.
//! * failback: demote (the standby stops serving) -> backup (of the standby: it
//!   holds the newest data) -> apply (the primary brought to that snapshot, by
//!   difference) -> unfence (the primary starts) -> done.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use kura_store::repo::snapshot::Snapshot;
use kura_store::types::FileId;

use super::update::{bring_to, verify, Ctx};
use super::{hook_env, hook_failure, newest_snapshot, primary_path, run_hooks, standby_of};
use crate::config::StandbyConfig;
use crate::error::{Error, Result};
use crate::incident::Event;
use crate::orchestrate::hooks::HookStage;
use crate::state::standby::{SwitchKind, SwitchPhase, SwitchRecord};
use crate::state::State;

/// What a failover or failback works with: the same as every standby operation.
pub type Switch<'a> = Ctx<'a>;

/// Which host a switch hook runs on.
#[derive(Clone, Copy)]
enum Side {
    Primary,
    Standby,
}

/// The verdict of a priority-3 system: met when both the downtime and the data
/// lost are within the tolerance.
pub fn p3_met(downtime: Duration, data_loss: Duration, tolerance: Duration) -> bool {
    downtime <= tolerance && data_loss <= tolerance
}

impl Switch<'_> {
    fn sb(&self) -> Result<&StandbyConfig> {
        standby_of(self.sys)
    }

    /// Runs one optional hook of the standby on `side`'s host; its time is added
    /// to the switch time.
    fn hook(
        &self,
        id: i64,
        side: Side,
        stage: HookStage,
        cmd: Option<&String>,
        dir: &std::path::Path,
        snapshot: &str,
    ) -> Result<()> {
        let Some(cmd) = cmd else { return Ok(()) };
        let sb = self.sb()?;
        let t = Instant::now();
        let env = hook_env(self.sys, dir, snapshot, stage.as_str(), false);
        let runner = match side {
            Side::Primary => self.site.primary_hooks(self.runner, self.sys),
            Side::Standby => self.site.standby_hooks(self.runner, self.sys),
        };
        let res = run_hooks(runner.as_ref(), stage, std::slice::from_ref(cmd), sb, &env);
        self.state.switch_times(id, None, Some(t.elapsed().as_millis() as u64))?;
        res.map(|_| ())
            .map_err(|o| Error::invalid(format!("system {}", self.sys.name), hook_failure(stage.as_str(), &o)))
    }

    /// The row to continue: the unfinished one of this kind, or a new one.
    fn row(&self, kind: SwitchKind, incident: Option<i64>, first: SwitchPhase) -> Result<SwitchRecord> {
        match self.state.switch_unfinished(&self.sys.name, kind)? {
            Some(r) if kind != SwitchKind::Failover || r.incident == incident => Ok(r),
            Some(r) => Err(Error::invalid(
                format!("system {}", self.sys.name),
                format!(
                    "failover {} for incident {} is unfinished: finish it first (kura failover {} --incident {})",
                    r.id,
                    r.incident.unwrap_or_default(),
                    self.sys.name,
                    r.incident.unwrap_or_default()
                ),
            )),
            None => {
                let id = self.state.switch_open(&self.sys.name, kind, incident, first, (self.now)())?;
                self.state.switch(id)
            }
        }
    }

    /// Ends the row as failed with `e`, and returns `e`.
    fn fail(&self, id: i64, e: Error) -> Error {
        let _ = self.state.switch_finish(id, SwitchPhase::Failed, (self.now)(), None, None, None, Some(&e.to_string()));
        e
    }

    /// Fails the system over to its standby for `incident` (or resumes the failover).
    /// The snapshot: `pin` when given (an operator's override), else the newest
    /// before the incident's compromised-since, else (no compromised-since) the
    /// system's clean point (crate::detect), as `kura recover` chooses. A choice
    /// other than the plain newest is written to the incident's timeline and
    /// returned as the note.
    pub fn failover(
        &self,
        state_mut: &mut State,
        incident: i64,
        pin: Option<&str>,
    ) -> Result<(SwitchRecord, Option<String>)> {
        let sb = self.sb()?.clone();
        let _lock = super::lock::StandbyLock::acquire(self.state.path(), &self.sys.name, "a failover")?;
        let inc = self.state.incident(incident)?;
        let row = self.row(SwitchKind::Failover, Some(incident), SwitchPhase::Fence)?;
        let id = row.id;
        let mut note = None;
        let ctx = (incident, &mut *state_mut);
        if let Err(e) = self.failover_steps(&sb, &row, inc.fields.compromised_since, pin, &mut note, ctx) {
            return Err(self.fail(id, e));
        }
        let row = self.state.switch(id)?;
        let now = (self.now)();
        let snap_time = row.snapshot_time.unwrap_or(now);
        let downtime = now - inc.clock_start();
        let data_loss = (inc.clock_start() - snap_time).max(Duration::zero());
        let met = p3_met(downtime, data_loss, self.sys.tolerance());
        let (d, l) = (downtime.num_seconds(), data_loss.num_seconds());
        self.state.switch_finish(id, SwitchPhase::Done, now, Some(d), Some(l), Some(met), None)?;
        let ev = Event::FailedOver {
            system: self.sys.name.clone(),
            snapshot: row.snapshot.clone().unwrap_or_default(),
            downtime_secs: d,
            data_loss_secs: l,
            tolerance_secs: self.sys.tolerance().num_seconds(),
            met,
        };
        state_mut.append_event(incident, now, &ev)?;
        Ok((self.state.switch(id)?, note))
    }

    /// The snapshot a new failover applies (see `failover`), and a note for the
    /// timeline when it is not simply the newest before the compromise.
    fn choose(
        &self,
        list: &[(FileId, Snapshot)],
        compromised: Option<DateTime<Utc>>,
        pin: Option<&str>,
    ) -> Result<((FileId, Snapshot), Option<String>)> {
        let who = || format!("system {}", self.sys.name);
        let tag = self.sys.tag();
        if let Some(q) = pin {
            let (sid, snap) = self.repo.find_snapshot(q)?;
            if !snap.has_tag(&tag) || snap.partial {
                return Err(Error::invalid(
                    who(),
                    format!(
                        "snapshot {} is not a complete snapshot tagged {tag}: name one of this system's",
                        sid.short()
                    ),
                ));
            }
            let note =
                format!("system {}: failing over to snapshot {}, named by the operator", self.sys.name, sid.short());
            return Ok(((sid, snap), Some(note)));
        }
        if compromised.is_none() {
            let chooser = crate::detect::RecoveryChooser::new(self.state, &self.repo.config().id, list)?;
            let mine = |s: &Snapshot| s.has_tag(&tag) && !s.partial;
            let (chosen, note) = chooser.choose(list, &mine, &self.sys.name);
            if let Some(c) = chosen {
                return Ok((c.clone(), note));
            }
        }
        let newest = newest_snapshot(list, self.sys, compromised).cloned().ok_or_else(|| {
            Error::invalid(
                who(),
                match compromised {
                    Some(c) => format!("no complete snapshot tagged {tag} taken before the compromise ({c})"),
                    None => format!("no complete snapshot tagged {tag}"),
                },
            )
        })?;
        Ok((newest, None))
    }

    fn failover_steps(
        &self,
        sb: &StandbyConfig,
        row: &SwitchRecord,
        compromised: Option<DateTime<Utc>>,
        pin: Option<&str>,
        note: &mut Option<String>,
        (incident, state_mut): (i64, &mut State),
    ) -> Result<()> {
        let (id, mut phase) = (row.id, row.phase);
        let snap_hint = row.snapshot.clone().unwrap_or_default();
        if phase <= SwitchPhase::Fence {
            self.hook(id, Side::Primary, HookStage::Fence, sb.fence.as_ref(), &sb.path, &snap_hint)?;
            phase = SwitchPhase::Apply;
            self.state.switch_phase(id, phase)?;
        }
        let list = self.repo.snapshots()?;
        let (sid, snap) = match &row.snapshot {
            // A resumed failover keeps the snapshot it chose (and recorded) first.
            Some(hex) => self.repo.find_snapshot(hex)?,
            None => {
                let (c, n) = self.choose(&list, compromised, pin)?;
                // On the timeline before the choice is stored: a crash in between
                // chooses (and notes) again rather than losing the note.
                if let Some(text) = &n {
                    state_mut.append_event(incident, (self.now)(), &Event::Note { text: text.clone() })?;
                }
                *note = n;
                c
            }
        };
        let hex = sid.to_hex();
        if row.snapshot.is_none() {
            self.state.switch_snapshot(id, &hex, snap.time)?;
        }
        if phase <= SwitchPhase::Apply {
            let t = Instant::now();
            self.bring_standby(sb, &sid, &snap, id)?;
            self.state.switch_times(id, Some(t.elapsed().as_millis() as u64), None)?;
            phase = SwitchPhase::Promote;
            self.state.switch_phase(id, phase)?;
        }
        if phase <= SwitchPhase::Promote {
            self.hook(id, Side::Standby, HookStage::Promote, sb.promote.as_ref(), &sb.path, &hex)?;
            self.state.standby_set_serving(&self.sys.name, true)?;
            phase = SwitchPhase::Verify;
            self.state.switch_phase(id, phase)?;
        }
        let t = Instant::now();
        let (_, ok, why) = verify(self, sb, &sb.path, &hex, false)?;
        self.state.switch_times(id, None, Some(t.elapsed().as_millis() as u64))?;
        if !ok {
            return Err(Error::invalid(format!("system {}", self.sys.name), why.unwrap_or_default()));
        }
        Ok(())
    }

    /// The standby brought to the snapshot unless it holds it completely already
    /// (on an agent host the apply itself finds that out: nothing is rewritten).
    fn bring_standby(&self, sb: &StandbyConfig, sid: &FileId, snap: &Snapshot, row: i64) -> Result<()> {
        if sb.host.is_none() && kura_store::sync::held(&sb.path)? == Some(*sid) {
            return Ok(());
        }
        bring_to(self, sb, sid, snap, Some(row)).map(|_| ())
    }

    /// Brings the primary back from the standby (or resumes doing so).
    pub fn failback(&self, state_mut: &mut State) -> Result<SwitchRecord> {
        let sb = self.sb()?.clone();
        let primary = primary_path(self.sys)?;
        let _lock = super::lock::StandbyLock::acquire(self.state.path(), &self.sys.name, "a failback")?;
        let last_failover = self
            .state
            .switches(Some(&self.sys.name))?
            .into_iter()
            .rev()
            .find(|r| r.kind == SwitchKind::Failover && r.phase == SwitchPhase::Done);
        let incident = last_failover.as_ref().and_then(|r| r.incident);
        let row = self.row(SwitchKind::Failback, incident, SwitchPhase::Demote)?;
        let id = row.id;
        if let Err(e) = self.failback_steps(&sb, &row, &primary) {
            return Err(self.fail(id, e));
        }
        let now = (self.now)();
        self.state.switch_finish(id, SwitchPhase::Done, now, None, None, None, None)?;
        self.state.standby_set_serving(&self.sys.name, false)?;
        let row = self.state.switch(id)?;
        if let Some(inc) = row.incident {
            let ev =
                Event::FailedBack { system: self.sys.name.clone(), snapshot: row.snapshot.clone().unwrap_or_default() };
            state_mut.append_event(inc, now, &ev)?;
        }
        Ok(row)
    }

    fn failback_steps(&self, sb: &StandbyConfig, row: &SwitchRecord, primary: &std::path::Path) -> Result<()> {
        let (id, mut phase) = (row.id, row.phase);
        if phase <= SwitchPhase::Demote {
            self.hook(id, Side::Standby, HookStage::Demote, sb.demote.as_ref(), &sb.path, "")?;
            phase = SwitchPhase::Backup;
            self.state.switch_phase(id, phase)?;
        }
        let hex = match &row.snapshot {
            Some(h) if phase > SwitchPhase::Backup => h.clone(),
            _ => {
                // The standby holds the newest data: it is backed up as the
                // system, on its host.
                let (hex, partial) = self.site.backup_standby(self.repo, self.sys, &sb.path, self.progress)?;
                if partial {
                    return Err(Error::invalid(
                        format!("standby {}", super::update::location(sb)),
                        "some files could not be read, so its backup is partial: fix them and run kura failback again",
                    ));
                }
                let (sid, snap) = self.repo.find_snapshot(&hex)?;
                self.state.switch_snapshot(id, &sid.to_hex(), snap.time)?;
                phase = SwitchPhase::Apply;
                self.state.switch_phase(id, phase)?;
                hex
            }
        };
        let (sid, snap) = self.repo.find_snapshot(&hex)?;
        if phase <= SwitchPhase::Apply {
            let t = Instant::now();
            let r = self.site.apply_primary(self.repo, self.sys, &sid, &snap, primary, Some(id), self.progress)?;
            if r.holds.as_deref() != Some(hex.as_str()) {
                return Err(Error::invalid(
                    format!("primary {}", primary.display()),
                    format!("after the apply it holds {:?}, not snapshot {}", r.holds, sid.short()),
                ));
            }
            // The standby holds that snapshot too: recorded (nothing is rewritten).
            bring_to(self, sb, &sid, &snap, Some(id))?;
            self.state.switch_times(id, Some(t.elapsed().as_millis() as u64), None)?;
            phase = SwitchPhase::Unfence;
            self.state.switch_phase(id, phase)?;
        }
        if phase <= SwitchPhase::Unfence {
            self.hook(id, Side::Primary, HookStage::Unfence, sb.unfence.as_ref(), primary, &hex)?;
            self.state.switch_phase(id, SwitchPhase::Verify)?;
        }
        Ok(())
    }
}
