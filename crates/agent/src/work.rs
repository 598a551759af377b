//! What a task does on the host: a backup or a restore with the store, one
//! attempt of a hook with the recovery engine's own hook runner, or a standby
//! brought to a snapshot by difference (`kura_recovery::standby::site`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kura_fleet::proto::{BackupResult, HookResult, RestoreResult, Task, TaskResult, TaskSpec};
use kura_recovery::orchestrate::hooks::{HookRunner, ShellRunner};
use kura_store::backend::Location;
use kura_store::progress::Progress;
use kura_store::repo::Repository;

/// Progress of a running task, read by the poll loop to report it.
#[derive(Default)]
pub struct Meter {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

impl Progress for Meter {
    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

fn open(location: &str, passphrase: Option<&str>) -> Result<Arc<Repository>, String> {
    let pass = passphrase.ok_or("the task came without the repository's passphrase")?;
    let loc = Location::parse(location).map_err(|e| e.to_string())?;
    let backend = kura_store::backend::open_location(&loc).map_err(|e| e.to_string())?;
    Ok(Arc::new(Repository::open(backend, pass.as_bytes()).map_err(|e| format!("repository {location}: {e}"))?))
}

/// Runs a task to its end: the result to report, or why it failed.
pub fn execute(task: &Task, meter: &Meter) -> Result<TaskResult, String> {
    match &task.spec {
        TaskSpec::Backup { paths, excludes, tags, host, repository, .. } => {
            let repo = open(repository, task.passphrase.as_deref())?;
            for p in paths {
                std::fs::symlink_metadata(p).map_err(|e| format!("{p}: {e}"))?;
            }
            let opts = kura_store::backup::BackupOptions {
                paths: paths.iter().map(PathBuf::from).collect(),
                tags: tags.clone(),
                host: Some(host.clone()),
                excludes: excludes.clone(),
                compression: None,
                threads: None,
                stream: None,
                ..Default::default()
            };
            let out = kura_store::backup::run(&repo, &opts, meter).map_err(|e| e.to_string())?;
            let summary = out.snapshot.summary.clone().unwrap_or_default();
            Ok(TaskResult::Backup(BackupResult {
                snapshot: out.id.to_hex(),
                bytes_added: summary.bytes_added,
                partial: out.snapshot.partial,
                warnings: out.warnings.iter().take(50).cloned().collect(),
                summary: serde_json::to_value(&summary).unwrap_or_default(),
            }))
        }
        TaskSpec::Restore { snapshot, target, subpath, repository, .. } => {
            let repo = open(repository, task.passphrase.as_deref())?;
            let (id, snap) = repo.find_snapshot(snapshot).map_err(|e| format!("snapshot {snapshot}: {e}"))?;
            let subpath = subpath.clone().or_else(|| (snap.paths.len() == 1).then(|| snap.paths[0].clone()));
            let opts = kura_store::restore::RestoreOptions {
                target: PathBuf::from(target),
                subpath,
                includes: vec![],
                verify: true,
                threads: None,
                ..Default::default()
            };
            let started = Instant::now();
            let sum = kura_store::restore::run(&repo, &id, &snap, &opts, meter).map_err(|e| e.to_string())?;
            Ok(TaskResult::Restore(RestoreResult {
                bytes_written: sum.bytes_written,
                files: sum.files_restored + sum.files_skipped,
                dirs: sum.dirs,
                packs_read: sum.packs_read,
                restore_ms: started.elapsed().as_millis() as u64,
                files_verified: sum.files_verified,
                verify_failures: sum.verify_failures.iter().take(20).cloned().collect(),
                damaged: sum.damaged.first().map(|d| (sum.damaged.len(), d.snapshot_path.to_string())),
            }))
        }
        TaskSpec::Hook { command, env, timeout_ms, .. } => {
            let hook = kura_recovery::plan::Hook {
                command: command.clone(),
                timeout: Duration::from_millis(*timeout_ms),
                retries: 0,
                retry_delay: Duration::ZERO,
                drill: true,
            };
            let o = ShellRunner.run_once(&hook, env);
            Ok(TaskResult::Hook(HookResult {
                ok: o.ok,
                exit_code: o.exit_code,
                timed_out: o.timed_out,
                duration_ms: o.duration_ms,
                output: o.output,
            }))
        }
        TaskSpec::StandbyApply { snapshot, path, subpath, repository, copy_from, .. } => {
            // The same crash-safe apply (and directory lock) as on the coordinator.
            let repo = open(repository, task.passphrase.as_deref())?;
            let copy_from = copy_from.as_ref().map(PathBuf::from);
            let r = kura_recovery::standby::site::apply_task(
                &repo,
                snapshot,
                &PathBuf::from(path),
                subpath.clone(),
                copy_from.as_deref(),
                meter,
            )
            .map_err(|e| e.to_string())?;
            Ok(TaskResult::StandbyApply(r))
        }
    }
}
