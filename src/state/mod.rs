//! The state database (SQLite, WAL): job runs, the last run of each schedule,
//! incidents and their timelines, recovery runs and drills.
//!
//! Every state change is committed before kura acts on it, so a `kill -9` at any
//! moment leaves a database that the next run continues from. The schema is
//! versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i+1.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, Result};

mod incidents;
pub mod jobs;
pub mod recovery;

/// Schema steps, applied in order inside one transaction each. Never edit a
/// released step; append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,            -- backup | replicate | prune | check | drill
    system TEXT,                  -- the system, for backups
    trigger TEXT NOT NULL,        -- schedule | catch-up | manual
    started_at TEXT NOT NULL,     -- RFC 3339, UTC
    ended_at TEXT,
    outcome TEXT NOT NULL,        -- running | ok | partial | failed | interrupted
    bytes INTEGER,
    snapshot TEXT,
    error TEXT,
    detail TEXT                   -- JSON
);
CREATE INDEX job_runs_by_system ON job_runs(system, started_at);
CREATE INDEX job_runs_by_job ON job_runs(job, started_at);
CREATE TABLE schedule_state (
    job TEXT PRIMARY KEY,         -- e.g. backup:web, replicate, prune
    last_slot TEXT,               -- the cron slot the last run was for
    last_run TEXT
);
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    opened_at TEXT NOT NULL
);
-- Append-only; each entry carries the hash of the previous one (tamper evidence).
CREATE TABLE timeline (
    id INTEGER PRIMARY KEY,
    incident INTEGER NOT NULL REFERENCES incidents(id),
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,           -- JSON
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (incident, seq)
);
CREATE TABLE recovery_runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,           -- recovery | drill
    incident INTEGER REFERENCES incidents(id),
    plan_path TEXT NOT NULL,
    plan_name TEXT NOT NULL,
    clock_start TEXT NOT NULL,    -- deadlines count from here
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,         -- running | done | failed (some system failed or was skipped)
    options TEXT NOT NULL         -- JSON: from, parallel, sandbox, force reason
);
CREATE TABLE recovery_systems (
    run INTEGER NOT NULL REFERENCES recovery_runs(id),
    name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    deadline_secs INTEGER,
    state TEXT NOT NULL,          -- waiting | pre | restoring | verifying | post | done | failed | skipped
    snapshot TEXT,
    snapshot_time TEXT,
    target TEXT,
    started_at TEXT,
    ended_at TEXT,
    bytes INTEGER,                -- restored so far / in all
    bytes_total INTEGER,          -- size of what the snapshot restores
    files INTEGER,
    restore_ms INTEGER,           -- the restore step alone (throughput = bytes / restore_ms)
    verdict TEXT,                 -- met | missed | no-deadline
    margin_secs INTEGER,
    alert TEXT,                   -- at-risk | breach: the last alert sent
    hooks TEXT,                   -- JSON list of hook outcomes
    verify TEXT,                  -- JSON
    error TEXT,
    PRIMARY KEY (run, name)
);
CREATE TABLE drill_reviews (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES recovery_runs(id),
    at TEXT NOT NULL,
    evaluation TEXT NOT NULL,
    actions TEXT NOT NULL         -- JSON list
);
"#,
    r#"
-- How each timeline row's hash was made: legacy (before keying), unkeyed (the
-- repository was not available), keyed (MAC with the repository's chain key).
ALTER TABLE timeline ADD COLUMN mac TEXT NOT NULL DEFAULT 'legacy';
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Names this database's incident anchors in the repository.
INSERT INTO meta (key, value) VALUES ('db_id', lower(hex(randomblob(16))));
"#,
];

pub struct State {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// Keys new timeline rows (see `crate::incident::chain`); `None`: unkeyed rows.
    chain_key: Option<[u8; 32]>,
}

impl State {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<State> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| db_err(path, e))?;
        let mut state = State { conn, path: path.to_path_buf(), chain_key: None };
        state.configure().map_err(|e| db_err(path, e))?;
        state.migrate()?;
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// From now on, timeline rows are keyed with this repository's chain key.
    pub fn set_chain_key(&mut self, master: &crate::crypto::MasterKey) {
        self.chain_key = Some(crate::incident::chain::chain_key(master));
    }

    pub fn chain_key(&self) -> Option<&[u8; 32]> {
        self.chain_key.as_ref()
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(10))?;
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed transaction survives power loss, not only kill -9.
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let version: usize =
            self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| db_err(&path, e))?;
        if version > MIGRATIONS.len() {
            return Err(Error::invalid(
                path.display().to_string(),
                format!(
                    "state database schema version {version} is newer than this kura ({}); upgrade kura",
                    MIGRATIONS.len()
                ),
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction().map_err(|e| db_err(&path, e))?;
            tx.execute_batch(sql).map_err(|e| db_err(&path, e))?;
            tx.pragma_update(None, "user_version", i + 1).map_err(|e| db_err(&path, e))?;
            tx.commit().map_err(|e| db_err(&path, e))?;
        }
        Ok(())
    }
}

/// The default database: `$KURA_STATE`, else `/var/lib/kura/state.db` for root,
/// else `$XDG_STATE_HOME/kura/state.db` (`~/.local/state/kura/state.db`).
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KURA_STATE") {
        return PathBuf::from(p);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/kura/state.db");
    }
    let base = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/state")
    });
    base.join("kura/state.db")
}

pub(crate) fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::invalid(format!("state database {}", path.display()), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s/state.db");
        let s = State::open(&p).unwrap();
        let v: usize = s.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len());
        let mode: String = s.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        State::open(&p).unwrap();
    }
}
