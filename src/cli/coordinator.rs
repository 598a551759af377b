//! `kura coordinator push | versions | restore`: the state database (incidents, runs,
//! job history) on the remote site, and bringing it back on a fresh machine
//! (docs/DAEMON.md, "The state database at the remote site").

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use kura::config::{Config, RepoSpec};
use kura::repo::Repository;
use kura::state::offsite::{self, Pusher};
use serde::Serialize;

use super::{output, Ctx};

#[derive(clap::Subcommand)]
pub enum CoordinatorCommand {
    /// Copy the state database to the remote site now, as a new version
    Push(Common),
    /// List the versions of the state database on the remote site, oldest first
    Versions(Common),
    /// Bring the state database back from the remote site (a fresh coordinator machine)
    #[command(after_help = "Example, on a fresh machine holding only the config and the remote's credentials:\n  \
        kura coordinator restore --config /etc/kura/kura.toml\n  \
        kura incident list && kura recover status")]
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
pub struct Common {
    /// The config whose [remote] holds the copies, and whose `state` is the database
    /// [default: ./kura.toml, /etc/kura/kura.toml]
    #[arg(long, env = "KURA_CONFIG")]
    config: Option<PathBuf>,
    /// The remote location, instead of the config's [remote] (passphrase: the config's
    /// [remote] password_file, else --password-file / KURA_PASSWORD)
    #[arg(long, value_name = "REMOTE")]
    from: Option<String>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    common: Common,
    /// Restore this version (a name from `kura coordinator versions`) [default: the newest]
    #[arg(long, conflicts_with = "db")]
    version: Option<String>,
    /// Restore the newest copy of this database (an id, or its prefix, from `versions`),
    /// when the remote holds copies of several
    #[arg(long)]
    db: Option<String>,
    /// Replace an existing state database
    #[arg(long)]
    force: bool,
}

/// The config (if any), the remote site's spec, and the state database's path.
struct Target {
    remote: RepoSpec,
    state: PathBuf,
}

fn find_config(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    ["kura.toml", "/etc/kura/kura.toml"].into_iter().map(PathBuf::from).find(|p| p.is_file())
}

fn load_config(explicit: Option<&Path>) -> Result<Option<Config>> {
    let Some(path) = find_config(explicit) else { return Ok(None) };
    let cfg = kura::config::load(&path)
        .map_err(|p| anyhow!("the config {} is not valid; nothing was changed:\n{p}", path.display()))?;
    Ok(Some(cfg))
}

/// The state path: --state, else the config's `state`, else the default.
fn state_path(ctx: &Ctx, cfg: Option<&Config>) -> PathBuf {
    ctx.state_path().or_else(|| cfg.and_then(|c| c.state.clone())).unwrap_or_else(kura::state::default_path)
}

fn target(ctx: &Ctx, c: &Common) -> Result<Target> {
    let cfg = load_config(c.config.as_deref())?;
    let state = state_path(ctx, cfg.as_ref());
    let configured = cfg.as_ref().and_then(|c| c.remote.clone());
    let remote = match (&c.from, configured) {
        (None, Some(r)) => r,
        (None, None) => {
            return Err(anyhow!(
                "no remote site: give --from REMOTE, or --config FILE with a [remote] table{}",
                cfg.map(|c| format!(" ({} has none)", c.path.display())).unwrap_or_default()
            ))
        }
        (Some(loc), r) => RepoSpec {
            location: kura::backend::Location::parse(loc).with_context(|| format!("--from {loc}"))?,
            // The config's passphrase file for its remote; else the global options.
            password_file: r.map(|r| r.password_file).unwrap_or_default(),
        },
    };
    Ok(Target { remote, state })
}

fn open_remote(ctx: &Ctx, spec: &RepoSpec) -> Result<Arc<Repository>> {
    let file = (!spec.password_file.as_os_str().is_empty()).then_some(spec.password_file.as_path());
    ctx.open_at(&spec.location, file).with_context(|| format!("the remote site {}", spec.location))
}

pub fn run(ctx: &Ctx, cmd: CoordinatorCommand) -> Result<ExitCode> {
    match cmd {
        CoordinatorCommand::Push(c) => {
            let t = target(ctx, &c)?;
            let repo = open_remote(ctx, &t.remote)?;
            let p = offsite::push(&t.state, &repo)
                .with_context(|| format!("copying {} to {}", t.state.display(), t.remote.location))?;
            if ctx.json {
                output::print_json(&p)?;
            } else {
                println!(
                    "pushed {} ({}) to {} as version {}; {} older version(s) removed",
                    t.state.display(),
                    output::bytes(p.db_bytes),
                    t.remote.location,
                    p.version.name,
                    p.removed
                );
            }
        }
        CoordinatorCommand::Versions(c) => {
            let t = target(ctx, &c)?;
            let repo = open_remote(ctx, &t.remote)?;
            let all = offsite::versions(&repo)?;
            if ctx.json {
                output::print_json(&all)?;
            } else {
                for v in &all {
                    println!("{}  db {}  {}  {}", v.name, v.db, v.taken_at.to_rfc3339(), output::bytes(v.stored_bytes));
                }
                println!(
                    "{} version(s) on {} (the newest {} of each database are kept)",
                    all.len(),
                    t.remote.location,
                    offsite::KEEP
                );
            }
        }
        CoordinatorCommand::Restore(a) => restore(ctx, a)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Restored {
    state: String,
    version: offsite::Version,
    db_bytes: u64,
    incidents: u64,
    runs: u64,
    job_runs: u64,
}

fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<()> {
    let t = target(ctx, &a.common)?;
    if t.state.exists() && !a.force {
        return Err(anyhow!(
            "{} already holds a state database; nothing was changed. Move it away, or give --force to replace it",
            t.state.display()
        ));
    }
    let repo = open_remote(ctx, &t.remote)?;
    let pick = match (&a.version, &a.db) {
        (Some(n), _) => offsite::Pick::Name(n),
        (None, Some(d)) => offsite::Pick::Db(d),
        (None, None) => offsite::Pick::Newest,
    };
    let (version, bytes) = offsite::fetch(&repo, pick)?;
    offsite::install(&t.state, &bytes, a.force)?;
    let state = kura::state::State::open(&t.state)?;
    let counts = state.counts()?;
    let r = Restored {
        state: t.state.display().to_string(),
        version,
        db_bytes: bytes.len() as u64,
        incidents: counts.0,
        runs: counts.1,
        job_runs: counts.2,
    };
    if ctx.json {
        output::print_json(&r)?;
    } else {
        println!(
            "restored {} from {} version {} (taken {})",
            r.state,
            t.remote.location,
            r.version.name,
            r.version.taken_at.to_rfc3339()
        );
        println!("{} incident(s), {} recovery/drill run(s), {} job run(s)", r.incidents, r.runs, r.job_runs);
    }
    Ok(())
}

/// Runs `body` (a command that changes incidents or runs) and copies the state
/// database to the config's remote site while it runs and when it ends, unless a
/// daemon answers on its socket (the daemon pushes then). Problems are warnings:
/// the command's own work is stored either way.
pub fn pushing<T>(ctx: &Ctx, config: Option<PathBuf>, body: impl FnOnce() -> Result<T>) -> Result<T> {
    let remote = match load_config(config.as_deref()) {
        Ok(Some(c)) => c.remote.clone(),
        _ => None,
    };
    let Some(remote) = remote.filter(|_| !daemon_runs()) else { return body() };
    let state = ctx.state_path().unwrap_or_else(kura::state::default_path);
    let mut pusher = Pusher::new(&state);
    pusher.baseline();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let mut warned = false;
        loop {
            let stop = !matches!(
                stop_rx.recv_timeout(std::time::Duration::from_secs(1)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            let res = if stop { pusher.flush(&remote) } else { pusher.step(&remote) };
            if let Err(e) = res {
                if !warned {
                    eprintln!("warning: the state database was not copied to the remote site {}: {e}", remote.location);
                    warned = true;
                }
            }
            if stop {
                return;
            }
        }
    });
    let res = body();
    drop(stop_tx);
    let _ = worker.join();
    res
}

fn daemon_runs() -> bool {
    std::os::unix::net::UnixStream::connect(kura::daemon::api::default_socket()).is_ok()
}
