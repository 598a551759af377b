//! Lock objects: how backups and prune know about each other without waiting.
//!
//! A backup never takes an exclusive lock. It writes a *shared* lock object when it
//! starts, refreshes it every few minutes, and removes it when done. Prune reads
//! these to decide when a pack it took out of the index can really be deleted: only
//! once no backup that started before that moment is still alive (docs/FORMAT.md,
//! "Prune"). Prune itself takes an *exclusive* lock against other prunes only.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::Repository;
use crate::backend::Kind;
use crate::error::{Error, Result};

/// How often a running operation rewrites its lock.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long belongs to a dead process and is ignored.
pub const STALE: chrono::Duration = chrono::Duration::minutes(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// Backups (and anything else that only adds objects).
    Shared,
    /// Prune: at most one at a time.
    Exclusive,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    pub purpose: String,
    pub host: String,
    pub pid: u32,
    pub started: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
}

impl LockInfo {
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now - self.refreshed > STALE
    }

    /// Held by a process of this host that no longer exists (killed, crashed): such a
    /// lock is ignored at once instead of after `STALE`.
    pub fn is_dead(&self) -> bool {
        if self.pid == 0 || self.host != crate::host_name() {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists; pid is positive.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
        rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }

    /// Neither stale nor held by a dead process of this host.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.is_stale(now) && !self.is_dead()
    }

    /// An exclusive lock of this very process (its name changes at each refresh).
    pub fn is_own_exclusive(&self) -> bool {
        self.kind == LockKind::Exclusive && self.pid == std::process::id() && self.host == crate::host_name()
    }

    /// How prune names a holder it waits for: purpose, lock, process and start.
    pub fn describe(&self, name: &str) -> String {
        format!(
            "{} {} (pid {} on {}, started {})",
            self.purpose,
            &name[..8.min(name.len())],
            self.pid,
            self.host,
            self.started
        )
    }
}

/// Every lock object; an unreadable one counts as a live lock from the beginning of
/// time, so it can only make prune more careful.
pub fn list_locks(repo: &Repository) -> Result<Vec<(String, LockInfo)>> {
    let mut out = Vec::new();
    for (name, _) in repo.backend().list(Kind::Lock)? {
        let info = match repo.load_sealed::<LockInfo>(Kind::Lock, &name) {
            Ok(i) => i,
            Err(Error::Backend(e)) if e.is_not_found() => continue, // removed meanwhile
            Err(_) => LockInfo {
                kind: LockKind::Shared,
                purpose: "unreadable lock".into(),
                host: "?".into(),
                pid: 0,
                started: DateTime::<Utc>::UNIX_EPOCH,
                refreshed: repo.now(),
            },
        };
        out.push((name, info));
    }
    Ok(out)
}

/// Fails if a live exclusive lock other than `own` exists. Locks left by dead
/// processes of this host are removed on the way.
fn exclusive_conflict(repo: &Repository, own: Option<&str>) -> Result<()> {
    let now = repo.now();
    for (name, l) in list_locks(repo)? {
        if l.is_dead() {
            tracing::info!(lock = %name, pid = l.pid, "removing the lock of a process that no longer runs");
            let _ = repo.backend().delete(Kind::Lock, &name);
            continue;
        }
        if l.kind == LockKind::Exclusive && l.is_live(now) && Some(name.as_str()) != own {
            return Err(Error::Locked {
                holder: format!("{} (pid {} on {}, started {})", l.purpose, l.pid, l.host, l.started),
                lock: name,
            });
        }
    }
    Ok(())
}

struct Shared {
    name: String,
    refreshed: DateTime<Utc>,
}

/// A held lock; refreshed by a background thread, removed on drop.
pub struct LockGuard {
    repo: Arc<Repository>,
    purpose: String,
    state: Arc<Mutex<Shared>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn write_lock(repo: &Repository, info: &LockInfo) -> Result<String> {
    let mut rnd = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut rnd);
    let name = hex::encode(rnd);
    if let Err(e) = repo.save_sealed(Kind::Lock, &name, info) {
        // The put may have landed with its reply lost (an S3 time-out). Left there, a
        // lock that nobody holds names this live process, so it blocks every prune
        // (and, if exclusive, every other exclusive user) of a long-running daemon
        // until it goes stale. The random name is this call's alone: removing it is safe.
        let _ = repo.backend().delete(Kind::Lock, &name);
        return Err(e);
    }
    Ok(name)
}

impl LockGuard {
    /// Takes a lock. An exclusive lock fails when another live exclusive lock exists.
    pub fn acquire(repo: &Arc<Repository>, kind: LockKind, purpose: &str) -> Result<LockGuard> {
        let now = repo.now();
        if kind == LockKind::Exclusive {
            exclusive_conflict(repo, None)?;
        }
        let info = LockInfo {
            kind,
            purpose: purpose.into(),
            host: crate::host_name(),
            pid: std::process::id(),
            started: now,
            refreshed: now,
        };
        let name = write_lock(repo, &info)?;
        if kind == LockKind::Exclusive {
            // Two that start at once both pass the check above: each looks again now
            // that its own lock is visible, and backs off if another is there (both
            // may back off; running again is safe).
            if let Err(e) = exclusive_conflict(repo, Some(&name)) {
                let _ = repo.backend().delete(Kind::Lock, &name);
                return Err(e);
            }
        }
        let state = Arc::new(Mutex::new(Shared { name, refreshed: now }));
        let (tx, rx) = channel::<()>();
        let (repo2, state2) = (repo.clone(), state.clone());
        let thread = std::thread::Builder::new()
            .name("kura-lock".into())
            .spawn(move || loop {
                match rx.recv_timeout(REFRESH) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let now = repo2.now();
                let info = LockInfo { refreshed: now, ..info.clone() };
                if let Ok(new) = write_lock(&repo2, &info) {
                    let mut s = state2.lock().unwrap();
                    let old = std::mem::replace(&mut s.name, new);
                    s.refreshed = now;
                    let _ = repo2.backend().delete(Kind::Lock, &old);
                }
            })
            .expect("spawn lock refresher");
        Ok(LockGuard { repo: repo.clone(), purpose: purpose.to_string(), state, stop: Some(tx), thread: Some(thread) })
    }

    /// Fails if the lock went unrefreshed long enough for others to think this
    /// process dead (for example after the machine slept): a backup must then not
    /// write its snapshot, since prune may have deleted data it relies on.
    pub fn check_fresh(&self) -> Result<()> {
        let s = self.state.lock().unwrap();
        if self.repo.now() - s.refreshed > STALE {
            return Err(Error::LockExpired { purpose: self.purpose.clone() });
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let name = self.state.lock().unwrap().name.clone();
        let _ = self.repo.backend().delete(Kind::Lock, &name);
    }
}

/// A shared lock for operations that only read (restore, check): it keeps prune from
/// deleting packs they may be reading. On a repository this process cannot write to
/// (read-only credentials or media), reading goes on without a lock, with a warning.
pub fn reader_lock(repo: &Arc<Repository>, purpose: &str) -> Option<LockGuard> {
    match LockGuard::acquire(repo, LockKind::Shared, purpose) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(error = %e, "{purpose} runs without a lock: a concurrent prune could delete data it reads");
            None
        }
    }
}
