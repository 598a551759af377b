//! Job runs and schedule state in the state database (tables `job_runs` and
//! `schedule_state`, MIGRATIONS[0]). Times are RFC 3339 UTC strings; they sort as text.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::codec::{collect, RowRef, Stored};
use super::{db_err, State};
use crate::error::{Error, Result};
use crate::schedule::{JobKind, Trigger};

/// How a run ended (or that it has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Running,
    /// Done without problems.
    Ok,
    /// Done, with warnings (a backup that could not read some files).
    Partial,
    Failed,
    /// The daemon stopped (or was killed) before the run ended.
    Interrupted,
}

impl Outcome {
    /// Its stored text (`state::codec`, the one mapping), for logs.
    pub fn as_str(self) -> &'static str {
        self.stored()
    }
}

/// One row of `job_runs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRun {
    pub id: i64,
    pub job: JobKind,
    pub system: Option<String>,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    pub bytes: Option<u64>,
    pub snapshot: Option<String>,
    pub error: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// How a run ended, for [`State::finish_run`].
#[derive(Clone, Debug)]
pub struct RunEnd {
    pub outcome: Outcome,
    pub bytes: Option<u64>,
    pub snapshot: Option<String>,
    pub error: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Which runs [`State::list_runs`] returns: newest first.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub system: Option<String>,
    pub job: Option<JobKind>,
    pub limit: Option<usize>,
}

/// One row of `schedule_state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScheduleState {
    pub job: String,
    pub last_slot: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A time of `schedule_state` (keyed by job, not by row: SQLite's conversion
/// error names the column).
fn opt_ts(s: Option<String>) -> rusqlite::Result<Option<DateTime<Utc>>> {
    s.as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
        })
        .transpose()
}

/// Records how a run ended, on a connection or inside a transaction.
pub(crate) fn finish_run_on(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    id: i64,
    at: DateTime<Utc>,
    end: &RunEnd,
) -> Result<()> {
    let detail = end.detail.as_ref().map(|d| d.to_string());
    let n = conn
        .execute(
            "UPDATE job_runs SET ended_at = ?2, outcome = ?3, bytes = ?4, snapshot = ?5, error = ?6, detail = ?7
             WHERE id = ?1",
            params![id, ts(at), end.outcome.as_str(), end.bytes.map(|b| b as i64), end.snapshot, end.error, detail],
        )
        .map_err(|e| db_err(path, e))?;
    if n == 0 {
        return Err(Error::invalid(format!("job run {id}"), "no such run in the state database"));
    }
    Ok(())
}

const COLUMNS: &str = "id, job, system, trigger, started_at, ended_at, outcome, bytes, snapshot, error, detail";

/// Reads a `job_runs` row: SQLite's error outside, a stored value's inside.
fn row_to_run(r: &Row<'_>) -> rusqlite::Result<Result<JobRun>> {
    let id: i64 = r.get(0)?;
    let at = RowRef { table: "job_runs", row: id };
    let (trigger, outcome): (String, String) = (r.get(3)?, r.get(6)?);
    let (started_at, ended_at): (String, Option<String>) = (r.get(4)?, r.get(5)?);
    let detail: Option<String> = r.get(10)?;
    let (job, system, error, snapshot): (String, _, _, _) = (r.get(1)?, r.get(2)?, r.get(9)?, r.get(8)?);
    let bytes = r.get::<_, Option<i64>>(7)?.map(|b| b.max(0) as u64);
    Ok((|| {
        Ok(JobRun {
            id,
            job: at.parse("job", &job)?,
            system,
            trigger: at.parse("trigger", &trigger)?,
            started_at: at.time("started_at", &started_at)?,
            ended_at: at.time_opt("ended_at", ended_at)?,
            outcome: at.parse("outcome", &outcome)?,
            bytes,
            snapshot,
            error,
            detail: detail.map(|d| at.json("detail", &d)).transpose()?,
        })
    })())
}

impl State {
    fn err(&self, e: rusqlite::Error) -> Error {
        db_err(self.path(), e)
    }

    /// Records that a run started; returns its id. Committed before the job starts.
    pub fn start_run(&self, job: JobKind, system: Option<&str>, trigger: Trigger, at: DateTime<Utc>) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO job_runs (job, system, trigger, started_at, outcome) VALUES (?1, ?2, ?3, ?4, 'running')",
                params![job.as_str(), system, trigger.as_str(), ts(at)],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how a run ended.
    pub fn finish_run(&self, id: i64, at: DateTime<Utc>, end: &RunEnd) -> Result<()> {
        finish_run_on(&self.conn, self.path(), id, at, end)
    }

    pub fn run(&self, id: i64) -> Result<Option<JobRun>> {
        self.conn
            .query_row(&format!("SELECT {COLUMNS} FROM job_runs WHERE id = ?1"), [id], row_to_run)
            .optional()
            .map_err(|e| self.err(e))?
            .transpose()
    }

    /// Runs, newest first, filtered by system and job kind.
    pub fn list_runs(&self, f: &RunFilter) -> Result<Vec<JobRun>> {
        let limit = f.limit.map_or(-1, |l| l as i64);
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM job_runs
                 WHERE (?1 IS NULL OR system = ?1) AND (?2 IS NULL OR job = ?2)
                 ORDER BY started_at DESC, id DESC LIMIT ?3"
            ))
            .map_err(|e| self.err(e))?;
        let rows =
            st.query_map(params![f.system, f.job.map(JobKind::as_str), limit], row_to_run).map_err(|e| self.err(e))?;
        collect(self.path(), rows)
    }

    /// Runs still marked `running`, oldest first.
    pub fn running_runs(&self) -> Result<Vec<JobRun>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM job_runs WHERE outcome = ?1 ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([Outcome::Running.stored()], row_to_run).map_err(|e| self.err(e))?;
        collect(self.path(), rows)
    }

    /// Marks runs still `running` as `interrupted` with `reason`: on daemon start (left
    /// by a daemon that was killed) and at shutdown (runs that did not finish in time).
    /// `only` limits it to these ids. Returns how many were marked.
    pub fn mark_interrupted(&self, at: DateTime<Utc>, reason: &str, only: Option<&[i64]>) -> Result<usize> {
        let mut n = 0;
        for r in self.running_runs()? {
            if only.is_some_and(|ids| !ids.contains(&r.id)) {
                continue;
            }
            n += self
                .conn
                .execute(
                    "UPDATE job_runs SET outcome = ?4, ended_at = ?2, error = ?3
                     WHERE id = ?1 AND outcome = ?5",
                    params![r.id, ts(at), reason, Outcome::Interrupted.stored(), Outcome::Running.stored()],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(n)
    }

    /// The newest backup of `system` that wrote a snapshot (outcome ok or partial).
    pub fn last_good_backup(&self, system: &str) -> Result<Option<JobRun>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM job_runs
                     WHERE job = 'backup' AND system = ?1 AND outcome IN (?2, ?3)
                     ORDER BY ended_at DESC, id DESC LIMIT 1"
                ),
                params![system, Outcome::Ok.stored(), Outcome::Partial.stored()],
                row_to_run,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .transpose()
    }

    /// How many runs each job kind has, by outcome (running ones included), in
    /// job then outcome order.
    pub fn run_counts(&self) -> Result<Vec<(JobKind, Outcome, u64)>> {
        let mut st = self
            .conn
            .prepare("SELECT MIN(id), job, outcome, COUNT(*) FROM job_runs GROUP BY job, outcome ORDER BY job, outcome")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                let at = RowRef { table: "job_runs", row: r.get(0)? };
                let (job, outcome, n): (String, String, i64) = (r.get(1)?, r.get(2)?, r.get(3)?);
                Ok((|| Ok((at.parse("job", &job)?, at.parse("outcome", &outcome)?, n.max(0) as u64)))())
            })
            .map_err(|e| self.err(e))?;
        collect(self.path(), rows)
    }

    /// The newest run of `job` (any system) with one of `outcomes`.
    pub fn last_run_with(&self, job: JobKind, outcomes: &[Outcome]) -> Result<Option<JobRun>> {
        let list: Vec<String> = outcomes.iter().map(|o| format!("'{}'", o.stored())).collect();
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM job_runs WHERE job = ?1 AND outcome IN ({})
                     ORDER BY started_at DESC, id DESC LIMIT 1",
                    list.join(", ")
                ),
                [job.as_str()],
                row_to_run,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .transpose()
    }

    /// The slot the last run of schedule `key` (`backup:web`, `prune`, ...) was for.
    pub fn schedule_state(&self, key: &str) -> Result<Option<ScheduleState>> {
        self.conn
            .query_row("SELECT job, last_slot, last_run FROM schedule_state WHERE job = ?1", [key], |r| {
                Ok(ScheduleState { job: r.get(0)?, last_slot: opt_ts(r.get(1)?)?, last_run: opt_ts(r.get(2)?)? })
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Remembers that the run for `slot` of schedule `key` is done (`run_at`: when it
    /// ran; `None` when the slot was skipped by the catch-up policy).
    pub fn set_schedule_state(&self, key: &str, slot: DateTime<Utc>, run_at: Option<DateTime<Utc>>) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO schedule_state (job, last_slot, last_run) VALUES (?1, ?2, ?3)
                 ON CONFLICT(job) DO UPDATE SET last_slot = excluded.last_slot,
                     last_run = COALESCE(excluded.last_run, schedule_state.last_run)",
                params![key, ts(slot), run_at.map(ts)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, s).unwrap()
    }

    fn ok(bytes: u64, snap: &str) -> RunEnd {
        RunEnd {
            outcome: Outcome::Ok,
            bytes: Some(bytes),
            snapshot: Some(snap.into()),
            error: None,
            detail: Some(serde_json::json!({"files": 3})),
        }
    }

    #[test]
    fn runs_are_recorded_listed_and_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("state.db")).unwrap();
        let a = s.start_run(JobKind::Backup, Some("web"), Trigger::Schedule, t(1)).unwrap();
        s.finish_run(a, t(2), &ok(100, "aaaa")).unwrap();
        let b = s.start_run(JobKind::Backup, Some("db"), Trigger::CatchUp, t(3)).unwrap();
        let c = s.start_run(JobKind::Prune, None, Trigger::Manual, t(4)).unwrap();
        s.finish_run(
            c,
            t(5),
            &RunEnd { outcome: Outcome::Failed, bytes: None, snapshot: None, error: Some("boom".into()), detail: None },
        )
        .unwrap();

        let all = s.list_runs(&RunFilter::default()).unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![c, b, a]);
        let web = s.list_runs(&RunFilter { system: Some("web".into()), ..Default::default() }).unwrap();
        assert_eq!(web.len(), 1);
        assert_eq!(web[0].bytes, Some(100));
        assert_eq!(web[0].snapshot.as_deref(), Some("aaaa"));
        assert_eq!(web[0].detail, Some(serde_json::json!({"files": 3})));
        assert_eq!(web[0].ended_at, Some(t(2)));
        assert_eq!(s.list_runs(&RunFilter { limit: Some(2), ..Default::default() }).unwrap().len(), 2);
        assert_eq!(s.running_runs().unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), vec![b]);
        assert_eq!(s.run(c).unwrap().unwrap().error.as_deref(), Some("boom"));

        assert_eq!(s.mark_interrupted(t(9), "the daemon stopped", Some(&[a])).unwrap(), 0);
        assert_eq!(s.mark_interrupted(t(9), "the daemon stopped", None).unwrap(), 1);
        let r = s.run(b).unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Interrupted);
        assert_eq!(r.trigger, Trigger::CatchUp);
        assert!(s.running_runs().unwrap().is_empty());
        assert!(s.finish_run(999, t(9), &ok(1, "x")).is_err());
    }

    #[test]
    fn last_good_backup_ignores_failures() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("state.db")).unwrap();
        assert!(s.last_good_backup("web").unwrap().is_none());
        let a = s.start_run(JobKind::Backup, Some("web"), Trigger::Schedule, t(1)).unwrap();
        s.finish_run(a, t(2), &ok(1, "first")).unwrap();
        let b = s.start_run(JobKind::Backup, Some("web"), Trigger::Schedule, t(3)).unwrap();
        s.finish_run(
            b,
            t(4),
            &RunEnd { outcome: Outcome::Failed, bytes: None, snapshot: None, error: None, detail: None },
        )
        .unwrap();
        let c = s.start_run(JobKind::Backup, Some("other"), Trigger::Schedule, t(5)).unwrap();
        s.finish_run(c, t(6), &ok(1, "other")).unwrap();
        assert_eq!(s.last_good_backup("web").unwrap().unwrap().snapshot.as_deref(), Some("first"));
        assert_eq!(s.last_run_with(JobKind::Backup, &[Outcome::Failed]).unwrap().unwrap().id, b);
    }

    #[test]
    fn schedule_state_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let s = State::open(&p).unwrap();
        assert!(s.schedule_state("backup:web").unwrap().is_none());
        s.set_schedule_state("backup:web", t(0), Some(t(1))).unwrap();
        s.set_schedule_state("backup:web", t(0) + Duration::hours(1), None).unwrap();
        drop(s);
        let s = State::open(&p).unwrap();
        let st = s.schedule_state("backup:web").unwrap().unwrap();
        assert_eq!(st.last_slot, Some(t(0) + Duration::hours(1)));
        assert_eq!(st.last_run, Some(t(1)), "a skipped slot keeps the last real run");
    }
}
