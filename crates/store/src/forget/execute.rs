//! Carrying out a [`ForgetPlan`]: deleting snapshot files, nothing else.

use crate::backend::{BackendError, Kind};
use crate::repo::Repository;
use crate::types::FileId;

use super::ForgetPlan;

/// What a forget deleted. Every snapshot of the plan is in exactly one of the lists.
#[derive(Debug, Default)]
pub struct ForgetOutcome {
    /// Deleted by this run, or already gone (another forget removed it meanwhile:
    /// it is gone, as asked).
    pub removed: Vec<FileId>,
    /// Could not be deleted; running forget again retries them.
    pub failed: Vec<(FileId, BackendError)>,
}

/// Deletes the snapshot files the plan names. One failure does not stop the others:
/// each deletion is independent, and nothing else refers to a snapshot file.
pub fn execute(repo: &Repository, plan: &ForgetPlan) -> ForgetOutcome {
    let mut out = ForgetOutcome::default();
    for id in plan.to_remove() {
        match repo.backend().delete(Kind::Snapshot, &id.to_hex()) {
            Ok(()) => out.removed.push(*id),
            Err(e) if e.is_not_found() => out.removed.push(*id),
            Err(e) => out.failed.push((*id, e)),
        }
    }
    out
}
