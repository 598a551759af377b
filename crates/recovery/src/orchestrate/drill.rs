//! Starting (or resuming) a drill: a run whose targets are moved into a sandbox.
//! Shared by `kura drill run` and the daemon's scheduled drill job; both hold the
//! run lock ([`RunLock`]), which every function here takes, from before they read
//! the unfinished run until the drill ends.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::runlock::RunLock;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::state::recovery::{RunKind, RunOptions, Site};
use crate::state::State;

/// A sandbox must not be, contain or sit inside a real target.
pub fn check_sandbox(plan: &Plan, sandbox: &Path) -> Result<()> {
    for s in &plan.systems {
        if s.target.starts_with(sandbox) || sandbox.starts_with(&s.target) {
            return Err(Error::invalid(
                format!("sandbox {}", sandbox.display()),
                format!(
                    "it overlaps the real target {} of system {}: choose another sandbox",
                    s.target.display(),
                    s.name
                ),
            ));
        }
    }
    Ok(())
}

/// What a drill run needs to know once started.
pub struct Started {
    pub run: i64,
    pub sandbox: PathBuf,
    pub keep: bool,
    pub resumed: bool,
}

impl Started {
    /// Removes the sandbox, unless the run was started with `keep` (stored with the
    /// run, so a resumed drill keeps what its start asked for).
    pub fn clean_up(&self) {
        if !self.keep {
            std::fs::remove_dir_all(&self.sandbox).ok();
        }
    }
}

/// Which site a drill of `plan` reads from: the one stored with its unfinished run (a
/// resumed drill never switches sites), else `requested`, else the remote site when
/// the config has one (drills prove the off-site copy).
pub fn source(state: &State, lock: &RunLock, plan: &Plan, requested: Option<Site>, has_remote: bool) -> Result<Site> {
    lock.check_guards(state)?;
    let plan_path = plan.path.display().to_string();
    Ok(match state.unfinished_recovery_run(RunKind::Drill, None, &plan_path)? {
        Some(r) => r.options.from,
        None => requested.unwrap_or(if has_remote { Site::Remote } else { Site::Local }),
    })
}

pub struct DrillRequest<'a> {
    pub from: Site,
    pub location: &'a str,
    pub sandbox: Option<PathBuf>,
    pub keep: bool,
    pub parallel: usize,
    pub config: Option<String>,
}

/// Resumes the unfinished drill of this plan, or stores a new one. The default
/// sandbox is a new directory under the system's temp directory.
pub fn start_or_resume(
    state: &mut State,
    lock: &RunLock,
    repo: &dyn super::executor::SnapshotSource,
    plan: &Plan,
    req: DrillRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Started> {
    lock.check_guards(state)?;
    let plan_path = plan.path.display().to_string();
    if let Some(r) = state.unfinished_recovery_run(RunKind::Drill, None, &plan_path)? {
        let sandbox = r.options.sandbox.clone().map(PathBuf::from).unwrap_or_default();
        return Ok(Started { run: r.id, sandbox, keep: r.options.keep_sandbox, resumed: true });
    }
    let sandbox =
        req.sandbox.unwrap_or_else(|| std::env::temp_dir().join(format!("kura-drill-{}", now.format("%Y%m%d-%H%M%S"))));
    std::fs::create_dir_all(&sandbox).map_err(|e| Error::io(&sandbox, e))?;
    let sandbox = sandbox.canonicalize().map_err(|e| Error::io(&sandbox, e))?;
    if let Err(e) = check_sandbox(plan, &sandbox) {
        let _ = std::fs::remove_dir(&sandbox);
        return Err(e);
    }
    let options = RunOptions {
        from: req.from,
        repository: req.location.to_string(),
        parallel: req.parallel.max(1),
        sandbox: Some(sandbox.display().to_string()),
        keep_sandbox: req.keep,
        config: req.config,
        ..Default::default()
    };
    let run = super::prepare(state, repo, plan, RunKind::Drill, None, now, now, &options)?;
    Ok(Started { run, sandbox, keep: req.keep, resumed: false })
}
