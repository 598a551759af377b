//! A scheduled or manual backup of a system that lives on an agent host: a Backup
//! task into the host's repository, waited for on the job's blocking thread. Once
//! the agent reports the snapshot, the same sequence as after a local backup runs
//! (`crate::after_backup`): detection, then the standby (never to a suspect one).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kura_fleet::proto::{BackupResult, TaskSpec};
use kura_recovery::config::{Config, SystemConfig};
use kura_recovery::error::{Error, Result};
use kura_recovery::fleet_dir::FleetDir;
use kura_recovery::orchestrate::executor::{Dispatch, DispatchError};
use kura_recovery::state::jobs::Outcome;
use kura_store::repo::Repository;

use crate::jobs::{JobProgress, RunOutput};

pub(crate) fn on_agent(
    cfg: &Config,
    state: &Path,
    sys: &SystemConfig,
    host: &str,
    progress: &JobProgress,
) -> Result<RunOutput> {
    if sys.stream.is_some() {
        return Err(Error::invalid(
            format!("system {}", sys.name),
            "a command's output (`command`) is not backed up on agents yet: back it up on the coordinator",
        ));
    }
    let fleet = cfg.fleet.as_ref().ok_or_else(|| Error::invalid("fleet", "no [fleet] in the config"))?;
    let repo = FleetDir::for_state(state).host_repo(cfg, host)?;
    let spec = TaskSpec::Backup {
        system: sys.name.clone(),
        paths: sys.paths.iter().map(|p| p.display().to_string()).collect(),
        excludes: sys.excludes.clone(),
        tags: vec![sys.tag()],
        host: host.to_string(),
        repository: repo.location.clone(),
    };
    let dispatch = Dispatch {
        state: state.to_path_buf(),
        unreachable_after: fleet.heartbeat * 3,
        lost_after: fleet.agent_lost_after,
    };
    let value = match dispatch.run(host, &spec, progress) {
        Ok(v) => v,
        // Recorded as the run's error; `kura status` shows the system late with it.
        Err(e @ (DispatchError::Unreachable { .. } | DispatchError::NeverSeen { .. })) => {
            return Ok(RunOutput {
                outcome: Some(Outcome::Failed),
                error: Some(e.to_string()),
                detail: serde_json::json!({ "agent_unreachable": host }),
                ..Default::default()
            })
        }
        Err(e) => return Err(Error::invalid(format!("backup of {} on {host}", sys.name), e.to_string())),
    };
    let r: BackupResult = serde_json::from_value(value)
        .map_err(|e| Error::invalid(format!("backup of {} on {host}", sys.name), format!("unreadable result: {e}")))?;
    let mut detail = serde_json::json!({
        "host": host, "repository": repo.location, "summary": r.summary, "warnings": r.warnings,
    });
    let error = follow(cfg, state, sys, host, &r, &mut detail);
    Ok(RunOutput {
        outcome: Some(if r.partial || error.is_some() { Outcome::Partial } else { Outcome::Ok }),
        bytes: Some(r.bytes_added),
        snapshot: Some(r.snapshot.clone()),
        error,
        detail,
    })
}

/// Detection and the standby after the agent's backup (`crate::after_backup`),
/// read from the host's repository; the error that makes the run partial, if any.
fn follow(
    cfg: &Config,
    state: &Path,
    sys: &SystemConfig,
    host: &str,
    r: &BackupResult,
    detail: &mut serde_json::Value,
) -> Option<String> {
    let opened = host_repo(cfg, state, host).and_then(|repo| {
        let id = kura_store::types::FileId::from_hex(&r.snapshot)
            .map_err(|_| Error::invalid(format!("backup of {} on {host}", sys.name), "not a snapshot id"))?;
        Ok((repo, id))
    });
    let (repo, id) = match opened {
        Ok(x) => x,
        Err(e) => return Some(format!("the backup is stored, but detection and the standby could not read it: {e}")),
    };
    let f = crate::after_backup::follow(cfg, state, sys, &repo, &id, r.partial);
    detail["detect"] = f.detect;
    if let Some(up) = f.standby {
        detail["standby"] = up;
    }
    f.error
}

/// Host `host`'s repository, opened once per daemon process: opening derives the
/// key (argon2: memory and a fraction of a second), which every agent backup
/// would otherwise pay. The handle holds no listing: snapshots and the index are
/// read afresh on each use.
fn host_repo(cfg: &Config, state: &Path, host: &str) -> Result<Arc<Repository>> {
    /// (state database, host) -> the open repository.
    type Open = HashMap<(PathBuf, String), Arc<Repository>>;
    static OPEN: Mutex<Option<Open>> = Mutex::new(None);
    let key = (state.to_path_buf(), host.to_string());
    if let Some(r) = OPEN.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get(&key) {
        return Ok(r.clone());
    }
    let repo = Arc::new(FleetDir::for_state(state).open_host_repo(cfg, host)?);
    OPEN.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(key, repo.clone());
    Ok(repo)
}
