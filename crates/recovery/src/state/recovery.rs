//! Recovery runs and drills in the state database: one row per run, one per
//! system. The engine writes a system's new phase here before acting on it.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::codec::{self, collect, RowRef, Stored};
use super::incidents::ts;
use super::{db_err, State};
use crate::error::{Error, Result};
use crate::orchestrate::deadline::{Alert, Verdict};
use crate::orchestrate::hooks::HookOutcome;
use crate::orchestrate::queue::Phase;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Recovery,
    Drill,
}

/// Where a run stands: running until `execute` ends it; done when every system
/// is done, failed when one failed or was skipped (a missed deadline alone
/// leaves it done; the run's outcome counts those).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Done,
    Failed,
}

/// What the checks of the restored files found: the restore's own verification
/// (every restored file re-read and compared with the snapshot's content hashes)
/// and secure restore's quarantine. Stored as JSON in `verify`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub ok: bool,
    pub files_verified: u64,
    /// The first mismatches (at most 20), each "path: reason".
    #[serde(default)]
    pub failures: Vec<String>,
    /// The files the plan's scan moved to the quarantine (`on_scan_hit = "quarantine"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crate::detect::quarantine::Quarantined>,
}

/// Which repository a run restores from. Stored (as `local` / `remote`) with the
/// run, so a resumed run never switches sites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Site {
    /// The config's `[repository]`.
    #[default]
    Local,
    /// The config's `[remote]`, the off-site copy.
    Remote,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Site::Local => "local",
            Site::Remote => "remote",
        })
    }
}

impl std::str::FromStr for Site {
    type Err = Error;
    fn from_str(s: &str) -> Result<Site> {
        match s {
            "local" => Ok(Site::Local),
            "remote" => Ok(Site::Remote),
            _ => Err(Error::invalid("site", format!("{s:?}: use local or remote"))),
        }
    }
}

/// Options a run was started with, stored so a resumed run behaves the same.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunOptions {
    /// Which repository it restores from.
    pub from: Site,
    /// The repository location actually used.
    pub repository: String,
    pub parallel: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default)]
    pub keep_sandbox: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// `kura recover --on SYSTEM=HOST`: systems restored on another agent host.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub on: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub kind: RunKind,
    pub incident: Option<i64>,
    pub plan_path: String,
    pub plan_name: String,
    pub clock_start: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub options: RunOptions,
}

#[derive(Clone, Debug, Serialize)]
pub struct SystemRecord {
    pub name: String,
    pub priority: u8,
    pub deadline_secs: Option<i64>,
    pub state: Phase,
    pub snapshot: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    pub target: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub bytes: u64,
    pub bytes_total: u64,
    pub files: u64,
    pub restore_ms: Option<u64>,
    #[serde(serialize_with = "codec::serialize_opt")]
    pub verdict: Option<Verdict>,
    pub margin_secs: Option<i64>,
    /// The last alert sent for it.
    pub alert: Option<Alert>,
    pub hooks: Vec<HookOutcome>,
    pub verify: Option<VerifyRecord>,
    pub error: Option<String>,
    /// It failed over to its standby (at `target`) instead of being restored.
    #[serde(default)]
    pub failover: bool,
    /// The fleet host it runs (or ran) on: its agent, or its replacement or `--on`
    /// host. `None`: the coordinator's own machine.
    #[serde(default)]
    pub ran_on: Option<String>,
}

impl SystemRecord {
    /// How much of its snapshot is restored, in percent (capped at 100); `None`
    /// while the size is unknown.
    pub fn progress_percent(&self) -> Option<f64> {
        (self.bytes_total > 0).then(|| (self.bytes as f64 * 100.0 / self.bytes_total as f64).min(100.0))
    }
}

/// What a restore step did: the figures `set_restored` records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    /// Pack objects read.
    pub objects: u64,
    pub restore_ms: u64,
}

/// One successful drill of a system: what its restore did and when it ended.
/// `dirs` and `objects` are `None` in rows recorded before they were.
#[derive(Clone, Debug, PartialEq)]
pub struct DrillSample {
    pub bytes: u64,
    pub files: u64,
    pub dirs: Option<u64>,
    pub objects: Option<u64>,
    /// At least 1.
    pub restore_ms: u64,
    pub at: DateTime<Utc>,
}

/// A drill review: when, the evaluation, the improvement actions.
pub type DrillReview = (DateTime<Utc>, String, Vec<String>);

/// A new system row: its plan facts and the snapshot chosen for it.
pub struct NewSystem {
    pub name: String,
    pub priority: u8,
    pub deadline_secs: Option<i64>,
    pub snapshot: Option<(String, DateTime<Utc>)>,
    pub bytes_total: u64,
    pub target: String,
    /// Set when the system cannot run at all (e.g. no snapshot before the compromise).
    pub error: Option<String>,
    /// It fails over to its standby instead of being restored (docs/STANDBY.md).
    pub failover: bool,
}

/// Reads a `recovery_systems` row (selected with `rowid AS row_no`). The outer
/// error is SQLite's; the inner one a stored value that does not parse.
fn system_row(r: &Row<'_>) -> rusqlite::Result<Result<SystemRecord>> {
    let at = RowRef { table: "recovery_systems", row: r.get("row_no")? };
    let (state, verdict, alert): (String, Option<String>, Option<String>) =
        (r.get("state")?, r.get("verdict")?, r.get("alert")?);
    let (hooks, verify): (Option<String>, Option<String>) = (r.get("hooks")?, r.get("verify")?);
    let times: [Option<String>; 3] = [r.get("snapshot_time")?, r.get("started_at")?, r.get("ended_at")?];
    let count = |c: &str| r.get::<_, Option<i64>>(c).map(|v| v.unwrap_or(0) as u64);
    let mut rec = SystemRecord {
        name: r.get("name")?,
        priority: r.get("priority")?,
        deadline_secs: r.get("deadline_secs")?,
        state: Phase::Waiting,
        snapshot: r.get("snapshot")?,
        snapshot_time: None,
        target: r.get("target")?,
        started_at: None,
        ended_at: None,
        bytes: count("bytes")?,
        bytes_total: count("bytes_total")?,
        files: count("files")?,
        restore_ms: r.get::<_, Option<i64>>("restore_ms")?.map(|v| v as u64),
        verdict: None,
        margin_secs: r.get("margin_secs")?,
        alert: None,
        hooks: vec![],
        verify: None,
        error: r.get("error")?,
        failover: r.get("failover")?,
        ran_on: r.get("ran_on")?,
    };
    let [snapshot_time, started_at, ended_at] = times;
    Ok((|| {
        rec.state = at.parse("state", &state)?;
        rec.verdict = at.parse_opt("verdict", verdict)?;
        rec.alert = at.parse_opt("alert", alert)?;
        rec.hooks = hooks.map(|h| at.json("hooks", &h)).transpose()?.unwrap_or_default();
        rec.verify = verify.map(|v| at.json("verify", &v)).transpose()?;
        rec.snapshot_time = at.time_opt("snapshot_time", snapshot_time)?;
        rec.started_at = at.time_opt("started_at", started_at)?;
        rec.ended_at = at.time_opt("ended_at", ended_at)?;
        Ok(rec)
    })())
}

/// Reads a `recovery_runs` row; errors as in [`system_row`].
fn run_row(r: &Row<'_>) -> rusqlite::Result<Result<RunRecord>> {
    let id: i64 = r.get("id")?;
    let at = RowRef { table: "recovery_runs", row: id };
    let (kind, status, options): (String, String, String) = (r.get("kind")?, r.get("status")?, r.get("options")?);
    let (clock_start, started_at, ended_at): (String, String, Option<String>) =
        (r.get("clock_start")?, r.get("started_at")?, r.get("ended_at")?);
    let (incident, plan_path, plan_name) = (r.get("incident")?, r.get("plan_path")?, r.get("plan_name")?);
    Ok((|| {
        Ok(RunRecord {
            id,
            kind: at.parse("kind", &kind)?,
            incident,
            plan_path,
            plan_name,
            clock_start: at.time("clock_start", &clock_start)?,
            started_at: at.time("started_at", &started_at)?,
            ended_at: at.time_opt("ended_at", ended_at)?,
            status: at.parse("status", &status)?,
            options: at.json("options", &options)?,
        })
    })())
}

impl State {
    /// Creates a run and all its system rows in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn create_recovery_run(
        &mut self,
        kind: RunKind,
        incident: Option<i64>,
        plan_path: &str,
        plan_name: &str,
        clock_start: DateTime<Utc>,
        now: DateTime<Utc>,
        options: &RunOptions,
        systems: &[NewSystem],
    ) -> Result<i64> {
        let path = self.path().to_path_buf();
        let e = |e| db_err(&path, e);
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO recovery_runs (kind, incident, plan_path, plan_name, clock_start, started_at, status, options)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                kind.stored(),
                incident,
                plan_path,
                plan_name,
                ts(clock_start),
                ts(now),
                RunStatus::Running.stored(),
                serde_json::to_string(options).expect("options serialize")
            ],
        )
        .map_err(e)?;
        let run = tx.last_insert_rowid();
        for s in systems {
            let (state, ended) =
                if s.error.is_some() { (Phase::Failed, Some(ts(now))) } else { (Phase::Waiting, None) };
            tx.execute(
                "INSERT INTO recovery_systems (run, name, priority, deadline_secs, state, snapshot, snapshot_time,
                 target, bytes_total, error, ended_at, failover)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run,
                    s.name,
                    s.priority,
                    s.deadline_secs,
                    state.stored(),
                    s.snapshot.as_ref().map(|x| x.0.clone()),
                    s.snapshot.as_ref().map(|x| ts(x.1)),
                    s.target,
                    s.bytes_total as i64,
                    s.error,
                    ended,
                    s.failover
                ],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(run)
    }

    pub fn recovery_run(&self, id: i64) -> Result<RunRecord> {
        self.conn
            .query_row("SELECT * FROM recovery_runs WHERE id = ?1", [id], run_row)
            .optional()
            .map_err(|e| db_err(self.path(), e))?
            .ok_or_else(|| Error::invalid(format!("run {id}"), "no such recovery run or drill in the state database"))?
    }

    pub fn recovery_runs(&self, kind: Option<RunKind>, incident: Option<i64>) -> Result<Vec<RunRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT * FROM recovery_runs WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR incident = ?2)
                 ORDER BY id",
            )
            .map_err(|e| db_err(self.path(), e))?;
        let rows =
            st.query_map(params![kind.map(|k| k.stored()), incident], run_row).map_err(|e| db_err(self.path(), e))?;
        collect(self.path(), rows)
    }

    /// The unfinished run of this incident (and plan), if a previous `recover` was interrupted.
    pub fn unfinished_recovery_run(
        &self,
        kind: RunKind,
        incident: Option<i64>,
        plan_path: &str,
    ) -> Result<Option<RunRecord>> {
        Ok(self
            .recovery_runs(Some(kind), incident)?
            .into_iter()
            .rev()
            .find(|r| r.status == RunStatus::Running && r.plan_path == plan_path && r.incident == incident))
    }

    /// A run's systems in execution order: the order `orchestrate::prepare` stored
    /// them in (the plan's order).
    pub fn run_systems(&self, run: i64) -> Result<Vec<SystemRecord>> {
        let mut st = self
            .conn
            .prepare("SELECT rowid AS row_no, * FROM recovery_systems WHERE run = ?1 ORDER BY rowid")
            .map_err(|e| db_err(self.path(), e))?;
        let rows = st.query_map([run], system_row).map_err(|e| db_err(self.path(), e))?;
        collect(self.path(), rows)
    }

    /// One system of a run.
    pub fn run_system(&self, run: i64, name: &str) -> Result<SystemRecord> {
        self.conn
            .query_row(
                "SELECT rowid AS row_no, * FROM recovery_systems WHERE run = ?1 AND name = ?2",
                params![run, name],
                system_row,
            )
            .map_err(|e| db_err(self.path(), e))?
    }

    /// Stores a system's new phase (and when it started, on the first active phase).
    pub fn set_phase(&self, run: i64, name: &str, phase: Phase, now: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE recovery_systems SET state = ?3,
                   started_at = CASE WHEN started_at IS NULL AND ?5 THEN ?4 ELSE started_at END
                 WHERE run = ?1 AND name = ?2",
                params![run, name, phase.stored(), ts(now), phase.is_active()],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// Records the host a system runs on in this run (before it starts there).
    pub fn set_ran_on(&self, run: i64, name: &str, host: Option<&str>) -> Result<()> {
        self.conn
            .execute("UPDATE recovery_systems SET ran_on = ?3 WHERE run = ?1 AND name = ?2", params![run, name, host])
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn set_progress(&self, run: i64, name: &str, bytes: u64, total: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE recovery_systems SET bytes = ?3, bytes_total = MAX(COALESCE(bytes_total, 0), ?4)
                 WHERE run = ?1 AND name = ?2",
                params![run, name, bytes as i64, total as i64],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn set_hooks(&self, run: i64, name: &str, hooks: &[HookOutcome]) -> Result<()> {
        self.conn
            .execute(
                "UPDATE recovery_systems SET hooks = ?3 WHERE run = ?1 AND name = ?2",
                params![run, name, serde_json::to_string(hooks).expect("hooks serialize")],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn set_alert(&self, run: i64, name: &str, alert: Alert) -> Result<()> {
        self.conn
            .execute(
                "UPDATE recovery_systems SET alert = ?3 WHERE run = ?1 AND name = ?2",
                params![run, name, alert.stored()],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// Records the restore step's figures.
    pub fn set_restored(&self, run: i64, name: &str, r: &Restored, verify: &VerifyRecord) -> Result<()> {
        self.conn
            .execute(
                "UPDATE recovery_systems SET bytes = ?3, files = ?4, restore_ms = ?5, verify = ?6, dirs = ?7,
                   objects = ?8 WHERE run = ?1 AND name = ?2",
                params![
                    run,
                    name,
                    r.bytes as i64,
                    r.files as i64,
                    r.restore_ms as i64,
                    serde_json::to_string(verify).expect("verify serializes"),
                    r.dirs as i64,
                    r.objects as i64
                ],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// Secure restore's quarantine of a system, kept with its verification.
    pub fn set_quarantined(&self, run: i64, name: &str, q: &crate::detect::quarantine::Quarantined) -> Result<()> {
        let mut verify = self.run_system(run, name)?.verify.unwrap_or_default();
        verify.quarantine = Some(q.clone());
        self.conn
            .execute(
                "UPDATE recovery_systems SET verify = ?3 WHERE run = ?1 AND name = ?2",
                params![run, name, serde_json::to_string(&verify).expect("verify serializes")],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    /// A system's end: done, failed or skipped, with its verdict.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_system(
        &self,
        run: i64,
        name: &str,
        phase: Phase,
        now: DateTime<Utc>,
        verdict: Option<Verdict>,
        margin: Option<i64>,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE recovery_systems SET state = ?3, ended_at = ?4, verdict = ?5, margin_secs = ?6,
                   error = COALESCE(?7, error) WHERE run = ?1 AND name = ?2",
                params![run, name, phase.stored(), ts(now), verdict.map(Stored::stored), margin, error],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn finish_recovery_run(&self, run: i64, status: RunStatus, now: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE recovery_runs SET status = ?2, ended_at = ?3 WHERE id = ?1",
                params![run, status.stored(), ts(now)],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn add_drill_review(&self, run: i64, at: DateTime<Utc>, evaluation: &str, actions: &[String]) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO drill_reviews (run, at, evaluation, actions) VALUES (?1, ?2, ?3, ?4)",
                params![run, ts(at), evaluation, serde_json::to_string(actions).expect("actions serialize")],
            )
            .map_err(|e| db_err(self.path(), e))?;
        Ok(())
    }

    pub fn drill_reviews(&self, run: i64) -> Result<Vec<DrillReview>> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, evaluation, actions FROM drill_reviews WHERE run = ?1 ORDER BY id")
            .map_err(|e| db_err(self.path(), e))?;
        let rows = st
            .query_map([run], |r| {
                let row = RowRef { table: "drill_reviews", row: r.get(0)? };
                let (at, evaluation, actions): (String, String, String) = (r.get(1)?, r.get(2)?, r.get(3)?);
                Ok((|| Ok((row.time("at", &at)?, evaluation, row.json("actions", &actions)?)))())
            })
            .map_err(|e| db_err(self.path(), e))?;
        collect(self.path(), rows)
    }

    /// Restore throughput (bytes per second) of past drills of one system, newest first.
    pub fn drill_throughputs(&self, system: &str) -> Result<Vec<f64>> {
        Ok(self.drill_samples(system)?.iter().map(|d| d.bytes as f64 * 1000.0 / d.restore_ms as f64).collect())
    }

    /// What each successful drill of one system restored and how long the restore
    /// took, newest first (the forecast's cost model learns from these).
    pub fn drill_samples(&self, system: &str) -> Result<Vec<DrillSample>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.rowid, s.bytes, s.files, s.dirs, s.objects, s.restore_ms, s.ended_at, r.started_at
                 FROM recovery_systems s JOIN recovery_runs r ON r.id = s.run
                 WHERE r.kind = ?2 AND s.name = ?1 AND s.state = ?3 AND s.restore_ms > 0
                 ORDER BY r.id DESC",
            )
            .map_err(|e| db_err(self.path(), e))?;
        let rows = st
            .query_map(params![system, RunKind::Drill.stored(), Phase::Done.stored()], |r| {
                let row = RowRef { table: "recovery_systems", row: r.get(0)? };
                let n = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.map(|v| v.max(0) as u64));
                let (bytes, files, dirs, objects, ms) = (n(1)?, n(2)?, n(3)?, n(4)?, n(5)?);
                let (ended, started): (Option<String>, String) = (r.get(6)?, r.get(7)?);
                Ok((|| {
                    let at = match ended {
                        Some(e) => row.time("ended_at", &e)?,
                        None => row.time("started_at", &started)?,
                    };
                    Ok(DrillSample {
                        bytes: bytes.unwrap_or(0),
                        files: files.unwrap_or(0),
                        dirs,
                        objects,
                        restore_ms: ms.unwrap_or(1).max(1),
                        at,
                    })
                })())
            })
            .map_err(|e| db_err(self.path(), e))?;
        collect(self.path(), rows)
    }
}
