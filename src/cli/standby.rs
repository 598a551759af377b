//! `kura standby apply|status`, `kura failover`, `kura failback`: warm standbys
//! (docs/STANDBY.md). The rules live in `kura_recovery::standby`; this prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use serde::Serialize;

use super::{output, Ctx, EXIT_PARTIAL};
use kura::config::{Config, SystemConfig};
use kura::human::human_secs;
use kura::orchestrate::hooks::ShellRunner;
use kura::repo::Repository;
use kura::standby::site::Site;
use kura::standby::update::{Ctx as SbCtx, Update};
use kura::standby::{self, switch::Switch};
use kura::state::standby::SwitchRecord;

#[derive(clap::Args)]
pub struct ConfigArg {
    /// The config declaring the systems and their standbys [default: ./kura.toml, /etc/kura/kura.toml]
    #[arg(long, env = "KURA_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    cmd: Cmd,
}

impl Args {
    /// `standby status` only reads (a viewer may run it on a coordinator).
    pub fn reads_only(&self) -> bool {
        matches!(self.cmd, Cmd::Status)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring a system's standby to its newest complete snapshot (or --snapshot) by difference, then verify it
    Apply {
        system: String,
        /// A snapshot of the system (id or unique prefix) instead of the newest
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Each standby: the snapshot it holds, when applied, its lag and health, its last verification
    Status,
    /// Failover drill: a copy of each standby (or the named ones) is brought to the newest
    /// snapshot in a sandbox and verified (KURA_DRILL=1); nothing is promoted. Shows each
    /// system's measured failover time against its tolerance
    Drill {
        /// Systems to drill [default: every system with a standby]
        systems: Vec<String>,
        /// Where the copies go [default: a new directory under $TMPDIR, removed afterwards]
        #[arg(long)]
        sandbox: Option<PathBuf>,
        /// Keep the sandbox
        #[arg(long)]
        keep: bool,
    },
}

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// The system whose standby takes over
    system: String,
    /// The incident: the standby is rolled back to the newest snapshot before its
    /// compromised-since; without one, to the system's clean point (the newest
    /// snapshot before the first suspect one, see `kura clean-point`)
    #[arg(long)]
    incident: i64,
    /// Fail over to this snapshot (ID or prefix) instead of the one chosen
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Args)]
pub struct FailbackArgs {
    /// The system whose primary (rebuilt) takes over again from the standby
    system: String,
    #[command(flatten)]
    config: ConfigArg,
}

/// The config: --config / KURA_CONFIG, else ./kura.toml, else /etc/kura/kura.toml.
pub fn load_config(arg: &ConfigArg) -> Result<Config> {
    let path = arg
        .config
        .clone()
        .or_else(|| ["kura.toml", "/etc/kura/kura.toml"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
        .ok_or_else(|| anyhow!("no config: pass --config PATH or set KURA_CONFIG (docs/CONFIG.md)"))?;
    kura::config::load(&path)
        .map_err(|p| anyhow!("the config {} is not valid; nothing was changed:\n{p}", path.display()))
}

pub fn system<'a>(cfg: &'a Config, name: &str) -> Result<&'a SystemConfig> {
    cfg.system(name).ok_or_else(|| {
        let names: Vec<&str> = cfg.systems.iter().map(|s| s.name.as_str()).collect();
        anyhow!("no system {name:?} in {}; it declares: {}", cfg.path.display(), names.join(", "))
    })
}

/// Where `sys`'s standby and primary live (on agents through the coordinator's
/// state database, or here).
pub fn site(ctx: &Ctx, cfg: &Config, sys: &SystemConfig) -> Result<Site> {
    let state = ctx.state_path().unwrap_or_else(kura::state::default_path);
    Ok(Site::of(cfg, &state, sys)?)
}

/// The repository holding `sys`'s snapshots: its agent host's (docs/FLEET.md), or
/// the config's (`--repo` wins).
pub fn repo_for(ctx: &Ctx, cfg: &Config, sys: &SystemConfig) -> Result<Arc<Repository>> {
    match cfg.agent_host(sys) {
        Some(host) if ctx.repo_location().is_none() => {
            let state = ctx.state_path().unwrap_or_else(kura::state::default_path);
            let dir = kura::fleet_dir::FleetDir::for_state(&state);
            Ok(Arc::new(dir.open_host_repo(cfg, host).with_context(|| format!("the repository of host {host}"))?))
        }
        _ => open_repo(ctx, cfg),
    }
}

/// The config's repository (`--repo` wins).
pub fn open_repo(ctx: &Ctx, cfg: &Config) -> Result<Arc<Repository>> {
    let location = match ctx.repo_location() {
        Some(r) => kura::backend::Location::parse(&r)?,
        None => cfg.repository.location.clone(),
    };
    ctx.open_at(&location, Some(&cfg.repository.password_file))
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let cfg = load_config(&a.config)?;
    match a.cmd {
        Cmd::Apply { system: name, snapshot } => {
            let sys = system(&cfg, &name)?;
            let sb = standby::standby_of(sys)?;
            let repo = repo_for(ctx, &cfg, sys)?;
            let site = site(ctx, &cfg, sys)?;
            let state = ctx.state()?;
            let now = chrono::Utc::now;
            let bar = output::Bar::new(ctx.show_progress(), "applying");
            let c =
                SbCtx { state: &state, repo: &repo, sys, site: &site, runner: &ShellRunner, now: &now, progress: &bar };
            let up = match snapshot {
                Some(s) => {
                    let (id, snap) = repo.find_snapshot(&s)?;
                    standby::update::apply(&c, sb, &id, &snap)?
                }
                None => standby::update::keep_current(&c)?.ok_or_else(|| anyhow!("{name} has no standby"))?,
            };
            bar.finish();
            print_update(ctx, &name, &up)
        }
        Cmd::Status => status(ctx, &cfg),
        Cmd::Drill { systems, sandbox, keep } => drill(ctx, &cfg, systems, sandbox, keep),
    }
}

#[derive(Serialize)]
struct DrillRow {
    system: String,
    priority: u8,
    tolerance_secs: i64,
    #[serde(flatten)]
    record: Option<SwitchRecord>,
    error: Option<String>,
}

fn drill(ctx: &Ctx, cfg: &Config, names: Vec<String>, sandbox: Option<PathBuf>, keep: bool) -> Result<ExitCode> {
    let systems: Vec<&SystemConfig> = if names.is_empty() {
        cfg.systems.iter().filter(|s| s.standby.is_some()).collect()
    } else {
        names.iter().map(|n| system(cfg, n)).collect::<Result<_>>()?
    };
    if systems.is_empty() {
        anyhow::bail!("no system of {} has a standby: nothing to drill", cfg.path.display());
    }
    let state = ctx.state()?;
    let made = sandbox.is_none();
    let dir = sandbox.unwrap_or_else(|| {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S-%f");
        std::env::temp_dir().join(format!("kura-failover-drill-{stamp}"))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the sandbox {}", dir.display()))?;
    let now = chrono::Utc::now;
    let mut rows = Vec::new();
    for sys in systems {
        let res = (|| -> Result<_> {
            let (repo, site) = (repo_for(ctx, cfg, sys)?, site(ctx, cfg, sys)?);
            let progress = kura::progress::NoProgress;
            let c = SbCtx {
                state: &state,
                repo: &repo,
                sys,
                site: &site,
                runner: &ShellRunner,
                now: &now,
                progress: &progress,
            };
            Ok(standby::drill::drill(&c, &dir, None)?)
        })();
        let (record, error) = match res {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        rows.push(DrillRow {
            system: sys.name.clone(),
            priority: sys.priority.get(),
            tolerance_secs: sys.tolerance().num_seconds(),
            record,
            error,
        });
    }
    if keep {
        eprintln!("sandbox kept: {}", dir.display());
    } else {
        for r in &rows {
            let _ = std::fs::remove_dir_all(dir.join(&r.system));
        }
        if made {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    let failed = rows.iter().any(|r| r.error.is_some() || r.record.as_ref().is_some_and(|x| x.met == Some(false)));
    if ctx.json {
        output::print_json(&rows)?;
    } else {
        println!(
            "{:<16} {:>4}  {:<9}  {:>10}  {:>10}  {:>10}  {:>10}  RESULT",
            "SYSTEM", "PRIO", "SNAPSHOT", "ROLL-BACK", "SWITCH", "TOTAL", "TOLERANCE"
        );
        for r in &rows {
            let Some(x) = &r.record else {
                println!("{:<16} {:>4}  failed: {}", r.system, r.priority, r.error.as_deref().unwrap_or(""));
                continue;
            };
            let (a, sw) = (x.apply_ms.unwrap_or(0), x.switch_ms.unwrap_or(0));
            println!(
                "{:<16} {:>4}  {:<9}  {:>10}  {:>10}  {:>10}  {:>10}  {}",
                r.system,
                r.priority,
                x.snapshot.as_deref().map(|s| &s[..8]).unwrap_or("-"),
                output::duration_ms(a),
                output::duration_ms(sw),
                output::duration_ms(a + sw),
                human_secs(r.tolerance_secs),
                if x.met == Some(true) { "within the tolerance" } else { "OVER the tolerance" }
            );
        }
    }
    Ok(if failed { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

/// Prints what keeping a standby current did; exit 1 when its verification failed.
pub fn print_update(ctx: &Ctx, system: &str, up: &Update) -> Result<ExitCode> {
    if ctx.json {
        output::print_json(up)?;
    } else {
        describe_update(system, up);
    }
    Ok(if up.verify_failed() { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

/// What keeping a standby current did, for people.
pub fn describe_update(system: &str, up: &Update) {
    {
        match up {
            Update::Applied { snapshot, sync, verify_ok, verify_error, .. } => {
                println!(
                    "standby of {system} holds snapshot {}: {} files unchanged, {} written ({} rebuilt from their old blocks), {} removed",
                    &snapshot[..8],
                    sync.files_unchanged,
                    sync.files_written,
                    sync.files_reused,
                    sync.removed
                );
                println!(
                    "fetched {}, reused {} of changed files, took {}",
                    output::bytes(sync.bytes_written),
                    output::bytes(sync.bytes_reused),
                    output::duration_ms(sync.duration_ms)
                );
                match verify_error {
                    None if *verify_ok => println!("verified"),
                    _ => eprintln!(
                        "warning: standby of {system} FAILED verification: {}",
                        verify_error.as_deref().unwrap_or("")
                    ),
                }
            }
            Update::Skipped { reason } => println!("standby of {system} not updated: {reason}"),
        }
    }
}

#[derive(Serialize)]
struct Row {
    system: String,
    path: String,
    state: Option<String>,
    snapshot: Option<String>,
    snapshot_time: Option<chrono::DateTime<chrono::Utc>>,
    applied_at: Option<chrono::DateTime<chrono::Utc>>,
    lag_secs: Option<i64>,
    verify_ok: Option<bool>,
    verified_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(flatten)]
    health: standby::Health,
    error: Option<String>,
}

/// The standby rows of the config's systems, with health against the RPO rule.
pub fn rows(cfg: &Config, state: &kura::state::State, repo: Option<&Repository>) -> Result<Vec<StandbyView>> {
    let snaps = match repo {
        Some(r) => r.snapshots()?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for sys in cfg.systems.iter().filter(|s| s.standby.is_some()) {
        let rec = state.standby(&sys.name)?;
        // An agent host's system: its snapshots are in the host's repository; its
        // last good backup is the daemon's record of it.
        let last = standby::newest_snapshot(&snaps, sys, None)
            .map(|(_, s)| s.time)
            .or_else(|| state.last_good_backup(&sys.name).ok().flatten().map(|r| r.started_at));
        let allowed = cfg.max_backup_age[sys.priority.get() as usize];
        let health = standby::health(rec.as_ref(), last, allowed);
        let lag = rec.as_ref().and_then(|r| standby::health::lag(r, last)).map(|l| l.num_seconds());
        out.push(StandbyView {
            system: sys.name.clone(),
            path: sys.standby.as_ref().map(standby::update::location).unwrap_or_default(),
            rec,
            health,
            lag,
        });
    }
    Ok(out)
}

pub struct StandbyView {
    pub system: String,
    /// `HOST:PATH` for a standby on an agent host.
    pub path: String,
    pub rec: Option<kura::state::standby::StandbyRecord>,
    pub health: standby::Health,
    pub lag: Option<i64>,
}

fn status(ctx: &Ctx, cfg: &Config) -> Result<ExitCode> {
    let state = ctx.state_read_only().or_else(|_| ctx.state())?;
    let repo = open_repo(ctx, cfg).ok();
    let views = rows(cfg, &state, repo.as_deref())?;
    let out: Vec<Row> = views
        .iter()
        .map(|v| Row {
            system: v.system.clone(),
            path: v.path.clone(),
            state: v.rec.as_ref().map(|r| r.state.to_string()),
            snapshot: v.rec.as_ref().and_then(|r| r.snapshot.clone()),
            snapshot_time: v.rec.as_ref().and_then(|r| r.snapshot_time),
            applied_at: v.rec.as_ref().and_then(|r| r.applied_at),
            lag_secs: v.lag,
            verify_ok: v.rec.as_ref().and_then(|r| r.verify_ok),
            verified_at: v.rec.as_ref().and_then(|r| r.verified_at),
            health: v.health.clone(),
            error: v.rec.as_ref().and_then(|r| r.error.clone()),
        })
        .collect();
    if ctx.json {
        output::print_json(&out)?;
    } else if out.is_empty() {
        println!("no system of {} has a standby", cfg.path.display());
    }
    for r in out.iter().filter(|_| !ctx.json) {
        println!("{}", describe(r));
    }
    let alert = views.iter().any(|v| v.health.is_alert());
    Ok(if alert { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

fn describe(r: &Row) -> String {
    let held = r.snapshot.as_deref().map(|s| &s[..8]).unwrap_or("nothing");
    let health = match &r.health {
        standby::Health::Healthy => "healthy".to_string(),
        standby::Health::Serving => "SERVING (failed over)".to_string(),
        standby::Health::Empty => "EMPTY: never applied".to_string(),
        standby::Health::Applying => "applying (an update is under way or was interrupted)".to_string(),
        standby::Health::Stale { lag_secs, allowed_secs } => {
            format!("STALE: {} behind, {} allowed", human_secs(*lag_secs), human_secs(*allowed_secs))
        }
        standby::Health::Failed { reason } => format!("FAILED: {reason}"),
    };
    let lag = r.lag_secs.map(|l| format!(", lag {}", human_secs(l))).unwrap_or_default();
    let verify = match r.verify_ok {
        Some(true) => ", verified",
        Some(false) => ", verification FAILED",
        None => "",
    };
    format!("{:<16} {}  holds {held}{lag}{verify}: {health}", r.system, r.path)
}

/// What a failover or failback works with: the system, its repository, the
/// incidents' repository (the config's: the chain's key and its anchor, also for a
/// system whose backups live in its host's repository), the state and the run lock.
struct SwitchCtx<'a> {
    sys: &'a SystemConfig,
    repo: Arc<Repository>,
    home: Arc<Repository>,
    state: kura::state::State,
    _lock: kura::orchestrate::runlock::RunLock,
}

fn switch_ctx<'a>(ctx: &Ctx, cfg: &'a Config, name: &str) -> Result<SwitchCtx<'a>> {
    let sys = system(cfg, name)?;
    standby::standby_of(sys)?;
    let repo = repo_for(ctx, cfg, sys)?;
    let home = match cfg.agent_host(sys) {
        Some(_) if ctx.repo_location().is_none() => open_repo(ctx, cfg)?,
        _ => repo.clone(),
    };
    let mut state = ctx.state()?;
    state.set_chain_key(home.key());
    let lock = super::recover::exclusive(&state)?;
    Ok(SwitchCtx { sys, repo, home, state, _lock: lock })
}

pub fn failover(ctx: &Ctx, a: FailoverArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.config)?;
    let SwitchCtx { sys, repo, home, mut state, _lock } = switch_ctx(ctx, &cfg, &a.system)?;
    let reader = ctx.state()?;
    let bar = output::Bar::new(ctx.show_progress(), "failing over");
    let now = chrono::Utc::now;
    let site = site(ctx, &cfg, sys)?;
    let sw = Switch { state: &reader, repo: &repo, sys, site: &site, runner: &ShellRunner, now: &now, progress: &bar };
    let res = sw.failover(&mut state, a.incident, a.snapshot.as_deref());
    bar.finish();
    super::incident::anchor_after_write(&home, &state, a.incident, chrono::Utc::now());
    let (rec, note) = res.with_context(|| format!("failover of {} for incident {}", a.system, a.incident))?;
    if ctx.json {
        // The record, with the note on the snapshot chosen (null when it is simply
        // the newest before the compromise, or a resumed failover).
        let mut v = serde_json::to_value(&rec)?;
        v["choice"] = serde_json::json!(note);
        output::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = &note {
        println!("{n}");
    }
    print_switch(ctx, &rec)
}

pub fn failback(ctx: &Ctx, a: FailbackArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.config)?;
    let SwitchCtx { sys, repo, home, mut state, _lock } = switch_ctx(ctx, &cfg, &a.system)?;
    let reader = ctx.state()?;
    let bar = output::Bar::new(ctx.show_progress(), "failing back");
    let now = chrono::Utc::now;
    let site = site(ctx, &cfg, sys)?;
    let sw = Switch { state: &reader, repo: &repo, sys, site: &site, runner: &ShellRunner, now: &now, progress: &bar };
    let res = sw.failback(&mut state);
    bar.finish();
    let rec = res.with_context(|| format!("failback of {}", a.system))?;
    if let Some(inc) = rec.incident {
        super::incident::anchor_after_write(&home, &state, inc, chrono::Utc::now());
    }
    print_switch(ctx, &rec)
}

fn print_switch(ctx: &Ctx, r: &SwitchRecord) -> Result<ExitCode> {
    if ctx.json {
        output::print_json(r)?;
    } else {
        let snap = r.snapshot.as_deref().map(|s| &s[..8]).unwrap_or("-");
        println!("{} {} of {}: snapshot {snap}", r.kind, r.phase, r.system);
        println!(
            "data step {}, hooks {}",
            output::duration_ms(r.apply_ms.unwrap_or(0)),
            output::duration_ms(r.switch_ms.unwrap_or(0))
        );
        if let (Some(d), Some(l), Some(met)) = (r.downtime_secs, r.data_loss_secs, r.met) {
            println!(
                "downtime {}, data lost {}: {}",
                human_secs(d),
                human_secs(l),
                if met { "within the tolerance (met)" } else { "over the tolerance (MISSED)" }
            );
        }
    }
    Ok(if r.met == Some(false) { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

/// After `kura backup --system NAME`: the standby is brought to the new snapshot.
pub fn after_backup(ctx: &Ctx, sys: &SystemConfig, repo: &Arc<Repository>, site: &Site) -> Result<Option<Update>> {
    if sys.standby.is_none() {
        return Ok(None);
    }
    let state = ctx.state()?;
    let now = chrono::Utc::now;
    let progress = kura::progress::NoProgress;
    let c = SbCtx { state: &state, repo, sys, site, runner: &ShellRunner, now: &now, progress: &progress };
    let up = standby::update::keep_current(&c)
        .with_context(|| format!("the backup is stored, but the standby of {} was not brought to it", sys.name))?;
    Ok(up)
}
