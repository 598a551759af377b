//! Warm standbys (docs/STANDBY.md): a copy of a system kept current from its
//! verified snapshots, rolled back to a clean point and promoted at a failover,
//! and the source of the primary's data at a failback.
//!
//! The data step is the store's `sync::apply` (a directory brought to a snapshot by
//! difference, crash-safe); this module adds what only recovery knows: which
//! snapshot (the system's newest, or the newest before an incident's compromise),
//! the hooks, the state database and the incident's timeline.
//! * `update`: keep a standby current after a good backup.
//! * `switch`: failover, failback and failover drills, resumable after kill -9.
//! * `health`: pure: is a standby stale, failed or healthy.
//! * `drill`: failover drills in a sandbox, measured.
//! * `engine`: a recovery run fails a system over instead of restoring it.
//! * `site`: where a standby's work runs: here, or on its host's agent.
//! * `lock`: one operation on a standby at a time.

pub mod drill;
pub mod engine;
pub mod health;
pub mod lock;
pub mod site;
pub mod switch;
pub mod update;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kura_store::repo::snapshot::Snapshot;
use kura_store::types::FileId;

use crate::config::{StandbyConfig, SystemConfig};
use crate::orchestrate::hooks::{run_with_retries, HookOutcome, HookRunner, HookStage};
use crate::plan::Hook;

pub use engine::{
    add_standby_hooks, can_take_over, failover_deadlines, measured_failovers, record_engine_failover, MeasuredFailover,
};
pub use health::{health, Health};

/// The system's newest complete snapshot (tagged `system:NAME`, not partial), taken
/// strictly before `before` when given. `list` is sorted oldest first.
pub fn newest_snapshot<'a>(
    list: &'a [(FileId, Snapshot)],
    sys: &SystemConfig,
    before: Option<DateTime<Utc>>,
) -> Option<&'a (FileId, Snapshot)> {
    let tag = sys.tag();
    list.iter().rev().find(|(_, s)| s.has_tag(&tag) && !s.partial && before.is_none_or(|b| s.time < b))
}

/// The path inside a snapshot that a standby (or a primary directory) holds: the
/// snapshot's one path; with several, the whole snapshot (as restore does).
pub fn subpath(snap: &Snapshot) -> Option<String> {
    (snap.paths.len() == 1).then(|| snap.paths[0].clone())
}

/// The directory the primary's data lives in, which a failback brings back: the
/// system's one path.
pub fn primary_path(sys: &SystemConfig) -> crate::Result<PathBuf> {
    match sys.paths.as_slice() {
        [p] => Ok(p.clone()),
        _ => Err(crate::Error::invalid(
            format!("system {}", sys.name),
            "a failback brings back one directory: give the system exactly one path",
        )),
    }
}

/// The standby of a system, or an error naming what to add to the config.
pub fn standby_of(sys: &SystemConfig) -> crate::Result<&StandbyConfig> {
    sys.standby.as_ref().ok_or_else(|| {
        crate::Error::invalid(
            format!("system {}", sys.name),
            "has no standby: add a [system.standby] table with its `path` (docs/STANDBY.md)",
        )
    })
}

/// One standby hook command, run through `sh -c` with the standby's timeout.
pub fn hook(cmd: &str, sb: &StandbyConfig) -> Hook {
    Hook {
        command: cmd.to_string(),
        timeout: sb.hook_timeout,
        retries: 0,
        retry_delay: std::time::Duration::from_secs(1),
        drill: true,
    }
}

/// The environment of a standby hook: which system, which directory, which snapshot, which step.
pub fn hook_env(sys: &SystemConfig, dir: &Path, snapshot: &str, phase: &str, drill: bool) -> Vec<(String, String)> {
    vec![
        ("KURA_SYSTEM".into(), sys.name.clone()),
        ("KURA_PRIORITY".into(), sys.priority.to_string()),
        ("KURA_STANDBY".into(), dir.display().to_string()),
        ("KURA_SNAPSHOT".into(), snapshot.to_string()),
        ("KURA_PHASE".into(), phase.to_string()),
        ("KURA_DRILL".into(), if drill { "1" } else { "0" }.into()),
    ]
}

/// Runs `cmds` in order; stops at the first that fails and returns its outcome as the error.
pub fn run_hooks(
    runner: &dyn HookRunner,
    stage: HookStage,
    cmds: &[String],
    sb: &StandbyConfig,
    env: &[(String, String)],
) -> std::result::Result<Vec<HookOutcome>, HookOutcome> {
    let mut out = Vec::new();
    for c in cmds {
        let o = run_with_retries(runner, stage, &hook(c, sb), env);
        if !o.ok {
            return Err(o);
        }
        out.push(o);
    }
    Ok(out)
}

/// A failed hook in words, for errors and the record.
pub fn hook_failure(what: &str, o: &HookOutcome) -> String {
    let why = if o.timed_out {
        "timed out".to_string()
    } else {
        format!("exit code {}", o.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into()))
    };
    let tail = o.output.lines().last().unwrap_or("");
    format!(
        "{what} hook `{}` failed ({why}){}",
        o.command,
        if tail.is_empty() { String::new() } else { format!(": {tail}") }
    )
}
