//! A backend wrapper that fails from the N-th write on: it simulates a process
//! killed, or a store lost, at every step of an operation. Used by the crash
//! tests of backup, prune and repair (each tries N = 1, 2, ... until the run
//! completes without reaching N).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{BResult, Backend, BackendError, Kind};

pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    /// Writes (put, delete) allowed before every call fails.
    allowed: u64,
    writes: AtomicU64,
}

impl FaultBackend {
    pub fn new(inner: Arc<dyn Backend>, allowed_writes: u64) -> Self {
        FaultBackend { inner, allowed: allowed_writes, writes: AtomicU64::new(0) }
    }

    /// Whether the fault was reached (the operation did not run to its end).
    pub fn tripped(&self) -> bool {
        self.writes.load(Ordering::SeqCst) > self.allowed
    }

    fn check(&self, write: bool, kind: Kind, name: &str) -> BResult<()> {
        let n = if write { self.writes.fetch_add(1, Ordering::SeqCst) + 1 } else { self.writes.load(Ordering::SeqCst) };
        if n > self.allowed {
            // Once tripped, reads fail too: the "process" is gone.
            return Err(BackendError::Permanent {
                object: super::object_name(kind, name),
                reason: format!("injected fault after {} writes", self.allowed),
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
        self.inner.create()
    }
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> BResult<()> {
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
}
