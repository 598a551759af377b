//! Detection in the state database (tables of the detection migration): verdicts
//! per snapshot with the operator's false-positive marks, and holds on snapshots.
//! Scan results live in `crate::detect::scan`'s functions below.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::incidents::{parse_ts, ts};
use super::{db_err, State};
use crate::detect::rules::Verdict;
use crate::error::{Error, Result};

/// A stored verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerdictRow {
    pub repo: String,
    pub snapshot: String,
    pub system: Option<String>,
    pub snapshot_time: DateTime<Utc>,
    pub verdict: Verdict,
    pub assessed_at: DateTime<Utc>,
    /// When an operator marked it a false positive.
    pub false_positive_at: Option<DateTime<Utc>>,
    pub false_positive_note: Option<String>,
    /// The draft incident its suspect verdict opened.
    pub incident: Option<i64>,
    /// The signals' headline figures, for the report's timeline (0 when unmeasured).
    pub change_rate: f64,
    pub incompressible: f64,
}

/// What the `reasons` column holds: the verdict and the headline figures.
#[derive(Serialize, serde::Deserialize)]
struct Stored {
    #[serde(flatten)]
    verdict: Verdict,
    #[serde(default)]
    change_rate: f64,
    #[serde(default)]
    incompressible: f64,
}

/// A hold keeps a snapshot from forget and prune until it is released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub id: i64,
    pub repo: String,
    pub snapshot: String,
    pub system: Option<String>,
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl State {
    /// Stores (or replaces) a snapshot's verdict; its false-positive mark and its
    /// incident are kept.
    pub fn record_verdict(
        &mut self,
        repo: &str,
        system: Option<&str>,
        a: &crate::detect::Assessed,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (snapshot, snapshot_time, verdict, signals) = (a.id.to_hex(), a.time, &a.verdict, a.signals.as_ref());
        let path = self.path().to_path_buf();
        let stored = Stored {
            verdict: verdict.clone(),
            change_rate: signals.map_or(0.0, |s| s.change_rate()),
            incompressible: signals.map_or(0.0, |s| s.incompressible_share()),
        };
        let json = serde_json::to_string(&stored).expect("verdicts serialize");
        self.conn
            .execute(
                "INSERT INTO snapshot_verdicts (repo, snapshot, system, snapshot_time, verdict, reasons, assessed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (repo, snapshot) DO UPDATE SET system = COALESCE(excluded.system, system),
                   verdict = excluded.verdict, reasons = excluded.reasons, assessed_at = excluded.assessed_at",
                params![repo, snapshot, system, ts(snapshot_time), verdict.label(), json, ts(at)],
            )
            .map_err(|e| db_err(&path, e))?;
        Ok(())
    }

    /// Every stored verdict of a repository, oldest snapshot first.
    pub fn verdicts(&self, repo: &str) -> Result<Vec<VerdictRow>> {
        self.verdicts_where("repo = ?1", repo)
    }

    /// Every stored verdict of every repository, oldest snapshot first.
    pub fn all_verdicts(&self) -> Result<Vec<VerdictRow>> {
        self.verdicts_where("?1 = ?1", "")
    }

    fn verdicts_where(&self, cond: &str, arg: &str) -> Result<Vec<VerdictRow>> {
        let sql = format!(
            "SELECT repo, snapshot, system, snapshot_time, reasons, assessed_at, false_positive_at,
                    false_positive_note, incident
             FROM snapshot_verdicts WHERE {cond} ORDER BY snapshot_time, snapshot"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| db_err(self.path(), e))?;
        type Raw =
            (String, String, Option<String>, String, String, String, Option<String>, Option<String>, Option<i64>);
        let rows: Vec<Raw> = st
            .query_map([arg], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
            })
            .and_then(|it| it.collect())
            .map_err(|e| db_err(self.path(), e))?;
        rows.into_iter()
            .map(|(repo, snapshot, system, t, json, at, fp, note, incident)| {
                let stored: Stored = serde_json::from_str(&json).map_err(|e| {
                    Error::invalid(
                        format!("state database {}", self.path().display()),
                        format!("snapshot_verdicts row {snapshot}, column reasons: {e}"),
                    )
                })?;
                Ok(VerdictRow {
                    repo,
                    snapshot,
                    system,
                    snapshot_time: parse_ts(&t)?,
                    verdict: stored.verdict,
                    change_rate: stored.change_rate,
                    incompressible: stored.incompressible,
                    assessed_at: parse_ts(&at)?,
                    false_positive_at: fp.as_deref().map(parse_ts).transpose()?,
                    false_positive_note: note,
                    incident,
                })
            })
            .collect()
    }

    /// The times of the suspect snapshots that opened or joined `incident`, oldest first.
    pub fn suspect_times_of_incident(&self, incident: i64) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut st = self
            .conn
            .prepare("SELECT snapshot, snapshot_time FROM snapshot_verdicts WHERE incident = ?1 ORDER BY snapshot_time")
            .map_err(|e| db_err(self.path(), e))?;
        let raw: Vec<(String, String)> = st
            .query_map([incident], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|it| it.collect())
            .map_err(|e| db_err(self.path(), e))?;
        raw.into_iter().map(|(s, t)| Ok((s, parse_ts(&t)?))).collect()
    }

    /// The snapshots an operator marked false positives.
    pub fn false_positives(&self, repo: &str) -> Result<HashSet<String>> {
        let mut st = self
            .conn
            .prepare("SELECT snapshot FROM snapshot_verdicts WHERE repo = ?1 AND false_positive_at IS NOT NULL")
            .map_err(|e| db_err(self.path(), e))?;
        let out = st.query_map([repo], |r| r.get(0)).and_then(|it| it.collect()).map_err(|e| db_err(self.path(), e))?;
        Ok(out)
    }

    /// Marks a snapshot a false positive (creating its row if it has none yet).
    pub fn mark_false_positive(
        &mut self,
        repo: &str,
        snapshot: &str,
        snapshot_time: DateTime<Utc>,
        note: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let path = self.path().to_path_buf();
        self.conn
            .execute(
                "INSERT INTO snapshot_verdicts (repo, snapshot, snapshot_time, verdict, reasons, assessed_at,
                                                false_positive_at, false_positive_note)
                 VALUES (?1, ?2, ?3, 'unmeasured', '{\"verdict\":\"unmeasured\"}', ?4, ?4, ?5)
                 ON CONFLICT (repo, snapshot) DO UPDATE SET false_positive_at = excluded.false_positive_at,
                   false_positive_note = excluded.false_positive_note",
                params![repo, snapshot, ts(snapshot_time), ts(at), note],
            )
            .map_err(|e| db_err(&path, e))?;
        Ok(())
    }

    /// Links a suspect snapshot to the incident it opened.
    pub fn set_verdict_incident(&mut self, repo: &str, snapshot: &str, incident: i64) -> Result<()> {
        let path = self.path().to_path_buf();
        self.conn
            .execute(
                "UPDATE snapshot_verdicts SET incident = ?3 WHERE repo = ?1 AND snapshot = ?2",
                params![repo, snapshot, incident],
            )
            .map_err(|e| db_err(&path, e))?;
        Ok(())
    }

    /// Holds a snapshot (once: an active hold on it is returned as is).
    pub fn add_hold(
        &mut self,
        repo: &str,
        snapshot: &str,
        system: Option<&str>,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let path = self.path().to_path_buf();
        let tx = self.write_tx()?;
        let found: Option<i64> = tx
            .query_row(
                "SELECT id FROM snapshot_holds WHERE repo = ?1 AND snapshot = ?2 AND released_at IS NULL",
                params![repo, snapshot],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(&path, e))?;
        let id = match found {
            Some(id) => id,
            None => {
                tx.execute(
                    "INSERT INTO snapshot_holds (repo, snapshot, system, reason, since) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![repo, snapshot, system, reason, ts(at)],
                )
                .map_err(|e| db_err(&path, e))?;
                tx.last_insert_rowid()
            }
        };
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(id)
    }

    /// The holds in force on a repository's snapshots.
    pub fn active_holds(&self, repo: &str) -> Result<Vec<Hold>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, snapshot, system, reason, since FROM snapshot_holds
                 WHERE repo = ?1 AND released_at IS NULL ORDER BY id",
            )
            .map_err(|e| db_err(self.path(), e))?;
        let raw: Vec<(i64, String, Option<String>, String, String)> = st
            .query_map([repo], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(|it| it.collect())
            .map_err(|e| db_err(self.path(), e))?;
        raw.into_iter()
            .map(|(id, snapshot, system, reason, since)| {
                Ok(Hold { id, repo: repo.to_string(), snapshot, system, reason, since: parse_ts(&since)? })
            })
            .collect()
    }

    /// The snapshots under an active hold, in any repository.
    pub fn held_snapshots(&self) -> Result<HashSet<String>> {
        let mut st = self
            .conn
            .prepare("SELECT snapshot FROM snapshot_holds WHERE released_at IS NULL")
            .map_err(|e| db_err(self.path(), e))?;
        let out = st.query_map([], |r| r.get(0)).and_then(|it| it.collect()).map_err(|e| db_err(self.path(), e))?;
        Ok(out)
    }

    /// Releases the active holds on a snapshot; returns how many.
    pub fn release_hold(&mut self, repo: &str, snapshot: &str, note: &str, at: DateTime<Utc>) -> Result<usize> {
        let path = self.path().to_path_buf();
        self.conn
            .execute(
                "UPDATE snapshot_holds SET released_at = ?3, released_note = ?4
                 WHERE repo = ?1 AND snapshot = ?2 AND released_at IS NULL",
                params![repo, snapshot, ts(at), note],
            )
            .map_err(|e| db_err(&path, e))
    }
}

impl crate::detect::scan::ContentMemory for State {
    fn recall(&self, rules: &str, content: &str) -> Result<Option<Option<String>>> {
        self.conn
            .query_row(
                "SELECT hit FROM scanned_content WHERE rules = ?1 AND content = ?2",
                params![rules, content],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map_err(|e| db_err(self.path(), e))
    }

    fn remember(&mut self, rules: &str, found: &[(String, Option<String>)]) -> Result<()> {
        let path = self.path().to_path_buf();
        let tx = self.write_tx()?;
        for (content, hit) in found {
            tx.execute(
                "INSERT OR REPLACE INTO scanned_content (rules, content, hit) VALUES (?1, ?2, ?3)",
                params![rules, content, hit],
            )
            .map_err(|e| db_err(&path, e))?;
        }
        tx.commit().map_err(|e| db_err(&path, e))
    }
}

impl State {
    /// Stores a snapshot's scan result (replacing one with the same indicator set).
    pub fn record_scan(
        &mut self,
        repo: &str,
        scan: &crate::detect::scan::SnapshotScan,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let path = self.path().to_path_buf();
        let hits = serde_json::to_string(&scan.hits).expect("hits serialize");
        self.conn
            .execute(
                "INSERT OR REPLACE INTO scan_results (repo, snapshot, rules, scanned_at, files, files_read, bytes_read, hits)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    repo,
                    scan.snapshot,
                    scan.rules,
                    ts(at),
                    scan.files as i64,
                    scan.files_read as i64,
                    scan.bytes_read as i64,
                    hits
                ],
            )
            .map_err(|e| db_err(&path, e))?;
        Ok(())
    }

    /// The newest scan of each snapshot of a repository (any indicator set):
    /// snapshot id -> (scanned at, hits).
    pub fn scans(&self, repo: &str) -> Result<crate::detect::scan::ScanIndex> {
        let mut st = self
            .conn
            .prepare("SELECT snapshot, scanned_at, hits FROM scan_results WHERE repo = ?1 ORDER BY scanned_at")
            .map_err(|e| db_err(self.path(), e))?;
        let raw: Vec<(String, String, String)> = st
            .query_map([repo], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|it| it.collect())
            .map_err(|e| db_err(self.path(), e))?;
        let mut out = std::collections::HashMap::new();
        for (snapshot, at, hits) in raw {
            let hits = serde_json::from_str(&hits).map_err(|e| {
                Error::invalid(
                    format!("state database {}", self.path().display()),
                    format!("scan_results row {snapshot}, column hits: {e}"),
                )
            })?;
            out.insert(snapshot, (parse_ts(&at)?, hits));
        }
        Ok(out)
    }
}
