//! The command line: clap definitions, opening the repository, and all printing.

mod agent;
mod backup;
mod check;
mod config;
mod coordinator;
mod copy;
mod daemon;
mod diff;
mod drill;
mod dump;
mod export;
mod filter;
mod find;
mod forecast;
mod forget;
mod incident;
mod key;
mod ls;
mod mount;
mod mount_fs;
mod notify;
mod output;
mod packaging;
mod plan;
mod prune;
mod recover;
mod remote;
mod report;
mod restore;
mod scan;
mod signals;
mod snapshots;
mod standby;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use kura::repo::Repository;

/// Exit codes (as ripgrep): 0 success, 1 partial success or problems found, 2 error.
pub const EXIT_PARTIAL: u8 = 1;

#[derive(Parser)]
#[command(name = "kura", version, about = "Deduplicated, encrypted backups and priority-ordered recovery")]
#[command(
    after_help = "Start here: kura init --repo DIR, then kura backup PATH, kura snapshots, kura restore latest --target DIR"
)]
pub struct Cli {
    /// Repository location: a directory, or s3:https://HOST[:PORT]/BUCKET[/PREFIX] or s3:BUCKET[/PREFIX] (docs/REMOTE.md)
    #[arg(short = 'r', long = "repo", env = "KURA_REPOSITORY", global = true)]
    repo: Option<String>,
    /// File holding the passphrase (else KURA_PASSWORD, else a prompt on a terminal)
    #[arg(long, env = "KURA_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    json: bool,
    /// No progress bar
    #[arg(short, long, global = true)]
    quiet: bool,
    /// State database (incidents, recoveries, drills, job history) [default: $KURA_STATE,
    /// /var/lib/kura/state.db for root, else ~/.local/state/kura/state.db]
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// Where a remote repository's metadata (index, snapshots, tree packs; all
    /// encrypted) is cached [default: $KURA_CACHE_DIR, else $XDG_CACHE_HOME/kura, else ~/.cache/kura]
    #[arg(long, env = "KURA_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Read every object from the repository, without the local metadata cache
    #[arg(long, global = true)]
    no_cache: bool,
    /// Run this command on a remote coordinator (https://HOST:PORT) over mutual TLS, with
    /// --identity: status, jobs, run, incident, recover, report, drill, plan, snapshots,
    /// signals, clean-point (docs/FLEET.md)
    #[arg(long, env = "KURA_COORDINATOR", value_name = "URL", global = true, requires = "identity")]
    coordinator: Option<String>,
    /// An operator's or viewer's identity directory (made by `kura agent join --dir`)
    #[arg(long, env = "KURA_IDENTITY", value_name = "DIR", global = true)]
    identity: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new encrypted repository
    Init(key::InitArgs),
    /// Back up files and directories into a new snapshot
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// List the files in a snapshot
    Ls(ls::Args),
    /// Restore a snapshot (or part of it) into a directory
    Restore(restore::Args),
    /// Verify the repository: structure, and optionally the stored data
    Check(check::Args),
    /// Remove snapshots by a retention policy
    Forget(forget::Args),
    /// Free space: remove data no snapshot needs, repack mostly-unused packs
    Prune(prune::Args),
    /// Rebuild the index, or rewrite snapshots that need lost data
    #[command(subcommand)]
    Repair(prune::RepairCommand),
    /// Manage the passphrases that open the repository
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Record incidents and their timeline (the standard's fields, cause, review)
    Incident(incident::Args),
    /// Restore an incident's systems in priority order once its cause is resolved
    Recover(recover::Args),
    /// Run a plan as a drill into a sandbox; list, show and review drills
    #[command(subcommand)]
    Drill(drill::DrillCommand),
    /// Warm standbys: bring one to a snapshot by difference, show each one's state
    Standby(standby::Args),
    /// Fail a system over to its standby for an incident (fence, roll back by difference, promote, verify)
    Failover(standby::FailoverArgs),
    /// Bring a rebuilt primary back from its standby (demote, back up, apply by difference, unfence)
    Failback(standby::FailbackArgs),
    /// Recovery-time compliance report for an incident, a drill or a period (md, html, json, csv)
    Report(report::Args),
    /// Check a config file (kura.toml) without starting anything
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Check a restoration plan and show its execution order
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// The state database at the remote site: push a copy, list the versions, restore it
    #[command(subcommand)]
    Coordinator(coordinator::CoordinatorCommand),
    /// Run the scheduler in the foreground (backups, prune, check on cron schedules), or stop it
    Daemon(daemon::DaemonArgs),
    /// Ask the daemon: per system the last backup, its age, late or not, the next run; running jobs
    Status(daemon::StatusArgs),
    /// Ask the daemon for the history of job runs
    Jobs(daemon::JobsArgs),
    /// Ask the daemon to run a job or a system's backup now
    Run(daemon::RunArgs),
    /// Test the notifications of a config (webhook, command)
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Which snapshots hold a path matching a glob (name or full path), newest first
    Find(find::Args),
    /// What changed between two snapshots: added, removed, modified paths
    Diff(diff::Args),
    /// Change and entropy signals per snapshot, suspect snapshots and why; false
    /// positives and holds (docs/DETECTION.md)
    Signals(signals::Args),
    /// Check snapshots against indicators of compromise (SHA-256 hashes, name globs)
    Scan(scan::ScanArgs),
    /// Rank a system's snapshots clean, suspect or infected, and name the newest clean one
    CleanPoint(scan::CleanPointArgs),
    /// Write a file of a snapshot to stdout, or a directory as a tar archive
    Dump(dump::Args),
    /// Mount the snapshots as a read-only file system (FUSE) on an empty directory
    Mount(mount::Args),
    /// Copy the repository to another location (a remote site): only what is missing, verified
    Copy(copy::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout
    Completions(packaging::CompletionsArgs),
    /// Write man pages (kura.1 and one per subcommand) into a directory
    Man(packaging::ManArgs),
    /// The fleet: enrol hosts and operators on the coordinator, join and run the agent on a host
    #[command(subcommand)]
    Agent(agent::AgentCommand),
}

/// What every command needs: global options and a way to open the repository.
pub struct Ctx {
    repo: Option<String>,
    password_file: Option<PathBuf>,
    pub json: bool,
    quiet: bool,
    state: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    /// `--coordinator` and `--identity`: the command runs there.
    remote: Option<remote::Remote>,
}

impl Ctx {
    pub fn repo_path(&self) -> Result<&String> {
        self.repo.as_ref().context("no repository given: use --repo LOCATION or set KURA_REPOSITORY")
    }

    pub fn backend(&self) -> Result<Arc<dyn kura::backend::Backend>> {
        Ok(kura::backend::open(self.repo_path()?)?)
    }

    /// The passphrase from KURA_PASSWORD, the password file, or a prompt.
    pub fn passphrase(&self, confirm: bool) -> Result<Vec<u8>> {
        if let Ok(p) = std::env::var("KURA_PASSWORD") {
            return Ok(p.into_bytes());
        }
        if let Some(f) = &self.password_file {
            return read_password_file(f);
        }
        prompt("passphrase", confirm)
    }

    /// The `--repo` location, if one was given.
    pub fn repo_location(&self) -> Option<String> {
        self.repo.clone()
    }

    /// Opens a repository named in the config: KURA_PASSWORD or --password-file win
    /// over the config's password file.
    pub fn open_at(
        &self,
        location: &kura::backend::Location,
        password_file: Option<&std::path::Path>,
    ) -> Result<Arc<Repository>> {
        let backend = kura::backend::open_location(location).with_context(|| format!("repository {location}"))?;
        let pass = match (std::env::var("KURA_PASSWORD").is_ok() || self.password_file.is_some(), password_file) {
            (false, Some(f)) => read_password_file(f)?,
            _ => self.passphrase(false)?,
        };
        let repo = Repository::open(backend, &pass).with_context(|| format!("opening the repository {location}"))?;
        Ok(Arc::new(self.cached(repo, location, false)))
    }

    pub fn open(&self) -> Result<Arc<Repository>> {
        self.open_with_cache(true)
    }

    /// Opens the `--repo` repository; `cache: false` reads every object from it (check).
    pub fn open_with_cache(&self, cache: bool) -> Result<Arc<Repository>> {
        let backend = self.backend()?;
        let pass = self.passphrase(false)?;
        let repo = Repository::open(backend, &pass)?;
        let location = kura::backend::Location::parse(self.repo_path()?)?;
        Ok(Arc::new(self.cached(repo, &location, !cache)))
    }

    /// The repository with its metadata cache, where one applies (remote locations).
    fn cached(&self, repo: Repository, location: &kura::backend::Location, disabled: bool) -> Repository {
        let root = kura::repo::cache::root_for(location, self.cache_dir.as_deref(), disabled || self.no_cache);
        match root {
            Some(root) => repo.with_cache(&root),
            None => repo,
        }
    }

    /// Opens the state database (creating it on first use).
    pub fn state(&self) -> Result<kura::state::State> {
        let path = self.state.clone().unwrap_or_else(kura::state::default_path);
        kura::state::State::open(&path).with_context(|| format!("opening the state database {}", path.display()))
    }

    /// The state database given with --state, if any.
    pub fn state_path(&self) -> Option<PathBuf> {
        self.state.clone()
    }

    /// The state database read-only, or `None` when it does not exist yet (commands
    /// that only read marks and holds work without one).
    pub fn state_if_exists(&self) -> Result<Option<kura::state::State>> {
        let path = self.state.clone().unwrap_or_else(kura::state::default_path);
        if !path.exists() {
            return Ok(None);
        }
        self.state_read_only().map(Some)
    }

    /// Opens the state database for a command that only reads it: this works on a
    /// database the user cannot write.
    pub fn state_read_only(&self) -> Result<kura::state::State> {
        let path = self.state.clone().unwrap_or_else(kura::state::default_path);
        kura::state::State::open_read_only(&path)
            .with_context(|| format!("opening the state database {}", path.display()))
    }

    /// The clock every recorded time comes from.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    /// A progress bar only on a terminal, and never with --json or --quiet.
    pub fn show_progress(&self) -> bool {
        !self.json && !self.quiet && std::io::stdout().is_terminal()
    }
}

/// A passphrase from a file (the library's rule: an empty file is refused).
pub fn read_password_file(f: &std::path::Path) -> Result<Vec<u8>> {
    Ok(kura::repo::keys::read_password_file(f)?)
}

pub fn prompt(what: &str, confirm: bool) -> Result<Vec<u8>> {
    if !std::io::stdin().is_terminal() {
        bail!("no {what}: set KURA_PASSWORD, KURA_PASSWORD_FILE or --password-file (stdin is not a terminal)");
    }
    let p = rpassword::prompt_password(format!("enter {what}: "))?;
    if confirm {
        let again = rpassword::prompt_password(format!("enter {what} again: "))?;
        if again != p {
            bail!("the two {what}s differ; nothing was changed");
        }
    }
    if p.is_empty() {
        bail!("an empty {what} is not allowed");
    }
    Ok(p.into_bytes())
}

impl Cli {
    /// How main sets up logging: JSON or text, and the default level (the daemon logs
    /// what it does at info; commands only warnings).
    pub fn log_setup(&self) -> (bool, &'static str) {
        match &self.command {
            Command::Daemon(a) => (a.log_format == daemon::LogFormat::Json, "info"),
            Command::Agent(agent::AgentCommand::Run(_)) => (false, "info"),
            _ => (false, "warn"),
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        repo: cli.repo,
        password_file: cli.password_file,
        json: cli.json,
        quiet: cli.quiet,
        state: cli.state,
        cache_dir: cli.cache_dir,
        no_cache: cli.no_cache,
        remote: match (cli.coordinator, cli.identity) {
            (Some(url), Some(identity)) => Some(remote::Remote { url, identity }),
            _ => None,
        },
    };
    if let Some(r) = &ctx.remote {
        match remote::route(&cli.command) {
            remote::Route::Typed => {}
            remote::Route::Remote { .. } => return remote::run(r),
            remote::Route::LocalOnly => return remote::refuse_local_only(),
        }
    }
    match cli.command {
        Command::Init(a) => key::init(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Snapshots(a) => snapshots::run(&ctx, a),
        Command::Ls(a) => ls::run(&ctx, a),
        Command::Find(a) => find::run(&ctx, a),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Signals(a) => signals::run(&ctx, a),
        Command::Scan(a) => scan::scan(&ctx, a),
        Command::CleanPoint(a) => scan::clean_point(&ctx, a),
        Command::Dump(a) => dump::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Key(k) => key::run(&ctx, k),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Repair(r) => prune::repair(&ctx, r),
        // Commands that change incidents or runs copy the state database to the
        // remote site when no daemon does (docs/DAEMON.md).
        Command::Incident(c) => coordinator::pushing(&ctx, c.config.clone(), || incident::run(&ctx, c)),
        Command::Recover(a) => coordinator::pushing(&ctx, recover::config_path(&a.common), || recover::run(&ctx, a)),
        Command::Drill(c) => {
            let cfg = match &c {
                drill::DrillCommand::Run(a) => recover::config_path(&a.common),
                _ => None,
            };
            coordinator::pushing(&ctx, cfg, || drill::run(&ctx, c))
        }
        Command::Coordinator(c) => coordinator::run(&ctx, c),
        Command::Report(a) => report::run(&ctx, a),
        Command::Standby(a) => standby::run(&ctx, a),
        Command::Failover(a) => standby::failover(&ctx, a),
        Command::Failback(a) => standby::failback(&ctx, a),
        Command::Config(c) => config::run(&ctx, c),
        Command::Plan(p) => plan::run(&ctx, p),
        Command::Daemon(a) => daemon::daemon(&ctx, a),
        Command::Status(a) => daemon::status(&ctx, a),
        Command::Jobs(a) => daemon::jobs(&ctx, a),
        Command::Run(a) => daemon::run(&ctx, a),
        Command::Notify(c) => notify::run(&ctx, c),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Mount(a) => mount::run(&ctx, a),
        Command::Completions(a) => packaging::completions(a),
        Command::Man(a) => packaging::man(&ctx, a),
        Command::Agent(c) => agent::run(&ctx, c),
    }
}
