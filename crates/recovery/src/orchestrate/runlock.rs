//! One recovery or drill at a time per state database. The CLI (`kura recover`,
//! `kura drill run`) and the daemon's drill job all take this lock before they start
//! or resume a run, so two engines never write the same run.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::State;

/// Held for as long as the run executes; released on drop (and by the kernel when the
/// process dies, so a kill -9 never leaves it stale).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

impl RunLock {
    /// Takes the lock beside the state database `state`, or fails at once naming it.
    pub fn acquire(state: &Path) -> Result<RunLock> {
        let path = lock_path(state);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Busy(format!(
                "another kura recover or drill is running with this state database ({}); wait for it or stop it",
                path.display()
            )));
        }
        Ok(RunLock { _file: file, path })
    }

    /// Fails unless this lock guards `state`: a run started or resumed under the
    /// lock of another database would not be exclusive.
    pub fn check_guards(&self, state: &State) -> Result<()> {
        if self.path == lock_path(state.path()) {
            Ok(())
        } else {
            Err(Error::invalid(
                format!("run lock {}", self.path.display()),
                format!("it guards another state database than {}", state.path().display()),
            ))
        }
    }
}

fn lock_path(state: &Path) -> PathBuf {
    PathBuf::from(format!("{}.recover.lock", state.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let first = RunLock::acquire(&db).unwrap();
        let e = RunLock::acquire(&db).unwrap_err().to_string();
        assert!(e.contains("another kura recover or drill is running"), "{e}");
        drop(first);
        RunLock::acquire(&db).unwrap();
    }
}
