//! The coordinator's state database on the remote site (issue #14): when the
//! coordinator's own machine is among the damaged ones, the incidents, the runs and
//! the job history come back from there (`kura coordinator restore`).
//!
//! One function pushes ([`push`]); the daemon calls it when the database changed
//! ([`Watcher`]), the CLI after a command that changed incidents or runs when no
//! daemon runs. A version is a consistent copy taken with SQLite's online backup
//! API, sealed with the remote repository's master key (the config's `[remote]` and
//! its passphrase file are enough to read it back) and stored as one object,
//! `coordinator/<time>-<random>`. Versions are never overwritten: a push that dies
//! half-way leaves at most a temp object, and the older versions stay. The newest
//! [`KEEP`] versions are kept; older ones are deleted unless object lock retains them.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngCore;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use kura_store::backend::Kind;
use kura_store::repo::Repository;

use super::db_err;
use crate::error::{Error, Result};

/// Versions kept on the remote site (the newest ones).
pub const KEEP: usize = 20;

/// Format of a stored version.
const FORMAT: u32 = 1;

/// What leads the sealed object: which database, when, and how to unpack the body.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    /// The object's own name: a version cannot be passed off under another name.
    name: String,
    /// The database's identity (`meta.db_id`).
    db_id: String,
    taken_at: DateTime<Utc>,
    /// Size of the database file.
    raw_len: u64,
    compressed: bool,
}

/// One version on the remote site.
#[derive(Clone, Debug, Serialize)]
pub struct Version {
    pub name: String,
    /// The database it is a copy of: the first 16 hex digits of its `meta.db_id`.
    /// A coordinator started afresh (not restored) has another one.
    pub db: String,
    /// When it was taken (from its name; the sealed header says the same).
    pub taken_at: DateTime<Utc>,
    /// Bytes stored (sealed, compressed).
    pub stored_bytes: u64,
}

/// What one push did.
#[derive(Clone, Debug, Serialize)]
pub struct Pushed {
    pub version: Version,
    /// Size of the database copy.
    pub db_bytes: u64,
    /// Older versions deleted (beyond [`KEEP`]).
    pub removed: u64,
    /// Older versions object lock keeps for now.
    pub retained: u64,
}

/// Takes a consistent copy of the database at `state` (online backup API: other
/// connections may write meanwhile), seals it with `remote`'s key and stores it as a
/// new version; then deletes the versions beyond [`KEEP`].
pub fn push(state: &Path, remote: &Repository) -> Result<Pushed> {
    let (bytes, db_id) = consistent_copy(state)?;
    let taken_at = remote.now();
    let name = version_name(taken_at, &db_id);
    let packed = kura_store::compress::compress(&bytes, 3);
    let header = Header {
        format: FORMAT,
        name: name.clone(),
        db_id,
        taken_at,
        raw_len: bytes.len() as u64,
        compressed: packed.is_some(),
    };
    let mut plain = serde_json::to_vec(&header).expect("header serializes");
    plain.push(b'\n');
    plain.extend_from_slice(packed.as_deref().unwrap_or(&bytes));
    let sealed = remote.key().encrypt(&plain);
    remote.backend().put(Kind::Coordinator, &name, &sealed)?;
    let db = db_prefix(&header.db_id);
    let (removed, retained) = trim(remote, &db, KEEP)?;
    let version = Version { name, db, taken_at, stored_bytes: sealed.len() as u64 };
    Ok(Pushed { version, db_bytes: bytes.len() as u64, removed, retained })
}

/// Every version on the remote site, oldest first.
pub fn versions(remote: &Repository) -> Result<Vec<Version>> {
    let mut out: Vec<Version> = remote
        .backend()
        .list(Kind::Coordinator)?
        .into_iter()
        .filter_map(|(name, size)| {
            parse_name(&name).map(|(t, db)| Version { name, db, taken_at: t, stored_bytes: size })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Which version to fetch.
#[derive(Clone, Copy, Debug, Default)]
pub enum Pick<'a> {
    /// The newest, if the remote holds copies of one database only.
    #[default]
    Newest,
    /// The newest copy of this database (a prefix of its id).
    Db(&'a str),
    /// This version, by name.
    Name(&'a str),
}

/// Fetches a version, checks it and returns the database file's bytes.
pub fn fetch(remote: &Repository, pick: Pick) -> Result<(Version, Vec<u8>)> {
    let all = versions(remote)?;
    let site = || format!("the remote site {}", remote.location());
    let newest_of = |db: Option<&str>| -> Result<Version> {
        let mut of: Vec<&Version> = all.iter().filter(|v| db.is_none_or(|d| v.db.starts_with(d))).collect();
        let Some(newest) = of.last().copied().cloned() else {
            return Err(Error::invalid(
                site(),
                match db {
                    None => "it holds no copy of a coordinator's state database (coordinator/ is empty): nothing \
                             was pushed there yet"
                        .to_string(),
                    Some(d) => format!("it holds no copy of a database {d}; `kura coordinator versions` lists them"),
                },
            ));
        };
        of.sort_by(|a, b| a.db.cmp(&b.db).then(b.name.cmp(&a.name)));
        of.dedup_by(|a, b| a.db == b.db);
        if of.len() > 1 {
            let dbs: Vec<String> =
                of.iter().map(|v| format!("{} (newest {})", v.db, v.taken_at.to_rfc3339())).collect();
            return Err(Error::invalid(
                site(),
                format!(
                    "it holds copies of {} state databases: {}. A coordinator started afresh pushes a database of \
                     its own; choose with --db ID (or --version NAME)",
                    of.len(),
                    dbs.join(", ")
                ),
            ));
        }
        Ok(newest)
    };
    let v = match pick {
        Pick::Newest => newest_of(None)?,
        Pick::Db(d) => newest_of(Some(d))?,
        Pick::Name(n) => all.iter().find(|v| v.name == n).cloned().ok_or_else(|| {
            Error::invalid(
                format!("coordinator/{n} on {}", remote.location()),
                "no such version; `kura coordinator versions` lists them",
            )
        })?,
    };
    let object = format!("coordinator/{}", v.name);
    let plain = remote.key().decrypt(&remote.backend().get(Kind::Coordinator, &v.name)?, &object)?;
    let split = plain.iter().position(|&b| b == b'\n').ok_or_else(|| Error::corrupt(&object, "no header"))?;
    let header: Header =
        serde_json::from_slice(&plain[..split]).map_err(|e| Error::corrupt(&object, format!("header: {e}")))?;
    if header.format != FORMAT || header.name != v.name || db_prefix(&header.db_id) != v.db {
        return Err(Error::corrupt(&object, format!("header names {:?} (format {})", header.name, header.format)));
    }
    let body = &plain[split + 1..];
    let bytes = if header.compressed {
        kura_store::compress::decompress(body, header.raw_len as usize, &object)?
    } else {
        body.to_vec()
    };
    if bytes.len() as u64 != header.raw_len {
        return Err(Error::corrupt(&object, "its size does not match its header"));
    }
    Ok((v, bytes))
}

/// Writes a fetched database to `state` (0600, through a temp file and a rename) after
/// checking that SQLite reads it whole. Refuses to replace an existing database
/// unless `force`; with `force`, its WAL and shared-memory files go too.
pub fn install(state: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if state.exists() && !force {
        return Err(Error::invalid(
            state.display().to_string(),
            "a state database is already there; move it away, or give --force to replace it",
        ));
    }
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            super::create_private_dir(dir)?;
        }
    }
    let tmp = temp_beside(state, "restore");
    let res = write_private(&tmp, bytes).and_then(|()| integrity_check(&tmp));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    for suffix in ["-wal", "-shm"] {
        let mut p = state.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(state, e)),
            _ => {}
        }
    }
    std::fs::rename(&tmp, state).map_err(|e| Error::io(state, e))?;
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Opens the remote site of a config (`[remote]`) with its passphrase file.
pub fn open_remote(spec: &crate::config::RepoSpec) -> Result<Arc<Repository>> {
    let pass = kura_store::repo::keys::read_password_file(&spec.password_file)?;
    let backend = kura_store::backend::open_location(&spec.location)?;
    Ok(Arc::new(Repository::open(backend, &pass)?))
}

/// Pushes the database whenever it changed: the one driver of [`push`], stepped
/// every second by the daemon (and so at each schedule tick), and around the CLI
/// commands that change incidents or runs when no daemon runs. The first step
/// always pushes. After a failure it waits [`RETRY`] before it tries again (the
/// change is still pending, so it is pushed then).
pub struct Pusher {
    state: PathBuf,
    watcher: Option<Watcher>,
    remote: Option<(String, Arc<Repository>)>,
    retry_at: Option<Instant>,
}

/// How long a failed push waits before the next attempt.
pub const RETRY: Duration = Duration::from_secs(30);

impl Pusher {
    pub fn new(state: &Path) -> Pusher {
        Pusher { state: state.to_path_buf(), watcher: None, remote: None, retry_at: None }
    }

    /// Pushes if the database changed since the last push (or never was pushed).
    /// `Ok(None)`: nothing to do, or waiting after a failure.
    pub fn step(&mut self, spec: &crate::config::RepoSpec) -> Result<Option<Pushed>> {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(None);
        }
        let res = self.try_step(spec);
        if res.is_err() {
            self.retry_at = Some(Instant::now() + RETRY);
            // Both opened again next time: the credentials may have changed, or the
            // database file was replaced (a `coordinator restore --force`). A new
            // watcher pushes at once, so nothing changed meanwhile is missed.
            self.remote = None;
            self.watcher = None;
        } else {
            self.retry_at = None;
        }
        res
    }

    /// Counts the database as pushed as it is now, so that only what changes from here
    /// on is pushed (a CLI command that may or may not write). No database yet: the
    /// first step pushes whatever is created.
    pub fn baseline(&mut self) {
        if !self.state.exists() {
            return;
        }
        if let Ok(mut w) = Watcher::open(&self.state) {
            if let Ok(v) = w.version() {
                w.pushed(v);
                self.watcher = Some(w);
            }
        }
    }

    /// A step that does not wait out an earlier failure: the last push of a command
    /// or of a stopping daemon.
    pub fn flush(&mut self, spec: &crate::config::RepoSpec) -> Result<Option<Pushed>> {
        self.retry_at = None;
        self.step(spec)
    }

    fn try_step(&mut self, spec: &crate::config::RepoSpec) -> Result<Option<Pushed>> {
        if self.watcher.is_none() {
            self.watcher = Some(Watcher::open(&self.state)?);
        }
        let watcher = self.watcher.as_mut().expect("set above");
        let Some(counter) = watcher.due()? else { return Ok(None) };
        let location = spec.location.to_string();
        if self.remote.as_ref().is_none_or(|(l, _)| *l != location) {
            self.remote = Some((location, open_remote(spec)?));
        }
        let (_, repo) = self.remote.as_ref().expect("set above");
        let pushed = push(&self.state, repo)?;
        watcher.pushed(counter);
        Ok(Some(pushed))
    }
}

/// Tells whether the database changed since the last push: `PRAGMA data_version` of
/// a connection of its own changes whenever another connection (the daemon's, a CLI's)
/// commits.
pub struct Watcher {
    conn: Connection,
    pushed: Option<i64>,
}

impl Watcher {
    pub fn open(state: &Path) -> Result<Watcher> {
        let conn =
            Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| db_err(state, e))?;
        Ok(Watcher { conn, pushed: None })
    }

    /// The current change counter; `None` from [`Watcher::changed`] means "push".
    pub fn version(&self) -> Result<i64> {
        self.conn.pragma_query_value(None, "data_version", |r| r.get(0)).map_err(|e| db_err(Path::new("state"), e))
    }

    /// Some(counter) when a push is due (never pushed, or changed since); read the
    /// counter before pushing, so that a commit during the push is pushed next time.
    pub fn due(&self) -> Result<Option<i64>> {
        let v = self.version()?;
        Ok((self.pushed != Some(v)).then_some(v))
    }

    pub fn pushed(&mut self, counter: i64) {
        self.pushed = Some(counter);
    }
}

impl super::State {
    /// How many incidents, recovery and drill runs, and job runs the database holds.
    pub fn counts(&self) -> Result<(u64, u64, u64)> {
        let count = |table: &str| -> Result<u64> {
            self.conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| db_err(self.path(), e))
        };
        Ok((count("incidents")?, count("recovery_runs")?, count("job_runs")?))
    }
}

/// The database's bytes as of one moment, whatever other connections do meanwhile,
/// and its identity.
fn consistent_copy(state: &Path) -> Result<(Vec<u8>, String)> {
    if !state.exists() {
        return Err(Error::invalid(state.display().to_string(), "no state database to push"));
    }
    let src = Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| db_err(state, e))?;
    src.busy_timeout(Duration::from_secs(60)).map_err(|e| db_err(state, e))?;
    let tmp = temp_beside(state, "push");
    write_private(&tmp, b"")?;
    let res = (|| {
        let mut dst = Connection::open(&tmp).map_err(|e| db_err(&tmp, e))?;
        {
            use rusqlite::backup::{Backup, StepResult};
            let b = Backup::new(&src, &mut dst).map_err(|e| db_err(state, e))?;
            // All pages in one step (-1): the copy is one read transaction, hence
            // consistent. Busy or locked: a writer holds it for a moment; try again.
            let start = Instant::now();
            loop {
                match b.step(-1).map_err(|e| db_err(state, e))? {
                    StepResult::Done => break,
                    _ if start.elapsed() > Duration::from_secs(60) => {
                        return Err(Error::invalid(
                            state.display().to_string(),
                            "busy for 60 s; the copy was not taken",
                        ))
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        let db_id: String = dst
            .query_row("SELECT value FROM meta WHERE key = 'db_id'", [], |r| r.get(0))
            .map_err(|e| db_err(state, e))?;
        dst.pragma_update(None, "journal_mode", "DELETE").map_err(|e| db_err(&tmp, e))?;
        drop(dst);
        let bytes = std::fs::read(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok((bytes, db_id))
    })();
    let _ = std::fs::remove_file(&tmp);
    res
}

/// Keeps the newest `keep` versions of database `db` (other databases' versions are
/// never trimmed here: a coordinator started afresh by mistake cannot push the
/// real one's history out); returns (deleted, kept by object lock).
fn trim(remote: &Repository, db: &str, keep: usize) -> Result<(u64, u64)> {
    let all: Vec<Version> = versions(remote)?.into_iter().filter(|v| v.db == db).collect();
    let (mut removed, mut retained) = (0, 0);
    for v in all.iter().take(all.len().saturating_sub(keep)) {
        if remote.backend().retained_until(Kind::Coordinator, &v.name)?.is_some() {
            retained += 1;
            continue;
        }
        match remote.backend().delete(Kind::Coordinator, &v.name) {
            Err(e) if !e.is_not_found() => return Err(kura_store::Error::from(e).into()),
            _ => removed += 1,
        }
    }
    Ok((removed, retained))
}

fn db_prefix(db_id: &str) -> String {
    db_id.chars().take(16).collect()
}

/// `20261206T051230.123456Z-<db: 16 hex>-<8 hex>`: sorts by time; the random part
/// keeps two pushes of the same microsecond apart.
fn version_name(t: DateTime<Utc>, db_id: &str) -> String {
    let mut rnd = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut rnd);
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{hex}", t.format("%Y%m%dT%H%M%S%.6fZ"), db_prefix(db_id))
}

fn parse_name(name: &str) -> Option<(DateTime<Utc>, String)> {
    let mut parts = name.split('-');
    let (time, db, rnd) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if parts.next().is_some() || !hex(db, 16) || !hex(rnd, 8) {
        return None;
    }
    let t = chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.6fZ").ok()?.and_utc();
    Some((t, db.to_string()))
}

fn temp_beside(state: &Path, what: &str) -> PathBuf {
    let mut rnd = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut rnd);
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let name = state.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state.db".into());
    state.with_file_name(format!(".{name}.{what}-{hex}"))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| Error::io(path, e))
}

fn integrity_check(path: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| db_err(path, e))?;
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| db_err(path, e))?;
    if ok != "ok" {
        return Err(Error::corrupt(path.display().to_string(), format!("SQLite integrity check: {ok}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_fetch_install_and_trim() {
        use kura_store::backend::memory::MemoryBackend;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let mut st = crate::state::State::open(&db).unwrap();
        let repo = Repository::init(Arc::new(MemoryBackend::new()), b"pw").unwrap();
        let first = push(&db, &repo).unwrap();
        st.open_incident(Utc::now(), crate::incident::Event::Opened { fields: Default::default() }).unwrap();
        let second = push(&db, &repo).unwrap();
        assert!(first.version.name < second.version.name);
        // The newest by default, any by name; each is the database as it was then.
        let (v, bytes) = fetch(&repo, Pick::Newest).unwrap();
        assert_eq!(v.name, second.version.name);
        let restored = dir.path().join("r/state.db");
        install(&restored, &bytes, false).unwrap();
        assert_eq!(crate::state::State::open(&restored).unwrap().counts().unwrap().0, 1);
        assert!(install(&restored, &bytes, false).unwrap_err().to_string().contains("--force"));
        let (_, old) = fetch(&repo, Pick::Name(&first.version.name)).unwrap();
        install(&restored, &old, true).unwrap();
        assert_eq!(crate::state::State::open(&restored).unwrap().counts().unwrap().0, 0);
        // Stored sealed: the database's text is nowhere in the object.
        let raw = repo.backend().get(Kind::Coordinator, &second.version.name).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"SQLite"));
        // Another key cannot read it; a damaged one is refused.
        let mut bad = raw.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 1;
        repo.backend().put(Kind::Coordinator, &second.version.name, &bad).unwrap();
        assert!(fetch(&repo, Pick::Newest).is_err());
        // Only the newest `keep` stay.
        for _ in 0..3 {
            push(&db, &repo).unwrap();
        }
        assert_eq!(trim(&repo, &v.db, 2).unwrap(), (3, 0));
        assert_eq!(versions(&repo).unwrap().len(), 2);
        drop(st);

        // On a local remote, the folder and the versions are the owner's only.
        use std::os::unix::fs::PermissionsExt;
        let root = dir.path().join("remote");
        let local = Repository::init(Arc::new(kura_store::backend::local::LocalBackend::new(&root)), b"pw").unwrap();
        let p = push(&db, &local).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.join("coordinator")), 0o700);
        assert_eq!(mode(&root.join("coordinator").join(&p.version.name)), 0o600);
    }

    #[test]
    fn names_sort_by_time_and_parse_back() {
        let t = DateTime::parse_from_rfc3339("2026-12-06T05:12:30.123456Z").unwrap().with_timezone(&Utc);
        let db = "0123456789abcdef0123456789abcdef";
        let n = version_name(t, db);
        assert!(n.starts_with("20261206T051230.123456Z-0123456789abcdef-"), "{n}");
        assert_eq!(parse_name(&n), Some((t, "0123456789abcdef".to_string())));
        assert_eq!(parse_name("README"), None);
        assert_eq!(parse_name("20261206T051230.123456Z-0123456789abcdef-xyz"), None);
        let later = version_name(t + chrono::Duration::seconds(1), db);
        assert!(n < later);
    }
}
