//! A backend wrapper that injects faults: it simulates a process killed, a store
//! lost, or a network that drops, at every step of an operation.
//!
//! * `FaultBackend::new(inner, n)`: writes (put, delete) after the first `n` fail, and
//!   once tripped every call fails (the "process" is gone). Used by the crash tests of
//!   backup, prune and repair (each tries N = 0, 1, 2, ... until the run completes).
//! * `FaultBackend::at_call(inner, n)`: the `n`-th call of any kind (1-based) fails,
//!   and every call after it. Used by the copy tests to cover reads as well as writes.
//! * `FaultBackend::lost_reply_at_put(inner, n)`: the `n`-th put (1-based) is stored,
//!   and then the caller is told it failed; every other call goes through. This is an
//!   S3 time-out after the PUT reached the server: the object is there, the writer
//!   believes it is not, and must cope with finding it later.
//! * `FaultBackend::pass_through(inner)`: no fault at all (the contract runs on it).
//!
//! Injected failures are `Transient` (they look like a lost connection), so callers'
//! handling of the errors they will meet in the field is what gets tested.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{BResult, Backend, BackendError, Kind};

pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    mode: Mode,
    /// What the mode counts: writes, calls, or puts.
    count: AtomicU64,
}

/// Which failure is injected, and after how many counted calls.
#[derive(Clone, Copy)]
enum Mode {
    /// Writes (put, delete) after the first `n` fail, and then every call.
    DeadAfterWrites(u64),
    /// Calls of any kind after the first `n` fail.
    DeadAfterCalls(u64),
    /// The `n`-th put (1-based) is stored and then reported as failed.
    LostReplyAtPut(u64),
}

impl FaultBackend {
    pub fn new(inner: Arc<dyn Backend>, allowed_writes: u64) -> Self {
        Self::with_mode(inner, Mode::DeadAfterWrites(allowed_writes))
    }

    /// Fails the `n`-th call (1-based) of any kind and every call after it.
    pub fn at_call(inner: Arc<dyn Backend>, n: u64) -> Self {
        Self::with_mode(inner, Mode::DeadAfterCalls(n.saturating_sub(1)))
    }

    /// Stores the `n`-th put (1-based), then reports it as a `Transient` failure.
    pub fn lost_reply_at_put(inner: Arc<dyn Backend>, n: u64) -> Self {
        Self::with_mode(inner, Mode::LostReplyAtPut(n))
    }

    /// Injects nothing: every call reaches `inner`.
    pub fn pass_through(inner: Arc<dyn Backend>) -> Self {
        Self::new(inner, u64::MAX)
    }

    fn with_mode(inner: Arc<dyn Backend>, mode: Mode) -> Self {
        FaultBackend { inner, mode, count: AtomicU64::new(0) }
    }

    /// Whether the fault was reached: the operation did not run to its end, or (for
    /// a lost reply) it was told that a put failed.
    pub fn tripped(&self) -> bool {
        let n = self.count.load(Ordering::SeqCst);
        match self.mode {
            Mode::DeadAfterWrites(allowed) | Mode::DeadAfterCalls(allowed) => n > allowed,
            Mode::LostReplyAtPut(at) => n >= at,
        }
    }

    /// Calls (or writes, or puts) counted so far.
    pub fn calls(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Counts the call if the mode counts it, and fails it once the process is "dead".
    fn check(&self, write: bool, kind: Kind, name: &str) -> BResult<()> {
        let (allowed, what) = match self.mode {
            Mode::DeadAfterWrites(n) => (n, "writes"),
            Mode::DeadAfterCalls(n) => (n, "calls"),
            Mode::LostReplyAtPut(_) => return Ok(()),
        };
        let n = if write || what == "calls" {
            self.count.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.count.load(Ordering::SeqCst)
        };
        if n > allowed {
            // Once tripped, reads fail too: the "process" is gone.
            return Err(BackendError::Transient {
                object: super::object_name(kind, name),
                reason: format!("injected fault after {allowed} {what}"),
            });
        }
        Ok(())
    }
}

impl Backend for FaultBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BResult<()> {
        self.check(false, Kind::Config, "")?;
        self.inner.create()
    }
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
        if let Mode::LostReplyAtPut(at) = self.mode {
            self.inner.put(kind, name, data)?;
            if self.count.fetch_add(1, Ordering::SeqCst) + 1 == at {
                return Err(BackendError::Transient {
                    object: super::object_name(kind, name),
                    reason: format!("injected fault: put {at} was stored, but its reply was lost"),
                });
            }
            return Ok(());
        }
        self.check(true, kind, name)?;
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: Kind, name: &str) -> BResult<Vec<u8>> {
        self.check(false, kind, name)?;
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> BResult<Vec<u8>> {
        self.check(false, kind, name)?;
        self.inner.get_range(kind, name, offset, len)
    }
    fn list(&self, kind: Kind) -> BResult<Vec<(String, u64)>> {
        self.check(false, kind, "")?;
        self.inner.list(kind)
    }
    fn delete(&self, kind: Kind, name: &str) -> BResult<()> {
        self.check(true, kind, name)?;
        self.inner.delete(kind, name)
    }
    fn exists(&self, kind: Kind, name: &str) -> BResult<bool> {
        self.check(false, kind, name)?;
        self.inner.exists(kind, name)
    }
    fn retained_until(&self, kind: Kind, name: &str) -> BResult<Option<chrono::DateTime<chrono::Utc>>> {
        self.check(false, kind, name)?;
        self.inner.retained_until(kind, name)
    }
    fn lock_period(&self) -> Option<chrono::Duration> {
        self.inner.lock_period()
    }
    fn extend_retention(
        &self,
        kind: Kind,
        name: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> BResult<Option<chrono::DateTime<chrono::Utc>>> {
        self.check(true, kind, name)?;
        self.inner.extend_retention(kind, name, until)
    }
    fn cleanup(&self) -> usize {
        self.inner.cleanup()
    }
    fn stale_temp_files(&self) -> BResult<Vec<(String, u64)>> {
        self.inner.stale_temp_files()
    }
    fn first_entry(&self) -> BResult<Option<String>> {
        self.inner.first_entry()
    }
}
