//! How long-running library work reports progress without printing: the CLI puts an
//! indicatif bar behind this trait, the tests and scripts use `NoProgress`.

use std::path::Path;

pub trait Progress: Send + Sync {
    /// Total work is now known (bytes or items, per operation).
    fn set_total(&self, _total: u64) {}
    /// `n` more units of work are done.
    fn advance(&self, _n: u64) {}
    /// One more file was handled.
    fn file_done(&self, _path: &Path) {}
    /// Something the user should know about that does not stop the operation.
    fn warn(&self, _msg: &str) {}
    /// Informational notes (for example, skipped special files).
    fn note(&self, _msg: &str) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}
