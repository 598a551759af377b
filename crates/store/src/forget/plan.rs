//! What a forget will delete, decided before anything is deleted (pure: no I/O).

use crate::error::Result;
use crate::repo::snapshot::{Filter, Snapshot};
use crate::types::FileId;

use super::{apply, GroupDecision, Kept, Policy, Reason};

/// The whole decision of one forget. [`super::execute`] deletes exactly
/// `to_remove()`; callers print `groups` (indexes into `considered`) as they like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetPlan {
    /// The snapshots the filter let through (all of them when forgetting by id).
    pub considered: Vec<(FileId, Snapshot)>,
    /// Per group, what the policy keeps and removes. Empty when forgetting by id.
    pub groups: Vec<GroupDecision>,
    /// The snapshots to delete, in deletion order, without duplicates.
    remove: Vec<FileId>,
    /// Snapshots the policy (or the ids named) would have removed, kept by a hold.
    pub held: Vec<Held>,
}

/// A snapshot kept whatever the policy says, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub id: FileId,
    pub reason: String,
}

impl ForgetPlan {
    pub fn to_remove(&self) -> &[FileId] {
        &self.remove
    }

    /// Applies holds: a held snapshot is never removed. It moves from its group's
    /// `remove` to its `keep` (reason `held`) and is listed in `held`. The CLI and
    /// the daemon's prune job both pass the state database's active holds here, so
    /// a hold means the same whichever runs the forget.
    pub fn hold(mut self, holds: &[Held]) -> ForgetPlan {
        for h in holds {
            let Some(pos) = self.remove.iter().position(|id| *id == h.id) else { continue };
            self.remove.remove(pos);
            self.held.push(h.clone());
            let Some(i) = self.considered.iter().position(|(id, _)| *id == h.id) else { continue };
            for g in &mut self.groups {
                if let Some(p) = g.remove.iter().position(|&x| x == i) {
                    g.remove.remove(p);
                    g.keep.push(Kept { index: i, reasons: vec![Reason::Held(h.reason.clone())] });
                    // Newest first, as the policy orders them.
                    g.keep.sort_by(|a, b| self.considered[b.index].1.time.cmp(&self.considered[a.index].1.time));
                }
            }
        }
        self
    }
}

/// Applies `policy` to the snapshots `filter` selects from `all` (the repository's
/// whole list). Snapshots the filter leaves out are neither kept nor removed. Every
/// group is decided here, so a forget never deletes on a partial decision.
pub fn plan(all: Vec<(FileId, Snapshot)>, filter: &Filter, policy: &Policy) -> Result<ForgetPlan> {
    let considered = filter.select(all);
    let groups = apply(&considered, policy)?;
    let remove = groups.iter().flat_map(|g| &g.remove).map(|&i| considered[i].0).collect();
    Ok(ForgetPlan { considered, groups, remove, held: Vec::new() })
}

/// `kura forget ID...`: exactly the named snapshots (full ids, unique prefixes or
/// `latest`, among those `filter` selects: [`Filter::pick`]), each once, in the order
/// named. No policy applies. `kura forget latest --host web1` is web1's newest.
pub fn plan_named(all: Vec<(FileId, Snapshot)>, queries: &[String], filter: &Filter) -> Result<ForgetPlan> {
    let mut remove: Vec<FileId> = Vec::new();
    for q in queries {
        let (id, _) = filter.pick(&all, q)?;
        if !remove.contains(id) {
            remove.push(*id);
        }
    }
    Ok(ForgetPlan { considered: all, groups: Vec::new(), remove, held: Vec::new() })
}
