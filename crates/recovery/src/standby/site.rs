//! Where a standby's work runs: on this machine, or on the agent of the host it
//! lives on (`[system.standby] host`). The same operations either way:
//!
//! * `apply`: a directory brought to a snapshot by difference. Here it is
//!   `apply_here` (the store's crash-safe `sync::apply`); on an agent, a
//!   `StandbyApply` task whose agent calls the same `apply_here`. Either way the
//!   result says what the directory holds *after* the apply, read back from its
//!   marker: the state database is only ever updated from it.
//! * `hooks`: the standby's hooks (promote, demote, verify) run on the standby's
//!   host; the primary's (fence, unfence) on the system's host.
//! * `backup`: the standby backed up as the system (a failback), on its host.
//!
//! The primary host's repository passphrase goes to the standby host inside each
//! task only (handed out by the coordinator, never stored by the agent).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kura_fleet::proto::{BackupResult, StandbyResult, TaskSpec};
use kura_store::progress::Progress;
use kura_store::repo::snapshot::Snapshot;
use kura_store::repo::Repository;
use kura_store::sync::SyncOptions;
use kura_store::types::FileId;

use crate::config::{Config, SystemConfig};
use crate::error::{Error, Result};
use crate::orchestrate::executor::{FleetExecutor, RemoteHooks};
use crate::orchestrate::hooks::HookRunner;

/// Where one side (the standby, or the primary) of a system lives.
#[derive(Clone, Debug)]
pub enum Place {
    Here,
    Agent { host: String, fleet: FleetExecutor },
}

impl Place {
    pub fn host(&self) -> Option<&str> {
        match self {
            Place::Here => None,
            Place::Agent { host, .. } => Some(host),
        }
    }
}

/// Where a system's standby and primary live, and the repository (as agents name
/// it) that holds the system's snapshots.
#[derive(Clone, Debug)]
pub struct Site {
    pub standby: Place,
    pub primary: Place,
    pub repository: String,
}

impl Site {
    /// Everything on this machine (no fleet).
    pub fn local() -> Site {
        Site { standby: Place::Here, primary: Place::Here, repository: String::new() }
    }

    /// The site of `sys` under `cfg`, whose coordinator state database is `state`.
    pub fn of(cfg: &Config, state: &Path, sys: &SystemConfig) -> Result<Site> {
        let sb_host = sys.standby.as_ref().and_then(|s| s.host.as_deref());
        let fleet = FleetExecutor::for_config(cfg, state);
        let own = cfg.fleet.as_ref().map(|f| f.name.as_str());
        let place = |host: Option<&str>| -> Result<Place> {
            match (host.filter(|h| Some(*h) != own), &fleet) {
                (None, _) => Ok(Place::Here),
                (Some(h), Some(f)) => Ok(Place::Agent { host: h.to_string(), fleet: f.clone() }),
                (Some(h), None) => Err(Error::invalid(
                    format!("system {}", sys.name),
                    format!(
                        "its standby is on host {h:?}, which needs a [fleet] table and an agent there (docs/FLEET.md)"
                    ),
                )),
            }
        };
        let standby = place(sb_host)?;
        let primary = place(cfg.agent_host(sys))?;
        let repository = match &fleet {
            Some(f) => f.repository_of(cfg.agent_host(sys)),
            None => cfg.repository.location.to_string(),
        };
        Ok(Site { standby, primary, repository })
    }

    /// Brings `dir` on the standby's host to the snapshot (`copy_from`: a drill's
    /// copy of the standby there first).
    #[allow(clippy::too_many_arguments)]
    pub fn apply_standby(
        &self,
        repo: &Arc<Repository>,
        sys: &SystemConfig,
        id: &FileId,
        snap: &Snapshot,
        dir: &Path,
        copy_from: Option<&Path>,
        run: Option<i64>,
        progress: &dyn Progress,
    ) -> Result<StandbyResult> {
        self.apply_on(&self.standby, repo, sys, id, snap, dir, copy_from, run, progress)
    }

    /// Brings the primary's directory `dir` (on the system's host) to the snapshot.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_primary(
        &self,
        repo: &Arc<Repository>,
        sys: &SystemConfig,
        id: &FileId,
        snap: &Snapshot,
        dir: &Path,
        run: Option<i64>,
        progress: &dyn Progress,
    ) -> Result<StandbyResult> {
        self.apply_on(&self.primary, repo, sys, id, snap, dir, None, run, progress)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_on(
        &self,
        place: &Place,
        repo: &Arc<Repository>,
        sys: &SystemConfig,
        id: &FileId,
        snap: &Snapshot,
        dir: &Path,
        copy_from: Option<&Path>,
        run: Option<i64>,
        progress: &dyn Progress,
    ) -> Result<StandbyResult> {
        let Place::Agent { host, fleet } = place else {
            if let Some(from) = copy_from {
                fresh_copy(from, dir)?;
            }
            return apply_here(repo, id, snap, dir, super::subpath(snap), progress);
        };
        let spec = TaskSpec::StandbyApply {
            system: sys.name.clone(),
            snapshot: id.to_hex(),
            path: dir.display().to_string(),
            subpath: super::subpath(snap),
            repository: self.repository.clone(),
            copy_from: copy_from.map(|p| p.display().to_string()),
            run,
        };
        let v = fleet
            .dispatch
            .run(host, &spec, progress)
            .map_err(|e| Error::invalid(format!("standby of {} on {host}", sys.name), e.to_string()))?;
        let r: StandbyResult = serde_json::from_value(v).map_err(|e| {
            Error::invalid(format!("standby of {} on {host}", sys.name), format!("unreadable result: {e}"))
        })?;
        // Trust only what the agent read back from the marker.
        if r.holds.as_deref() != Some(id.to_hex().as_str()) {
            return Err(Error::invalid(
                format!("standby of {} on {host}", sys.name),
                format!("the agent reports it holds {:?}, not snapshot {}", r.holds, id.short()),
            ));
        }
        Ok(r)
    }

    /// The hook runner of the standby's host (`local` on this machine).
    pub fn standby_hooks<'a>(&'a self, local: &'a dyn HookRunner, sys: &SystemConfig) -> Box<dyn HookRunner + 'a> {
        hooks_on(&self.standby, local, sys)
    }

    /// The hook runner of the primary's host (`local` on this machine).
    pub fn primary_hooks<'a>(&'a self, local: &'a dyn HookRunner, sys: &SystemConfig) -> Box<dyn HookRunner + 'a> {
        hooks_on(&self.primary, local, sys)
    }

    /// Backs the standby at `dir` up as the system (tags `system:NAME` and
    /// `failback`), on its host: (the snapshot's full id, whether it is partial).
    pub fn backup_standby(
        &self,
        repo: &Arc<Repository>,
        sys: &SystemConfig,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<(String, bool)> {
        let tags = vec![sys.tag(), "failback".into()];
        let Place::Agent { host, fleet } = &self.standby else {
            let opts = kura_store::backup::BackupOptions {
                paths: vec![dir.to_path_buf()],
                tags,
                host: sys.host.clone(),
                excludes: sys.excludes.clone(),
                ..Default::default()
            };
            let out = kura_store::backup::run(repo, &opts, progress)?;
            return Ok((out.id.to_hex(), out.snapshot.partial));
        };
        let spec = TaskSpec::Backup {
            system: sys.name.clone(),
            paths: vec![dir.display().to_string()],
            excludes: sys.excludes.clone(),
            tags,
            host: sys.host.clone().unwrap_or_else(|| host.clone()),
            repository: self.repository.clone(),
        };
        let who = || format!("backup of the standby of {} on {host}", sys.name);
        let v = fleet.dispatch.run(host, &spec, progress).map_err(|e| Error::invalid(who(), e.to_string()))?;
        let r: BackupResult =
            serde_json::from_value(v).map_err(|e| Error::invalid(who(), format!("unreadable result: {e}")))?;
        Ok((r.snapshot, r.partial))
    }
}

/// A copy of the hook runner to hand out (`Box<dyn HookRunner>` of a borrowed one).
struct Borrowed<'a>(&'a dyn HookRunner);

impl HookRunner for Borrowed<'_> {
    fn run_once(&self, hook: &crate::plan::Hook, env: &[(String, String)]) -> crate::orchestrate::hooks::HookOutcome {
        self.0.run_once(hook, env)
    }
}

fn hooks_on<'a>(place: &'a Place, local: &'a dyn HookRunner, sys: &SystemConfig) -> Box<dyn HookRunner + 'a> {
    match place {
        Place::Here => Box::new(Borrowed(local)),
        Place::Agent { host, fleet } => {
            Box::new(RemoteHooks { fleet: fleet.clone(), host: host.clone(), system: sys.name.clone(), run: None })
        }
    }
}

/// `from` copied afresh to `to` (a drill's sandbox copy of the standby).
fn fresh_copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(|e| Error::io(to, e))?;
    }
    kura_store::sync::copy_tree(from, to)?;
    Ok(())
}

/// The one home of a standby apply on the machine that holds the directory: the
/// store's `sync::apply`, and what the directory holds afterwards read back from
/// its marker. The CLI, the daemon and the agent (`StandbyApply`) all call it.
pub fn apply_here(
    repo: &Arc<Repository>,
    id: &FileId,
    snap: &Snapshot,
    dir: &Path,
    subpath: Option<String>,
    progress: &dyn Progress,
) -> Result<StandbyResult> {
    let opts = SyncOptions { target: PathBuf::from(dir), subpath, threads: None };
    let sum = kura_store::sync::apply(repo, id, snap, &opts, progress)?;
    let holds = kura_store::sync::held(dir)?.map(|h| h.to_hex());
    Ok(StandbyResult {
        holds,
        previous: sum.previous,
        files_unchanged: sum.files_unchanged,
        files_written: sum.files_written,
        files_reused: sum.files_reused,
        removed: sum.removed,
        bytes_written: sum.bytes_written,
        bytes_reused: sum.bytes_reused,
        bytes_resumed: sum.bytes_resumed,
        duration_ms: sum.duration_ms,
    })
}

/// What the agent runs for a `StandbyApply` task (`copy_from`: a drill's copy
/// first; no `subpath`: the snapshot's one path, as a restore takes it).
pub fn apply_task(
    repo: &Arc<Repository>,
    snapshot: &str,
    path: &Path,
    subpath: Option<String>,
    copy_from: Option<&Path>,
    progress: &dyn Progress,
) -> Result<StandbyResult> {
    let (id, snap) = repo.find_snapshot(snapshot)?;
    let subpath = subpath.or_else(|| super::subpath(&snap));
    if let Some(from) = copy_from {
        fresh_copy(from, path)?;
    }
    apply_here(repo, &id, &snap, path, subpath, progress)
}
