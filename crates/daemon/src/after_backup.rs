//! What follows every backup of a system the daemon records, whether it ran here
//! (jobs.rs) or on an agent (fleet/backup.rs): the one home of the sequence.
//!
//! 1. Detection judges the new snapshot against the system's baseline
//!    (`kura_recovery::detect::after_backup`: the verdict, suspect marking, holds
//!    of the clean point, a draft incident, a notification).
//! 2. Then the system's standby is kept current (`standby::update::keep_current`,
//!    on the standby's host), but never brought to a suspect snapshot: the standby
//!    keeps the last clean data. A partial backup does not move it either.

use std::path::Path;
use std::sync::Arc;

use kura_recovery::config::{Config, SystemConfig};
use kura_recovery::detect::Verdict;
use kura_recovery::orchestrate::hooks::ShellRunner;
use kura_recovery::standby::site::Site;
use kura_recovery::standby::update::{keep_current, Ctx, Update};
use kura_recovery::state::State;
use kura_store::repo::Repository;
use kura_store::types::FileId;

/// What followed the backup: detection's judgement (for the run's detail), and
/// the standby's update or why it failed (`error`: the run becomes partial).
pub(crate) struct Followed {
    pub detect: serde_json::Value,
    pub standby: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// Runs detection on snapshot `id` of `sys` (in `repo`), then keeps its standby current.
pub(crate) fn follow(
    cfg: &Config,
    state: &Path,
    sys: &SystemConfig,
    repo: &Arc<Repository>,
    id: &FileId,
    partial: bool,
) -> Followed {
    let (detect, suspect) = detect(cfg, repo, id, &sys.name, state);
    let mut out = Followed { detect, standby: None, error: None };
    if partial || sys.standby.is_none() {
        return out;
    }
    if suspect {
        out.error = Some("the snapshot is suspect: the standby was left at its last snapshot".into());
        return out;
    }
    let res = State::open(state).and_then(|st| {
        let site = Site::of(cfg, state, sys)?;
        let c = Ctx {
            state: &st,
            repo,
            sys,
            site: &site,
            runner: &ShellRunner,
            now: &chrono::Utc::now,
            progress: &kura_store::progress::NoProgress,
        };
        keep_current(&c)
    });
    match res {
        Ok(Some(up)) => {
            out.standby = Some(serde_json::to_value(&up).unwrap_or_default());
            if let Update::Applied { verify_ok: false, verify_error, .. } = up {
                out.error = Some(format!("standby: {}", verify_error.unwrap_or_default()));
            }
        }
        Ok(None) => {}
        Err(e) => out.error = Some(format!("the backup is stored, but the standby was not brought to it: {e}")),
    }
    out
}

/// Judges the new snapshot (kura_recovery::detect). The backup itself succeeded
/// whatever happens here: a failure is logged and reported in the run's detail.
fn detect(cfg: &Config, repo: &Repository, id: &FileId, system: &str, state: &Path) -> (serde_json::Value, bool) {
    let run = || -> kura_recovery::error::Result<kura_recovery::detect::AfterBackup> {
        let mut st = State::open(state)?;
        let alarm = kura_recovery::detect::Alarm { system: Some(system), notify: Some(&cfg.notify) };
        kura_recovery::detect::after_backup(&mut st, repo, id, &cfg.detect.rules, &alarm, chrono::Utc::now())
    };
    match run() {
        Ok(a) => {
            let suspect = matches!(a.verdict, Some(Verdict::Suspect { .. }));
            if suspect {
                tracing::warn!(system, snapshot = %id.short(), incident = ?a.incident, "suspect snapshot");
            }
            (serde_json::to_value(&a).unwrap_or_default(), suspect)
        }
        Err(e) => {
            tracing::warn!(system, "detection after the backup failed: {e}");
            (serde_json::json!({ "error": e.to_string() }), false)
        }
    }
}
