//! One operation on a standby at a time: keeping it current (the daemon's backup
//! job, `kura backup --system`, `kura standby apply`), a failover, a failback and a
//! drill each hold the standby's lock for their whole length, from the choice of
//! the snapshot to the last hook. A second one waits for the first to end (it says
//! so, naming what holds it), then decides afresh: a keep-current that waited for a
//! failover finds the standby serving and leaves it alone.
//!
//! The lock is an `flock` on `standby-locks/SYSTEM.lock` beside the coordinator's
//! state database, so the kernel releases it when its holder dies (a kill -9 never
//! leaves it stale). On the host that holds the directory, `kura_store::sync::apply`
//! also locks the directory itself, so two applies (two agents' tasks, or two
//! coordinators) never write it at once.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held while a standby operation runs; released on drop.
#[derive(Debug)]
pub struct StandbyLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Where the lock of `system`'s standby is, beside the state database `state`.
pub fn lock_path(state: &Path, system: &str) -> PathBuf {
    let dir = state.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join("standby-locks").join(format!("{system}.lock"))
}

impl StandbyLock {
    /// Takes the lock of `system`'s standby for `what`, waiting for its holder.
    pub fn acquire(state: &Path, system: &str, what: &str) -> Result<StandbyLock> {
        let path = lock_path(state, system);
        if let Some(dir) = path.parent() {
            kura_store::private_file::create_dir(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let msg = format!(
                "the standby of {system} is busy ({}): waiting for it to end before {what}",
                if holder.is_empty() { "another kura process" } else { holder }
            );
            tracing::warn!("{msg}");
            eprintln!("{msg}");
            // SAFETY: as above; blocks until the holder releases it (or dies).
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(Error::io(&path, std::io::Error::last_os_error()));
            }
        }
        // Who holds it, for the next waiter's message.
        let who = format!("{what}, pid {}", std::process::id());
        let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(who.as_bytes()));
        Ok(StandbyLock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let first = StandbyLock::acquire(&state, "db", "first").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let t = std::thread::spawn(move || {
            let _second = StandbyLock::acquire(&st, "db", "second").unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "did not wait");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("never got the lock");
        t.join().unwrap();
        // Another system's standby is not held by it.
        StandbyLock::acquire(&state, "web", "other").unwrap();
    }
}
