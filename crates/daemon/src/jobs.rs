//! The jobs a config defines, what each one needs from the repository, and how they
//! are executed (through the library, on a blocking thread).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::DaemonError;

use kura_recovery::config::{Config, Schedule};
use kura_recovery::error::{Error, Result};
pub use kura_recovery::schedule::{Access, JobKind};
use kura_recovery::state::jobs::Outcome;
use kura_store::check::rotation::Rotation;
use kura_store::progress::Progress;
use kura_store::repo::keys::read_password_file;
use kura_store::repo::snapshot::Filter;
use kura_store::repo::Repository;

/// One job of the config: `backup:NAME` for each system, and the repository-wide
/// `replicate`, `prune`, `check` and `drill`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct JobSpec {
    pub key: String,
    pub kind: JobKind,
    pub system: Option<String>,
}

impl JobSpec {
    pub fn backup(system: &str) -> JobSpec {
        JobSpec { key: format!("backup:{system}"), kind: JobKind::Backup, system: Some(system.to_string()) }
    }
    pub fn repo_wide(kind: JobKind) -> JobSpec {
        JobSpec { key: kind.as_str().to_string(), kind, system: None }
    }
}

/// Every job of the config with its schedule (`None`: on demand only).
pub fn jobs_of(cfg: &Config) -> Vec<(JobSpec, Option<&Schedule>)> {
    let mut out: Vec<(JobSpec, Option<&Schedule>)> =
        cfg.systems.iter().map(|s| (JobSpec::backup(&s.name), s.schedule.as_ref())).collect();
    if let Some(s) = &cfg.jobs.replicate {
        out.push((JobSpec::repo_wide(JobKind::Replicate), Some(s)));
    }
    if let Some(p) = &cfg.jobs.prune {
        out.push((JobSpec::repo_wide(JobKind::Prune), Some(&p.schedule)));
    }
    if let Some(c) = &cfg.jobs.check {
        out.push((JobSpec::repo_wide(JobKind::Check), Some(&c.schedule)));
    }
    if let Some(d) = &cfg.jobs.drill {
        out.push((JobSpec::repo_wide(JobKind::Drill), Some(&d.schedule)));
    }
    out
}

/// What `kura run TARGET` means: a job key (`backup:web`, `prune`, `check`,
/// `replicate`, `drill`) first, else a system name (its backup).
pub fn resolve(cfg: &Config, target: &str) -> std::result::Result<JobSpec, DaemonError> {
    let jobs = jobs_of(cfg);
    if let Some((j, _)) = jobs.iter().find(|(j, _)| j.key == target) {
        return Ok(j.clone());
    }
    if cfg.system(target).is_some() {
        return Ok(JobSpec::backup(target));
    }
    Err(DaemonError::UnknownTarget {
        target: target.to_string(),
        config: cfg.path.clone(),
        known: jobs.into_iter().map(|(j, _)| j.key).collect(),
    })
}

/// One run to execute.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub spec: JobSpec,
    /// For check: read one of this many parts, the next in the repository's
    /// rotation (`check::rotation`, shared with `kura check --read-data-subset next/M`).
    pub check_parts: Option<u32>,
}

/// Why a scheduled run started, kept in its run's detail: the slot it ran for and
/// how many slots it made up for (catch-up and deferral collapse several into one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDetail {
    pub slot: chrono::DateTime<chrono::Utc>,
    pub missed_slots: u64,
}

/// What a finished run reports.
#[derive(Clone, Debug, Default)]
pub struct RunOutput {
    /// Ok, Partial or Failed (a check that found damage ran fine but failed).
    pub outcome: Option<Outcome>,
    pub bytes: Option<u64>,
    pub snapshot: Option<String>,
    pub error: Option<String>,
    pub detail: serde_json::Value,
}

/// Progress of a running job, readable from the control API.
#[derive(Debug, Default)]
pub struct JobProgress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub files: AtomicU64,
}

impl JobProgress {
    pub fn snapshot(&self) -> (u64, Option<u64>, u64) {
        let total = self.total.load(Ordering::Relaxed);
        (self.done.load(Ordering::Relaxed), (total > 0).then_some(total), self.files.load(Ordering::Relaxed))
    }
}

impl Progress for JobProgress {
    fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    fn file_done(&self, _p: &Path) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }
    fn warn(&self, msg: &str) {
        tracing::warn!("{msg}");
    }
    fn note(&self, msg: &str) {
        tracing::debug!("{msg}");
    }
}

/// Runs jobs. The daemon calls it on a blocking thread; tests inject their own.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, cfg: &Config, req: &RunRequest, progress: &JobProgress) -> Result<RunOutput>;
}

/// The real thing: the library's backup, forget + prune, check and drill.
pub struct LibraryExecutor {
    /// The state database drills record their runs in.
    pub state: std::path::PathBuf,
}

fn open_repo(cfg: &Config) -> Result<Arc<Repository>> {
    open_spec(&cfg.repository)
}

/// Opens a repository of the config (local, or the remote site) with its passphrase
/// file, and the metadata cache where one applies.
fn open_spec(spec: &kura_recovery::config::RepoSpec) -> Result<Arc<Repository>> {
    open_spec_cached(spec, true)
}

fn open_spec_cached(spec: &kura_recovery::config::RepoSpec, cache: bool) -> Result<Arc<Repository>> {
    let pass = read_password_file(&spec.password_file)?;
    let backend = kura_store::backend::open_location(&spec.location)?;
    let repo = Repository::open(backend, &pass)?;
    Ok(Arc::new(match kura_store::repo::cache::root_for(&spec.location, None, !cache) {
        Some(root) => repo.with_cache(&root),
        None => repo,
    }))
}

/// Copies what the remote site lacks (mirror: the remote holds the same master key).
/// After the copy, the holds of the repository (the remote mirror has the same
/// repository id) renew the object lock of the held snapshots' copies there too.
fn replicate(cfg: &Config, state_path: &Path, progress: &JobProgress) -> Result<RunOutput> {
    let remote = cfg.remote.as_ref().ok_or_else(|| Error::invalid("replicate job", "no [remote] in the config"))?;
    let src_pass = read_password_file(&cfg.repository.password_file)?;
    let src = open_repo(cfg)?;
    let dst_pass = read_password_file(&remote.password_file)?;
    let backend = kura_store::backend::open_location(&remote.location)?;
    let report = kura_store::replicate::execute(
        &src,
        &src_pass,
        kura_store::replicate::Destination { backend, passphrase: &dst_pass },
        &kura_store::replicate::CopyOptions { jobs: 8, dry_run: false },
        progress,
    )?;
    let mut detail = serde_json::to_value(&report).unwrap_or_default();
    let held = || -> Result<Vec<(String, kura_store::retain::Extended)>> {
        let state = kura_recovery::state::State::open(state_path)?;
        let dst = Repository::open(kura_store::backend::open_location(&remote.location)?, &dst_pass)?;
        kura_recovery::detect::extend_holds(&state, &dst, chrono::Utc::now())
    };
    // Never fails the copy: the outcome (or error) is in the run's detail.
    detail["held_locks"] = match held() {
        Ok(list) => serde_json::to_value(list).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    Ok(RunOutput { outcome: Some(Outcome::Ok), bytes: Some(report.bytes), snapshot: None, error: None, detail })
}

impl Executor for LibraryExecutor {
    fn execute(&self, cfg: &Config, req: &RunRequest, progress: &JobProgress) -> Result<RunOutput> {
        match req.spec.kind {
            JobKind::Backup => backup(cfg, &self.state, req, progress),
            JobKind::Prune => prune(cfg, &self.state, progress),
            JobKind::Check => check(cfg, req, progress),
            JobKind::Drill => drill(cfg, &self.state, progress),
            JobKind::Replicate => replicate(cfg, &self.state, progress),
        }
    }
}

/// A scheduled drill: the same engine as `kura drill run`, into a temporary sandbox
/// that is removed afterwards. Missed deadlines make the run `partial`.
fn drill(cfg: &Config, state_path: &Path, _progress: &JobProgress) -> Result<RunOutput> {
    use kura_recovery::orchestrate::{self, drill, Engine};
    use kura_recovery::state::recovery::Site;
    let job = cfg.jobs.drill.as_ref().ok_or_else(|| Error::invalid("drill job", "no [jobs.drill] in the config"))?;
    let (plan, _warnings) = kura_recovery::plan::load(&job.plan, Some(cfg))
        .map_err(|p| Error::invalid(format!("drill plan {}", job.plan.display()), p.to_string()))?;
    let mut state = kura_recovery::state::State::open(state_path)?;
    // The same rules as `kura drill run`: one run at a time per state database, a
    // resumed drill keeps the site and the sandbox choice it was started with.
    let lock = orchestrate::runlock::RunLock::acquire(state_path)?;
    let from = drill::source(&state, &lock, &plan, None, cfg.remote.is_some())?;
    let spec = match (from, &cfg.remote) {
        (Site::Remote, Some(r)) => r,
        (Site::Remote, None) => {
            return Err(Error::invalid(
                "drill job",
                "its unfinished run reads from the remote site, and the config has no [remote]",
            ))
        }
        _ => &cfg.repository,
    };
    let repo = open_spec(spec)?;
    let clock: Arc<dyn kura_store::clock::Clock> = Arc::new(kura_store::clock::SystemClock);
    let location = spec.location.to_string();
    let req = drill::DrillRequest {
        from,
        location: &location,
        sandbox: None,
        keep: false,
        parallel: 2,
        config: Some(cfg.path.display().to_string()),
    };
    let snaps = orchestrate::executor::FleetSnapshots {
        main: &repo,
        config: cfg,
        dir: kura_recovery::fleet_dir::FleetDir::for_state(state_path),
    };
    let started = drill::start_or_resume(&mut state, &lock, &snaps, &plan, req, clock.now())?;
    let engine = Engine {
        repo,
        clock,
        runner: Arc::new(orchestrate::hooks::ShellRunner),
        observer: Arc::new(orchestrate::Quiet),
        restore_threads: None,
        fleet: orchestrate::executor::FleetExecutor::for_config(cfg, state_path),
    };
    let out = orchestrate::execute(&mut state, &engine, &plan, started.run);
    started.clean_up();
    let out = out?;
    let ok = out.status == kura_recovery::state::recovery::RunStatus::Done && out.missed == 0;
    Ok(RunOutput {
        outcome: Some(if ok { Outcome::Ok } else { Outcome::Partial }),
        bytes: None,
        snapshot: None,
        error: (!ok).then(|| {
            format!(
                "drill {}: {} failed, {} skipped, {} deadlines missed",
                out.run, out.failed, out.skipped, out.missed
            )
        }),
        detail: serde_json::to_value(&out).unwrap_or_default(),
    })
}

fn backup(cfg: &Config, state: &Path, req: &RunRequest, progress: &JobProgress) -> Result<RunOutput> {
    let name = req.spec.system.as_deref().unwrap_or_default();
    let sys = cfg.system(name).ok_or_else(|| Error::invalid(format!("system {name:?}"), "no longer in the config"))?;
    if let Some(host) = cfg.agent_host(sys) {
        return crate::fleet::backup::on_agent(cfg, state, sys, host, progress);
    }
    // A path that is gone entirely is a failure, not a partial backup.
    for p in &sys.paths {
        std::fs::symlink_metadata(p).map_err(|e| Error::io(p, e))?;
    }
    let repo = open_repo(cfg)?;
    let opts = kura_store::backup::BackupOptions {
        paths: sys.paths.clone(),
        tags: vec![sys.tag()],
        host: sys.host.clone(),
        excludes: sys.excludes.clone(),
        compression: None,
        threads: None,
        stream: sys.stream.clone(),
        names: match &cfg.detect.names {
            Some(f) => Some(Arc::new(kura_store::signals::names::NamePatterns::load(f)?)),
            None => None,
        },
        ..Default::default()
    };
    // The total (for `kura status`) comes from a scan beside the backup, as in the CLI.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|sc| {
        sc.spawn(|| {
            let total = kura_store::backup::estimate_size(&opts.paths, &opts.excludes, &stop);
            if !stop.load(Ordering::Relaxed) {
                progress.set_total(total);
            }
        });
        let r = kura_store::backup::run(&repo, &opts, progress);
        stop.store(true, Ordering::Relaxed);
        r
    })?;
    let summary = out.snapshot.summary.clone().unwrap_or_default();
    let mut warnings = out.warnings.clone();
    warnings.truncate(50);
    let followed = crate::after_backup::follow(cfg, state, sys, &repo, &out.id, out.snapshot.partial);
    let mut detail = serde_json::json!({
        "summary": summary,
        "warnings": warnings,
        "warnings_total": out.warnings.len(),
        "signals": out.snapshot.signals,
        "detect": followed.detect,
    });
    if let Some(up) = followed.standby {
        detail["standby"] = up;
    }
    let standby_error = followed.error;
    Ok(RunOutput {
        outcome: Some(if out.snapshot.partial || standby_error.is_some() { Outcome::Partial } else { Outcome::Ok }),
        bytes: Some(summary.bytes_added),
        snapshot: Some(out.id.to_hex()),
        error: standby_error,
        detail,
    })
}

fn prune(cfg: &Config, state_path: &Path, progress: &JobProgress) -> Result<RunOutput> {
    let job = cfg.jobs.prune.as_ref().ok_or_else(|| Error::invalid("prune job", "no [jobs.prune] in the config"))?;
    let policy = kura_store::forget::Policy {
        last: job.keep_last.unwrap_or(0),
        daily: job.keep_daily.unwrap_or(0),
        weekly: job.keep_weekly.unwrap_or(0),
        monthly: job.keep_monthly.unwrap_or(0),
        ..Default::default()
    };
    let repo = open_repo(cfg)?;
    let mut removed = 0u64;
    let mut failed = Vec::new();
    let mut held: Vec<String> = Vec::new();
    if !policy.is_empty() {
        // Retention applies to the snapshots of configured systems only; snapshots
        // taken by hand (without a `system:` tag of this config) are left alone.
        let filter = Filter { any_tag: cfg.systems.iter().map(|s| s.tag()).collect(), ..Default::default() };
        // Held snapshots (a system's last clean one after a suspect backup) are kept
        // by the same plan `kura forget` uses.
        let state = kura_recovery::state::State::open(state_path)?;
        let holds = kura_recovery::detect::holds_for_forget(&state, &repo.config().id)?;
        let plan = kura_store::forget::plan(repo.snapshots()?, &filter, &policy)?.hold(&holds);
        held = plan.held.iter().map(|h| h.id.to_hex()).collect();
        let out = kura_store::forget::execute(&repo, &plan);
        removed = out.removed.len() as u64;
        failed = out.failed.iter().map(|(id, e)| format!("snapshot {}: {e}", id.short())).collect();
    }
    let report = kura_store::prune::run(&repo, &kura_store::prune::PruneOptions::default(), progress)?;
    Ok(RunOutput {
        outcome: Some(if failed.is_empty() { Outcome::Ok } else { Outcome::Partial }),
        bytes: Some(report.bytes_freed),
        snapshot: None,
        error: (!failed.is_empty()).then(|| format!("could not remove {}", failed.join("; "))),
        detail: serde_json::json!({ "snapshots_removed": removed, "snapshots_held": held, "prune": report }),
    })
}

fn check(cfg: &Config, req: &RunRequest, progress: &JobProgress) -> Result<RunOutput> {
    // Check reads what the repository holds, never a cached copy.
    let repo = open_spec_cached(&cfg.repository, false)?;
    let rotation = Rotation::for_repository(&repo.config().id);
    let turn = req.check_parts.map(|m| rotation.next(m)).transpose()?;
    let part = turn.as_ref().map(|t| t.part);
    let read = part.map_or(kura_store::check::ReadData::None, |p| p.read_data());
    let lock = kura_store::repo::lock::reader_lock(&repo, "check");
    let res = kura_store::check::run(&repo, read, progress);
    drop(lock);
    let r = res?;
    if let Some(t) = turn {
        t.finish(&r)?;
    }
    let clean = r.is_clean();
    let error = (!clean).then(|| {
        let mut parts: Vec<String> = r.errors.iter().take(5).cloned().collect();
        parts.extend(r.damaged_packs.iter().take(5).map(|d| format!("pack {} is damaged: {}", d.pack, d.reason)));
        format!("the repository has errors: {}", parts.join("; "))
    });
    let mut detail = serde_json::to_value(&r).unwrap_or_default();
    if let Some(p) = part {
        detail["part"] = p.n.into();
        detail["of"] = p.of.into();
    }
    Ok(RunOutput {
        outcome: Some(if clean { Outcome::Ok } else { Outcome::Failed }),
        bytes: Some(r.bytes_read),
        snapshot: None,
        error,
        detail,
    })
}
