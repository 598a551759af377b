//! The state database (SQLite, WAL): job runs, the last run of each schedule,
//! incidents and their timelines, recovery runs and drills, and the notification
//! outbox (`crate::notify::outbox`).
//!
//! Every state change is committed before kura acts on it, so a `kill -9` at any
//! moment leaves a database that the next run continues from. The schema is
//! versioned with `PRAGMA user_version`; `MIGRATIONS[i]` takes version i to i+1.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, DatabaseName, OpenFlags, TransactionBehavior};

use crate::error::{Error, Result};

pub mod codec;
pub mod detect;
pub mod fleet;
mod incidents;
pub mod jobs;
pub mod offsite;
pub mod recovery;
mod schema;
pub mod standby;

use schema::MIGRATIONS;

pub struct State {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// Keys new timeline rows (see `crate::incident::chain`); `None`: unkeyed rows.
    chain_key: Option<[u8; 32]>,
}

/// How long a writer waits for another one (a recovery, the daemon, a CLI) to
/// commit before it gives up. Writes are short; this only has to outlast a busy disk.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl State {
    /// Opens (creating if needed) the database for reading and writing and brings its
    /// schema up to date. A new directory is made 0700 and a new database 0600,
    /// whatever the umask; an existing database readable by others gets a warning.
    pub fn open(path: &Path) -> Result<State> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                create_private_dir(dir)?;
            }
        }
        create_private_file(path)?;
        let conn = Connection::open(path).map_err(|e| db_err(path, e))?;
        if conn.is_readonly(DatabaseName::Main).unwrap_or(false) {
            return Err(Error::ReadOnlyState {
                path: path.to_path_buf(),
                reason: "the file is not writable by this user".into(),
            });
        }
        let mut state = State { conn, path: path.to_path_buf(), chain_key: None };
        state.configure().map_err(|e| db_err(path, e))?;
        state.migrate()?;
        warn_if_loose(path);
        tighten_companions(path);
        Ok(state)
    }

    /// Opens an existing database for a command that only reads: works on a database
    /// this user cannot write (a read-only file or directory). A database that does
    /// not exist yet, or whose schema must be upgraded first, is opened as `open` does.
    pub fn open_read_only(path: &Path) -> Result<State> {
        if !path.exists() {
            return State::open(path);
        }
        // An unreadable file is said plainly (SQLite only says "unable to open").
        std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let conn = match open_reader(path, false) {
            Ok(c) => c,
            // The -shm file is missing and cannot be created (a read-only directory):
            // no writer can be active then, so read the file as it is.
            Err(_) => open_reader(path, true).map_err(|e| db_err(path, e))?,
        };
        let version: usize =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| db_err(path, e))?;
        if version > MIGRATIONS.len() {
            return Err(newer_schema(path, version));
        }
        if version < MIGRATIONS.len() {
            drop(conn);
            return State::open(path).map_err(|e| match e {
                Error::ReadOnlyState { path, .. } => Error::ReadOnlyState {
                    path,
                    reason: format!(
                        "its schema (version {version}) must be upgraded to version {} first, which needs write access",
                        MIGRATIONS.len()
                    ),
                },
                e => e,
            });
        }
        warn_if_loose(path);
        Ok(State { conn, path: path.to_path_buf(), chain_key: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction that takes the write lock at once (waiting for it
    /// up to the busy timeout). A deferred transaction that reads first and writes
    /// later would fail with "database is locked" without waiting when another
    /// connection wrote in between.
    pub(crate) fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        let path = self.path.clone();
        self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))
    }

    /// From now on, timeline rows are keyed with this repository's chain key.
    pub fn set_chain_key(&mut self, master: &kura_store::crypto::MasterKey) {
        self.chain_key = Some(crate::incident::chain::chain_key(master));
    }

    pub fn chain_key(&self) -> Option<&[u8; 32]> {
        self.chain_key.as_ref()
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
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
            return Err(newer_schema(&path, version));
        }
        if version == MIGRATIONS.len() {
            return Ok(());
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.write_tx()?;
            // Another process may have migrated while this one waited for the lock.
            let now: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| db_err(&path, e))?;
            if now > i {
                continue;
            }
            tx.execute_batch(sql).map_err(|e| db_err(&path, e))?;
            tx.pragma_update(None, "user_version", i + 1).map_err(|e| db_err(&path, e))?;
            tx.commit().map_err(|e| db_err(&path, e))?;
        }
        Ok(())
    }
}

fn newer_schema(path: &Path, version: usize) -> Error {
    Error::invalid(
        path.display().to_string(),
        format!("state database schema version {version} is newer than this kura ({}); upgrade kura", MIGRATIONS.len()),
    )
}

fn open_reader(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = if immutable {
        let uri = format!("file:{}?immutable=1", uri_path(path));
        Connection::open_with_flags(uri, flags)?
    } else {
        Connection::open_with_flags(path, flags & !OpenFlags::SQLITE_OPEN_URI)?
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Reading the schema opens the WAL index: this is where a missing -shm fails.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
    Ok(conn)
}

/// A path for a `file:` URI: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::new();
    for c in abs.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// Creates `dir` and its missing parents with mode 0700 (set explicitly: the umask
/// does not widen or narrow it).
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))
}

/// Creates an empty database file with mode 0600 if there is none, so that SQLite
/// (which gives its -wal and -shm files the database's mode) never makes one
/// readable by others.
fn create_private_file(path: &Path) -> Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(f) => f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(Error::ReadOnlyState { path: path.to_path_buf(), reason: format!("cannot create it: {e}") })
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The -wal and -shm files beside a private database are private too.
fn tighten_companions(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.permissions().mode() & 0o077 != 0 {
        return;
    }
    for suffix in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(m) = std::fs::metadata(&p) {
            if m.permissions().mode() & 0o077 != 0 {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}

/// Warns (once per open) when the database can be read or written by other users:
/// it holds incident records and hook output.
fn warn_if_loose(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "state database {} has mode {mode:04o}: other users can read it; fix with `chmod 600 {0}*` \
             (and `chmod 700` on its directory)",
            path.display()
        );
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
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::ReadOnly) => Error::ReadOnlyState { path: path.to_path_buf(), reason: e.to_string() },
        Some(ErrorCode::DatabaseBusy) => {
            Error::StateBusy { path: path.to_path_buf(), waited_secs: BUSY_TIMEOUT.as_secs(), cause: e }
        }
        _ => Error::State { path: path.to_path_buf(), cause: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with one system, in a real database file; returns the run's id.
    fn stored_run(s: &mut State) -> i64 {
        use recovery::{NewSystem, RunKind, RunOptions};
        let now = chrono::Utc::now();
        let sys = |name: &str| NewSystem {
            name: name.into(),
            priority: 2,
            deadline_secs: Some(3600),
            snapshot: None,
            bytes_total: 0,
            target: "/srv".into(),
            error: None,
            failover: false,
        };
        let systems = [sys("a"), sys("b")];
        s.create_recovery_run(RunKind::Drill, None, "p.toml", "p", now, now, &RunOptions::default(), &systems).unwrap()
    }

    #[test]
    fn drill_samples_hold_the_restore_shape_and_old_rows_still_read() {
        use crate::orchestrate::queue::Phase;
        use recovery::{Restored, VerifyRecord};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let mut s = State::open(&p).unwrap();
        let run = stored_run(&mut s);
        let verify = VerifyRecord { ok: true, files_verified: 7, failures: vec![], quarantine: None };
        let r = Restored { bytes: 1000, files: 7, dirs: 3, objects: 2, restore_ms: 250 };
        s.set_restored(run, "a", &r, &verify).unwrap();
        s.set_restored(run, "b", &Restored { restore_ms: 500, ..r }, &verify).unwrap();
        let now = chrono::Utc::now();
        s.finish_system(run, "a", Phase::Done, now, None, None, None).unwrap();
        assert!(s.drill_samples("b").unwrap().is_empty(), "only systems that finished count");
        let got = s.drill_samples("a").unwrap();
        assert_eq!(got.len(), 1);
        let d = &got[0];
        assert_eq!((d.bytes, d.files, d.dirs, d.objects, d.restore_ms), (1000, 7, Some(3), Some(2), 250));
        assert!((d.at - now).num_seconds().abs() < 2, "{:?}", d.at);
        assert_eq!(s.drill_throughputs("a").unwrap(), vec![4000.0]);
        // A row recorded before directories and objects were: they read as unknown.
        let raw = Connection::open(&p).unwrap();
        raw.execute("UPDATE recovery_systems SET dirs = NULL, objects = NULL WHERE name = 'a'", []).unwrap();
        let d = &s.drill_samples("a").unwrap()[0];
        assert_eq!((d.files, d.dirs, d.objects), (7, None, None));
    }

    #[test]
    fn a_stored_value_that_does_not_parse_names_table_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let run = stored_run(&mut State::open(&p).unwrap());
        let raw = Connection::open(&p).unwrap();
        let s = State::open(&p).unwrap();
        assert!(s.run_systems(run).is_ok());

        raw.execute("UPDATE recovery_runs SET status = 'finshed' WHERE id = ?1", [run]).unwrap();
        let e = s.recovery_run(run).unwrap_err().to_string();
        assert!(
            e.contains(&format!("recovery_runs row {run}: status \"finshed\" is not one of running, done, failed")),
            "{e}"
        );
        assert!(s.recovery_runs(None, None).is_err(), "a listing must not skip the row either");

        raw.execute("UPDATE recovery_systems SET state = 'restorng' WHERE name = 'b'", []).unwrap();
        let row: i64 = raw.query_row("SELECT rowid FROM recovery_systems WHERE name = 'b'", [], |r| r.get(0)).unwrap();
        let e = s.run_systems(run).unwrap_err().to_string();
        assert!(e.contains(&format!("recovery_systems row {row}: state \"restorng\" is not one of waiting,")), "{e}");

        raw.execute("UPDATE recovery_systems SET state = 'done', verdict = 'mett' WHERE name = 'b'", []).unwrap();
        let e = s.run_system(run, "b").unwrap_err().to_string();
        assert!(e.contains(&format!("recovery_systems row {row}: verdict \"mett\"")), "{e}");

        let hooks = r#"[{"stage":"prep","command":"true","ok":true,"attempts":1,"timed_out":false,"duration_ms":1}]"#;
        raw.execute("UPDATE recovery_systems SET verdict = 'met', hooks = ?1 WHERE name = 'b'", [hooks]).unwrap();
        let e = s.run_system(run, "b").unwrap_err().to_string();
        assert!(e.contains(&format!("recovery_systems row {row}: hooks is not valid")), "{e}");

        let job = s
            .start_run(crate::schedule::JobKind::Check, None, crate::schedule::Trigger::Manual, chrono::Utc::now())
            .unwrap();
        raw.execute("UPDATE job_runs SET outcome = 'okay' WHERE id = ?1", [job]).unwrap();
        let e = s.run(job).unwrap_err().to_string();
        assert!(e.contains(&format!("job_runs row {job}: outcome \"okay\" is not one of running, ok,")), "{e}");
        assert!(s.running_runs().is_ok() && s.list_runs(&Default::default()).is_err());
    }

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

    #[test]
    fn concurrent_writers_wait_instead_of_failing() {
        use crate::incident::{Event, Fields};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let mut s = State::open(&p).unwrap();
        let at = chrono::Utc::now();
        let id = s.open_incident(at, Event::Opened { fields: Fields::default() }).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut s = State::open(&p).unwrap();
                    for n in 0..40 {
                        // Each append reads the chain's end, then writes after it.
                        s.append_event(id, at, &Event::Note { text: format!("{t}/{n}") }).unwrap();
                        s.start_run(crate::schedule::JobKind::Check, None, crate::schedule::Trigger::Manual, at)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let rows = s.raw_timeline(id).unwrap();
        assert_eq!(rows.len(), 1 + 4 * 40);
        assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1));
        assert!(crate::incident::verify_chain(id, &rows).is_ok());
    }

    #[test]
    fn a_new_database_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new/state.db");
        State::open(&p).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        assert_eq!(mode(&p), 0o600);
        // A reader opens it without writing.
        let r = State::open_read_only(&p).unwrap();
        assert!(r.conn.is_readonly(DatabaseName::Main).unwrap());
    }
}
