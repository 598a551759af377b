//! Warm standbys in the state database: what each holds (`standbys`), and each
//! failover, failback and failover drill (`failovers`), whose phase is stored
//! before it is acted on so that a killed one resumes (docs/STANDBY.md).

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::codec::{collect, RowRef, Stored};
use super::incidents::ts;
use super::{db_err, State};
use crate::error::Result;

/// Where a standby stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StandbyState {
    /// An update started and has not finished: it holds no snapshot completely.
    Applying,
    /// It holds `snapshot` completely.
    Current,
    /// The last update failed (`error`); it holds no snapshot completely.
    Failed,
    /// It serves in the primary's place (after a failover, until the failback).
    Serving,
}

#[derive(Clone, Debug, Serialize)]
pub struct StandbyRecord {
    pub system: String,
    pub path: String,
    #[serde(serialize_with = "super::codec::serialize")]
    pub state: StandbyState,
    pub snapshot: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    pub applying: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub apply_ms: Option<u64>,
    pub bytes_written: Option<u64>,
    pub verify_ok: Option<bool>,
    pub verified_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchKind {
    Failover,
    Failback,
    Drill,
}

/// The steps of a failover (fence, apply, promote, verify), a failback (demote,
/// backup, apply, unfence) and a drill (apply, verify), then done or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchPhase {
    Fence,
    Demote,
    Backup,
    Apply,
    Promote,
    Unfence,
    Verify,
    Done,
    Failed,
}

impl SwitchPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, SwitchPhase::Done | SwitchPhase::Failed)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SwitchRecord {
    pub id: i64,
    pub system: String,
    #[serde(serialize_with = "super::codec::serialize")]
    pub kind: SwitchKind,
    pub incident: Option<i64>,
    #[serde(serialize_with = "super::codec::serialize")]
    pub phase: SwitchPhase,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub snapshot: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    pub apply_ms: Option<u64>,
    pub switch_ms: Option<u64>,
    pub downtime_secs: Option<i64>,
    pub data_loss_secs: Option<i64>,
    pub met: Option<bool>,
    pub error: Option<String>,
}

fn standby_row(r: &Row) -> rusqlite::Result<Result<StandbyRecord>> {
    let at = RowRef { table: "standbys", row: r.get("rowid")? };
    let state: String = r.get("state")?;
    let times = (r.get::<_, Option<String>>("snapshot_time")?, r.get("applied_at")?, r.get("verified_at")?);
    let rec = StandbyRecord {
        system: r.get("system")?,
        path: r.get("path")?,
        state: StandbyState::Current,
        snapshot: r.get("snapshot")?,
        snapshot_time: None,
        applying: r.get("applying")?,
        applied_at: None,
        apply_ms: r.get::<_, Option<i64>>("apply_ms")?.map(|v| v as u64),
        bytes_written: r.get::<_, Option<i64>>("bytes_written")?.map(|v| v as u64),
        verify_ok: r.get("verify_ok")?,
        verified_at: None,
        error: r.get("error")?,
    };
    Ok((|| {
        Ok(StandbyRecord {
            state: at.parse("state", &state)?,
            snapshot_time: at.time_opt("snapshot_time", times.0)?,
            applied_at: at.time_opt("applied_at", times.1)?,
            verified_at: at.time_opt("verified_at", times.2)?,
            ..rec
        })
    })())
}

fn switch_row(r: &Row) -> rusqlite::Result<Result<SwitchRecord>> {
    let at = RowRef { table: "failovers", row: r.get("id")? };
    let (kind, phase): (String, String) = (r.get("kind")?, r.get("phase")?);
    let times: (String, Option<String>, Option<String>) =
        (r.get("started_at")?, r.get("ended_at")?, r.get("snapshot_time")?);
    let base = (
        r.get::<_, i64>("id")?,
        r.get::<_, String>("system")?,
        r.get::<_, Option<i64>>("incident")?,
        r.get::<_, Option<String>>("snapshot")?,
        r.get::<_, Option<i64>>("apply_ms")?,
        r.get::<_, Option<i64>>("switch_ms")?,
        r.get::<_, Option<i64>>("downtime_secs")?,
        r.get::<_, Option<i64>>("data_loss_secs")?,
        r.get::<_, Option<bool>>("met")?,
        r.get::<_, Option<String>>("error")?,
    );
    Ok((|| {
        Ok(SwitchRecord {
            id: base.0,
            system: base.1,
            kind: at.parse("kind", &kind)?,
            incident: base.2,
            phase: at.parse("phase", &phase)?,
            started_at: at.time("started_at", &times.0)?,
            ended_at: at.time_opt("ended_at", times.1)?,
            snapshot: base.3,
            snapshot_time: at.time_opt("snapshot_time", times.2)?,
            apply_ms: base.4.map(|v| v as u64),
            switch_ms: base.5.map(|v| v as u64),
            downtime_secs: base.6,
            data_loss_secs: base.7,
            met: base.8,
            error: base.9,
        })
    })())
}

impl State {
    pub fn standbys(&self) -> Result<Vec<StandbyRecord>> {
        let mut st =
            self.conn.prepare("SELECT rowid, * FROM standbys ORDER BY system").map_err(|e| db_err(self.path(), e))?;
        let rows = st.query_map([], standby_row).map_err(|e| db_err(self.path(), e))?;
        collect(self.path(), rows)
    }

    pub fn standby(&self, system: &str) -> Result<Option<StandbyRecord>> {
        let r = self
            .conn
            .query_row("SELECT rowid, * FROM standbys WHERE system = ?1", [system], standby_row)
            .optional()
            .map_err(|e| db_err(self.path(), e))?;
        r.transpose()
    }

    /// An update to `snapshot` starts: stored before the standby is touched.
    pub fn standby_applying(&self, system: &str, path: &str, snapshot: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO standbys (system, path, state, applying) VALUES (?1, ?2, 'applying', ?3)
                 ON CONFLICT(system) DO UPDATE SET path = ?2, applying = ?3,
                   state = CASE WHEN state = 'serving' THEN 'serving' ELSE 'applying' END,
                   snapshot = NULL, snapshot_time = NULL",
                params![system, path, snapshot],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// The standby holds `snapshot` completely.
    pub fn standby_applied(
        &self,
        system: &str,
        snapshot: &str,
        snapshot_time: DateTime<Utc>,
        now: DateTime<Utc>,
        apply_ms: u64,
        bytes_written: u64,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE standbys SET snapshot = ?2, snapshot_time = ?3, applied_at = ?4, apply_ms = ?5,
                   bytes_written = ?6, applying = NULL, error = NULL,
                   state = CASE WHEN state = 'serving' THEN 'serving' ELSE 'current' END
                 WHERE system = ?1",
                params![system, snapshot, ts(snapshot_time), ts(now), apply_ms as i64, bytes_written as i64],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn standby_failed(&self, system: &str, path: &str, error: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO standbys (system, path, state, error) VALUES (?1, ?2, 'failed', ?3)
                 ON CONFLICT(system) DO UPDATE SET error = ?3,
                   state = CASE WHEN state = 'serving' THEN 'serving' ELSE 'failed' END",
                params![system, path, error],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn standby_verified(&self, system: &str, ok: bool, now: DateTime<Utc>, error: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE standbys SET verify_ok = ?2, verified_at = ?3, error = COALESCE(?4, error) WHERE system = ?1",
                params![system, ok, ts(now), error],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn standby_set_serving(&self, system: &str, serving: bool) -> Result<()> {
        let state = if serving { "serving" } else { "current" };
        self.conn
            .execute("UPDATE standbys SET state = ?2 WHERE system = ?1", params![system, state])
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// Starts a failover, failback or drill; returns its id.
    pub fn switch_open(
        &self,
        system: &str,
        kind: SwitchKind,
        incident: Option<i64>,
        phase: SwitchPhase,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO failovers (system, kind, incident, phase, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![system, kind.stored(), incident, phase.stored(), ts(now)],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The unfinished failover (or failback, drill) of a system, to resume.
    pub fn switch_unfinished(&self, system: &str, kind: SwitchKind) -> Result<Option<SwitchRecord>> {
        let r = self
            .conn
            .query_row(
                "SELECT * FROM failovers WHERE system = ?1 AND kind = ?2 AND phase NOT IN ('done', 'failed')
                 ORDER BY id DESC LIMIT 1",
                params![system, kind.stored()],
                switch_row,
            )
            .optional()
            .map_err(|e| db_err(self.path(), e))?;
        r.transpose()
    }

    pub fn switch(&self, id: i64) -> Result<SwitchRecord> {
        self.conn
            .query_row("SELECT * FROM failovers WHERE id = ?1", [id], switch_row)
            .map_err(|e| db_err(self.path(), e))?
    }

    /// Every failover, failback and drill, oldest first (of one system, if given).
    pub fn switches(&self, system: Option<&str>) -> Result<Vec<SwitchRecord>> {
        let mut st = self
            .conn
            .prepare("SELECT * FROM failovers WHERE ?1 IS NULL OR system = ?1 ORDER BY id")
            .map_err(|e| db_err(self.path(), e))?;
        let rows = st.query_map([system], switch_row).map_err(|e| db_err(self.path(), e))?;
        collect(self.path(), rows)
    }

    pub fn switch_phase(&self, id: i64, phase: SwitchPhase) -> Result<()> {
        self.conn
            .execute("UPDATE failovers SET phase = ?2 WHERE id = ?1", params![id, phase.stored()])
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn switch_snapshot(&self, id: i64, snapshot: &str, time: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE failovers SET snapshot = ?2, snapshot_time = ?3 WHERE id = ?1",
                params![id, snapshot, ts(time)],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn switch_times(&self, id: i64, apply_ms: Option<u64>, switch_ms: Option<u64>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE failovers SET apply_ms = COALESCE(?2, apply_ms),
                   switch_ms = COALESCE(switch_ms, 0) + COALESCE(?3, 0) WHERE id = ?1",
                params![id, apply_ms.map(|v| v as i64), switch_ms.map(|v| v as i64)],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// Ends a failover (or failback, drill): done with its measured figures, or failed with the error.
    #[allow(clippy::too_many_arguments)]
    pub fn switch_finish(
        &self,
        id: i64,
        phase: SwitchPhase,
        now: DateTime<Utc>,
        downtime_secs: Option<i64>,
        data_loss_secs: Option<i64>,
        met: Option<bool>,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE failovers SET phase = ?2, ended_at = ?3, downtime_secs = ?4, data_loss_secs = ?5,
                   met = ?6, error = ?7 WHERE id = ?1",
                params![id, phase.stored(), ts(now), downtime_secs, data_loss_secs, met, error],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }
}
