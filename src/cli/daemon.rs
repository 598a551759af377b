//! `kura daemon`, `kura daemon stop`, and the commands that ask the daemon over its
//! socket: `kura status`, `kura jobs`, `kura run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Local, Utc};
use kura::daemon::{self, Client, JobKind, Reply, RunState, Status};
use kura::state::jobs::{JobRun, Outcome};

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args, Clone)]
pub struct SocketArg {
    /// The daemon's control socket [default: $XDG_RUNTIME_DIR/kura/kura.sock, /run/kura/kura.sock for root]
    #[arg(long, env = "KURA_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// The daemon over its socket, or a remote coordinator over mutual TLS.
enum Conn {
    Local(Client),
    Remote(kura::agent::identity::Identity),
}

impl Conn {
    /// A remote coordinator when `--coordinator` is given, else the local socket.
    fn open(ctx: &Ctx, a: &SocketArg) -> Result<Conn> {
        match &ctx.remote {
            Some(r) => Ok(Conn::Remote(r.identity()?)),
            None => Ok(Conn::Local(connect(&a.path())?)),
        }
    }

    fn request(&mut self, req: daemon::Request) -> Result<Reply> {
        match self {
            Conn::Local(c) => Ok(c.request(&req)?),
            Conn::Remote(id) => {
                let body =
                    daemon::fleet::OperatorRequest { version: kura::fleet::proto::PROTOCOL_VERSION, request: req };
                let r: daemon::Response = id
                    .post("/v1/operator", &body)?
                    .ok_or_else(|| anyhow::anyhow!("the coordinator {} sent an empty answer", id.url))?;
                match (r.ok, r.data) {
                    (true, Some(data)) => Ok(data),
                    _ => anyhow::bail!("{}", r.error.unwrap_or_else(|| "the coordinator refused the request".into())),
                }
            }
        }
    }
}

impl SocketArg {
    fn path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(daemon::default_socket)
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event for people (no colors when stderr is not a terminal)
    #[default]
    Text,
    /// One JSON object per line
    Json,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DaemonArgs {
    #[command(subcommand)]
    cmd: Option<DaemonCommand>,
    /// The config file (docs/CONFIG.md); required to start the daemon
    #[arg(long, env = "KURA_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// The state database [default: the config's `state`, else /var/lib/kura/state.db
    /// for root, else ~/.local/state/kura/state.db]
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArg,
    /// Log format on stderr (KURA_LOG sets the level, default info)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds running jobs get to finish after SIGTERM before they are recorded as interrupted
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    shutdown_timeout: u64,
}

#[derive(clap::Subcommand)]
enum DaemonCommand {
    /// Ask the running daemon to stop (as SIGTERM does) and wait until it has exited
    Stop {
        #[command(flatten)]
        socket: SocketArg,
        /// Return once the daemon has been asked, without waiting for it to exit
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    socket: SocketArg,
}

fn job_kind(s: &str) -> std::result::Result<JobKind, String> {
    JobKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
        let all: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("{s:?} is not a job kind: use one of {}", all.join(", "))
    })
}

#[derive(clap::Args)]
pub struct JobsArgs {
    /// Only the runs of this system
    #[arg(long, value_name = "NAME")]
    system: Option<String>,
    /// Only runs of this kind: backup, replicate, prune, check or drill
    #[arg(long, value_name = "KIND", value_parser = job_kind)]
    job: Option<JobKind>,
    /// At most N runs, newest first
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// A job (backup:NAME, prune, check, replicate, drill) or a system name (its backup)
    target: String,
    /// Return as soon as the run has started instead of waiting for its end
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    socket: SocketArg,
}

/// One connection to the daemon, with the CLI's error wrapping.
fn connect(socket: &Path) -> Result<Client> {
    Ok(Client::connect(socket)?)
}

fn load_config(path: &Path) -> Result<kura::config::Config, kura::config::Problems> {
    let cfg = kura::config::load(path)?;
    let env = cfg.check_environment();
    if env.has_errors() {
        return Err(env);
    }
    for p in &env.0 {
        tracing::warn!("{p}");
    }
    Ok(cfg)
}

pub fn daemon(_ctx: &Ctx, a: DaemonArgs) -> Result<ExitCode> {
    if let Some(DaemonCommand::Stop { socket, no_wait }) = a.cmd {
        return stop(&socket.path(), no_wait);
    }
    let config = a.config.context("no config given: use `kura daemon --config PATH` (see docs/CONFIG.md)")?;
    let cfg = match load_config(&config) {
        Ok(c) => c,
        Err(p) => {
            eprintln!("{p}");
            bail!("{} has errors; the daemon did not start (check it with `kura config check`)", config.display());
        }
    };
    let state = a.state.or_else(|| cfg.state.clone()).unwrap_or_else(kura::state::default_path);
    let socket = a.socket.path();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let res = rt.block_on(run_daemon(cfg, state, socket, Duration::from_secs(a.shutdown_timeout)));
    // Jobs still running past the timeout were recorded as interrupted: do not wait.
    rt.shutdown_background();
    res?;
    Ok(ExitCode::SUCCESS)
}

/// Binds the socket, wires the signals (SIGTERM/SIGINT stop, SIGHUP reloads) and
/// serves until the daemon has stopped.
async fn run_daemon(cfg: kura::config::Config, state: PathBuf, socket: PathBuf, timeout: Duration) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // The socket first: a second daemon on the same socket stops here, before it
    // touches the state database.
    let listener = daemon::api::bind(&socket)?;
    let http = match daemon::http::Listener::bind(&cfg, &state).await {
        Ok(h) => h,
        Err(e) => {
            drop(listener);
            let _ = std::fs::remove_file(&socket);
            return Err(e.into());
        }
    };
    let fleet = match daemon::fleet::Listener::bind(&cfg, &state).await {
        Ok(f) => f.map(|f| match super::remote::remote_cli() {
            Some(cli) => f.with_cli(cli),
            None => f,
        }),
        Err(e) => {
            drop(listener);
            let _ = std::fs::remove_file(&socket);
            return Err(e.into());
        }
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            // A reload already waiting covers this one too.
            let _ = reload_tx.try_send(());
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    };
    let options = daemon::Options {
        config: cfg,
        loader: Arc::new(load_config),
        state: state.clone(),
        shutdown_timeout: timeout,
        clock: Arc::new(kura::clock::SystemClock),
        executor: Arc::new(daemon::LibraryExecutor { state }),
        reload: Some(reload_rx),
        http,
        fleet,
    };
    daemon::serve(listener, options, shutdown).await?;
    tracing::info!("kura daemon stopped");
    Ok(())
}

fn stop(socket: &Path, no_wait: bool) -> Result<ExitCode> {
    let mut client = connect(socket)?;
    let pid = client.stop()?;
    if no_wait {
        println!("asked the kura daemon (pid {pid}) to stop");
        return Ok(ExitCode::SUCCESS);
    }
    // The daemon keeps this connection open until its process exits (after its running
    // jobs ended or its shutdown timeout passed): end of file means it is gone.
    client.wait_closed();
    println!("kura daemon (pid {pid}) stopped");
    Ok(ExitCode::SUCCESS)
}

fn local(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
}

fn secs(v: Option<i64>) -> String {
    v.map(|s| daemon::human_duration(chrono::Duration::seconds(s))).unwrap_or_else(|| "-".into())
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<ExitCode> {
    let st = match Conn::open(ctx, &a.socket)?.request(daemon::Request::Status)? {
        Reply::Status(s) => *s,
        _ => anyhow::bail!("the daemon answered a status request with something else"),
    };
    let any_late = st.systems.iter().any(|s| s.late || s.standby.as_ref().is_some_and(|b| b.health.is_alert()));
    if ctx.json {
        output::print_json(&st)?;
    } else {
        print_status(&st);
    }
    Ok(if any_late { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

/// The standbys: what each holds, its lag and last verification, its health.
fn print_standbys(st: &Status) {
    let with: Vec<_> = st.systems.iter().filter_map(|s| s.standby.as_ref().map(|b| (s, b))).collect();
    if with.is_empty() {
        return;
    }
    println!();
    println!("{:<20} {:<9}  {:<19}  {:>12}  {:<8}  HEALTH", "STANDBY OF", "HOLDS", "APPLIED", "LAG", "VERIFY");
    for (s, b) in with {
        let health = match b.health.alert_message(&s.name) {
            Some(m) => m,
            None => b.health.kind().to_string(),
        };
        println!(
            "{:<20} {:<9}  {:<19}  {:>12}  {:<8}  {health}",
            s.name,
            b.snapshot.as_deref().map(|x| &x[..8]).unwrap_or("-"),
            local(b.applied_at),
            secs(b.lag_secs),
            match b.verify_ok {
                Some(true) => "ok",
                Some(false) => "FAILED",
                None => "-",
            }
        );
    }
}

fn print_status(st: &Status) {
    let d = &st.daemon;
    println!(
        "kura daemon pid {} since {}; config {}; repository {}{}",
        d.pid,
        local(Some(d.started_at)),
        d.config.display(),
        d.repository,
        if d.stopping { " (STOPPING)" } else { "" }
    );
    println!();
    println!(
        "{:<20} {:>4}  {:<19}  {:>12}  {:>10}  {:<8}  NEXT RUN",
        "SYSTEM", "PRIO", "LAST BACKUP", "AGE", "MAX AGE", "STATE"
    );
    for s in &st.systems {
        let state = if s.running {
            "running"
        } else if s.late {
            "LATE"
        } else if s.last_outcome == Some(Outcome::Failed) {
            "failed"
        } else {
            "ok"
        };
        println!(
            "{:<20} {:>4}  {:<19}  {:>12}  {:>10}  {:<8}  {}",
            s.name,
            s.priority.to_string(),
            local(s.last_backup),
            secs(s.age_secs),
            secs(s.max_age_secs),
            state,
            if s.schedule.is_none() { "on demand".to_string() } else { local(s.next_run) }
        );
        if let Some(why) = &s.late_reason {
            println!("{:<20} LATE: {why}", "");
        }
    }
    print_standbys(st);
    if !st.jobs.is_empty() {
        println!();
        println!("{:<12} {:<19}  {:<11}  NEXT RUN", "JOB", "LAST RUN", "OUTCOME");
        for j in &st.jobs {
            println!(
                "{:<12} {:<19}  {:<11}  {}",
                j.job,
                local(j.last_run),
                if j.running { "running" } else { or_dash(j.last_outcome.map(Outcome::as_str)) },
                local(j.next_run)
            );
        }
    }
    println!();
    print_notifications(&st.notifications);
    if st.running.is_empty() {
        println!("no job is running");
    }
    for r in &st.running {
        let total = r.bytes_total.map(|t| format!(" of {}", output::bytes(t))).unwrap_or_default();
        match (r.state, r.run) {
            (RunState::Running, Some(id)) => println!(
                "running: #{id} {} ({}) for {}: {}{total} processed, {} files",
                r.job,
                r.trigger.as_str(),
                secs(r.elapsed_secs),
                output::bytes(r.bytes_done),
                r.files_done
            ),
            _ => println!("waiting: {} ({}): prune runs alone on the repository", r.job, r.trigger.as_str()),
        }
    }
}

/// One line about the outbox; a second with the oldest pending event's last error.
fn print_notifications(n: &kura::notify::outbox::Summary) {
    let dropped = if n.dropped > 0 { format!(", {} dropped", n.dropped) } else { String::new() };
    match n.oldest_pending {
        Some(t) => println!(
            "notifications: {} PENDING (oldest written {}), {} delivered{dropped}",
            n.pending,
            local(Some(t)),
            n.delivered
        ),
        None => println!("notifications: none pending, {} delivered{dropped}", n.delivered),
    }
    if let Some(e) = &n.last_error {
        println!("  last error: {e}");
    }
}

fn print_run(r: &JobRun) {
    let what = match &r.system {
        Some(s) => format!("{} {s}", r.job),
        None => r.job.to_string(),
    };
    let took = match r.ended_at {
        Some(b) => output::duration_ms((b - r.started_at).num_milliseconds().max(0) as u64),
        None => "-".into(),
    };
    let mut extra = Vec::new();
    if let Some(b) = r.bytes {
        extra.push(output::bytes(b));
    }
    if let Some(s) = &r.snapshot {
        extra.push(format!("snapshot {}", &s[..8.min(s.len())]));
    }
    if let Some(e) = &r.error {
        extra.push(e.clone());
    }
    let line = format!(
        "{:>6}  {:<19}  {:<18} {:<9} {:<11} {:>9}  {}",
        r.id.to_string(),
        local(Some(r.started_at)),
        what,
        r.trigger.as_str(),
        r.outcome.as_str(),
        took,
        extra.join(", ")
    );
    println!("{}", line.trim_end());
}

pub fn jobs(ctx: &Ctx, a: JobsArgs) -> Result<ExitCode> {
    let req = daemon::Request::Jobs { system: a.system, job: a.job, limit: Some(a.limit) };
    let runs = match Conn::open(ctx, &a.socket)?.request(req)? {
        Reply::Runs { runs } => runs,
        _ => anyhow::bail!("the daemon answered a jobs request with something else"),
    };
    if ctx.json {
        output::print_json(&runs)?;
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no job runs recorded");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>6}  {:<19}  {:<18} {:<9} {:<11} {:>9}  DETAIL", "RUN", "STARTED", "JOB", "TRIGGER", "OUTCOME", "TOOK");
    for run in &runs {
        print_run(run);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<ExitCode> {
    let answer =
        Conn::open(ctx, &a.socket)?.request(daemon::Request::Run { target: a.target.clone(), wait: !a.no_wait })?;
    let run = match answer {
        Reply::Started { job, started: run } => {
            if ctx.json {
                output::print_json(&Reply::Started { job, started: run })?;
            } else {
                println!("started {job} as run {run}; follow it with `kura status` or `kura jobs`");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Reply::Ended { run } => run,
        _ => anyhow::bail!("the daemon answered a run request with something else"),
    };
    if ctx.json {
        output::print_json(&run)?;
    } else {
        print_run(&run);
    }
    Ok(match run.outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Partial => ExitCode::from(EXIT_PARTIAL),
        _ => ExitCode::from(2),
    })
}
