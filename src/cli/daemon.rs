//! `kura daemon`, `kura daemon stop`, and the commands that ask the daemon over its
//! socket: `kura status`, `kura jobs`, `kura run`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Local, Utc};
use kura::daemon::{self, Daemon, Request, Response};
use serde_json::Value;

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args, Clone)]
pub struct SocketArg {
    /// The daemon's control socket [default: $XDG_RUNTIME_DIR/kura/kura.sock, /run/kura/kura.sock for root]
    #[arg(long, env = "KURA_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
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

#[derive(clap::Args)]
pub struct JobsArgs {
    /// Only the runs of this system
    #[arg(long, value_name = "NAME")]
    system: Option<String>,
    /// Only runs of this kind: backup, replicate, prune, check or drill
    #[arg(long, value_name = "KIND")]
    job: Option<String>,
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

fn connect(socket: &Path) -> Result<BufReader<UnixStream>> {
    daemon::api::check_socket_owner(socket)?;
    let stream = UnixStream::connect(socket).map_err(|e| {
        anyhow!(
            "no kura daemon is listening on {} ({e}): start it with `kura daemon --config PATH`, or give its socket with --socket",
            socket.display()
        )
    })?;
    // The file could have been swapped after the check: the process that answers
    // must run as this user or root too.
    if let Some(uid) = peer_uid(&stream) {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if uid != me && uid != 0 {
            bail!(
                "the process listening on {} runs as uid {uid}, neither this user (uid {me}) nor root: it is not \
                 a kura daemon of yours, so kura will not talk to it",
                socket.display()
            );
        }
    }
    Ok(BufReader::new(stream))
}

/// The uid of the process at the other end of a unix socket (SO_PEERCRED).
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn exchange(s: &mut BufReader<UnixStream>, socket: &Path, req: &Request) -> Result<Value> {
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.get_mut().write_all(line.as_bytes()).with_context(|| format!("writing to {}", socket.display()))?;
    let mut answer = String::new();
    s.read_line(&mut answer).with_context(|| format!("reading from {}", socket.display()))?;
    if answer.is_empty() {
        bail!("the daemon on {} closed the connection without answering", socket.display());
    }
    let r: Response =
        serde_json::from_str(&answer).with_context(|| format!("bad answer from the daemon: {answer:?}"))?;
    if !r.ok {
        bail!("{}", r.error.unwrap_or_else(|| "the daemon refused the request".into()));
    }
    Ok(r.data.unwrap_or(Value::Null))
}

/// Sends one request and reads its answer. A missing daemon is said plainly.
fn ask(socket: &Path, req: &Request) -> Result<Value> {
    let mut s = connect(socket)?;
    exchange(&mut s, socket, req)
}

/// The clock the daemon uses: the system clock, shifted by KURA_TEST_CLOCK_OFFSET
/// seconds when that is set (tests simulate a long downtime with it).
struct OffsetClock(chrono::Duration);

impl kura::clock::Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
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
    if cfg.notify.webhook.as_deref().is_some_and(|w| w.starts_with("https://")) {
        tracing::warn!(
            "notify.webhook is an https:// URL, which the built-in client cannot post to: \
             use notify.command with curl instead (docs/DAEMON.md, Notifications)"
        );
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
    let clock: Arc<dyn kura::clock::Clock> = match std::env::var("KURA_TEST_CLOCK_OFFSET") {
        Ok(v) => Arc::new(OffsetClock(chrono::Duration::seconds(
            v.parse().with_context(|| format!("KURA_TEST_CLOCK_OFFSET={v:?} is not a number of seconds"))?,
        ))),
        Err(_) => Arc::new(kura::clock::SystemClock),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let res = rt.block_on(serve(cfg, state, socket.clone(), clock, Duration::from_secs(a.shutdown_timeout)));
    // Jobs still running past the timeout were recorded as interrupted: do not wait.
    rt.shutdown_background();
    res?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    cfg: kura::config::Config,
    state: PathBuf,
    socket: PathBuf,
    clock: Arc<dyn kura::clock::Clock>,
    timeout: Duration,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // The socket first: a second daemon on the same socket stops here, before it
    // touches the state database.
    let listener = daemon::api::bind(&socket)?;
    let config_path = cfg.path.clone();
    let d = Daemon::new(daemon::Options {
        config: cfg,
        loader: Arc::new(load_config),
        state: state.clone(),
        socket: socket.clone(),
        shutdown_timeout: timeout,
        clock,
        executor: Arc::new(daemon::LibraryExecutor { state: state.clone() }),
    })
    .inspect_err(|_| {
        let _ = std::fs::remove_file(&socket);
    })?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tracing::info!(
        pid = std::process::id(),
        config = %config_path.display(),
        state = %state.display(),
        socket = %socket.display(),
        "kura daemon started"
    );
    let server = tokio::spawn(daemon::api::serve(listener, d.clone()));
    let sched = {
        let d = d.clone();
        tokio::spawn(async move { d.run_scheduler().await })
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); d.request_stop(); }
            _ = int.recv() => { tracing::info!("SIGINT"); d.request_stop(); }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                if let Err(p) = d.reload() {
                    tracing::error!("the new config has errors; keeping the old one:\n{p}");
                }
            }
            _ = d.stopping() => break,
        }
    }
    let _ = sched.await;
    let _ = std::fs::remove_file(&socket);
    let _ = server.await;
    d.drain(d.shutdown_timeout()).await;
    tracing::info!("kura daemon stopped");
    Ok(())
}

fn stop(socket: &Path, no_wait: bool) -> Result<ExitCode> {
    let mut s = connect(socket)?;
    let r = exchange(&mut s, socket, &Request::Stop)?;
    let pid = r["pid"].as_u64().unwrap_or(0);
    if no_wait {
        println!("asked the kura daemon (pid {pid}) to stop");
        return Ok(ExitCode::SUCCESS);
    }
    // The daemon keeps this connection open until its process exits (after its running
    // jobs ended or its shutdown timeout passed): end of file means it is gone.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    println!("kura daemon (pid {pid}) stopped");
    Ok(ExitCode::SUCCESS)
}

fn local(t: &Value) -> String {
    t.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn secs(v: &Value) -> String {
    v.as_i64().map(|s| daemon::human_duration(chrono::Duration::seconds(s))).unwrap_or_else(|| "-".into())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<ExitCode> {
    let st = ask(&a.socket.path(), &Request::Status)?;
    let any_late = st["systems"].as_array().is_some_and(|v| v.iter().any(|s| s["late"] == true));
    if ctx.json {
        output::print_json(&st)?;
    } else {
        let d = &st["daemon"];
        println!(
            "kura daemon pid {} since {}; config {}; repository {}{}",
            d["pid"],
            local(&d["started_at"]),
            text(&d["config"]),
            text(&d["repository"]),
            if d["stopping"] == true { " (STOPPING)" } else { "" }
        );
        println!();
        println!(
            "{:<20} {:>4}  {:<19}  {:>12}  {:>10}  {:<8}  NEXT RUN",
            "SYSTEM", "PRIO", "LAST BACKUP", "AGE", "MAX AGE", "STATE"
        );
        for s in st["systems"].as_array().into_iter().flatten() {
            let state = if s["running"] == true {
                "running"
            } else if s["late"] == true {
                "LATE"
            } else if s["last_outcome"] == "failed" {
                "failed"
            } else {
                "ok"
            };
            println!(
                "{:<20} {:>4}  {:<19}  {:>12}  {:>10}  {:<8}  {}",
                text(&s["name"]),
                s["priority"].to_string(),
                local(&s["last_backup"]),
                secs(&s["age_secs"]),
                secs(&s["max_age_secs"]),
                state,
                if s["schedule"].is_null() { "on demand".to_string() } else { local(&s["next_run"]) }
            );
        }
        let jobs = st["jobs"].as_array().cloned().unwrap_or_default();
        if !jobs.is_empty() {
            println!();
            println!("{:<12} {:<19}  {:<11}  NEXT RUN", "JOB", "LAST RUN", "OUTCOME");
            for j in &jobs {
                println!(
                    "{:<12} {:<19}  {:<11}  {}",
                    text(&j["job"]),
                    local(&j["last_run"]),
                    if j["running"] == true { "running" } else { text(&j["last_outcome"]) },
                    local(&j["next_run"])
                );
            }
        }
        let running = st["running"].as_array().cloned().unwrap_or_default();
        println!();
        if running.is_empty() {
            println!("no job is running");
        }
        for r in &running {
            let total = r["bytes_total"].as_u64().map(|t| format!(" of {}", output::bytes(t))).unwrap_or_default();
            match r["run"].as_i64() {
                Some(id) => println!(
                    "running: #{id} {} ({}) for {}: {}{total} processed, {} files",
                    text(&r["job"]),
                    text(&r["trigger"]),
                    secs(&r["elapsed_secs"]),
                    output::bytes(r["bytes_done"].as_u64().unwrap_or(0)),
                    r["files_done"].as_u64().unwrap_or(0)
                ),
                None => println!(
                    "waiting: {} ({}): prune runs alone on the repository",
                    text(&r["job"]),
                    text(&r["trigger"])
                ),
            }
        }
    }
    Ok(if any_late { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

fn print_run(r: &Value) {
    let what = match r["system"].as_str() {
        Some(s) => format!("{} {s}", text(&r["job"])),
        None => text(&r["job"]).to_string(),
    };
    let took = match (
        r["started_at"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()),
        r["ended_at"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()),
    ) {
        (Some(a), Some(b)) => output::duration_ms((b - a).num_milliseconds().max(0) as u64),
        _ => "-".into(),
    };
    let mut extra = Vec::new();
    if let Some(b) = r["bytes"].as_u64() {
        extra.push(output::bytes(b));
    }
    if let Some(s) = r["snapshot"].as_str() {
        extra.push(format!("snapshot {}", &s[..8.min(s.len())]));
    }
    if let Some(e) = r["error"].as_str() {
        extra.push(e.to_string());
    }
    let line = format!(
        "{:>6}  {:<19}  {:<18} {:<9} {:<11} {:>9}  {}",
        r["id"].to_string(),
        local(&r["started_at"]),
        what,
        text(&r["trigger"]),
        text(&r["outcome"]),
        took,
        extra.join(", ")
    );
    println!("{}", line.trim_end());
}

pub fn jobs(ctx: &Ctx, a: JobsArgs) -> Result<ExitCode> {
    let r = ask(&a.socket.path(), &Request::Jobs { system: a.system, job: a.job, limit: Some(a.limit) })?;
    if ctx.json {
        output::print_json(&r["runs"])?;
        return Ok(ExitCode::SUCCESS);
    }
    let runs = r["runs"].as_array().cloned().unwrap_or_default();
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
    let r = ask(&a.socket.path(), &Request::Run { target: a.target.clone(), wait: !a.no_wait })?;
    if a.no_wait {
        if ctx.json {
            output::print_json(&r)?;
        } else {
            println!(
                "started {} as run {}; follow it with `kura status` or `kura jobs`",
                text(&r["job"]),
                r["started"]
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let run = &r["run"];
    if ctx.json {
        output::print_json(run)?;
    } else {
        print_run(run);
    }
    Ok(match run["outcome"].as_str() {
        Some("ok") => ExitCode::SUCCESS,
        Some("partial") => ExitCode::from(EXIT_PARTIAL),
        _ => ExitCode::from(2),
    })
}
