//! Remote command lines (`POST /v1/cli`): an operator or viewer elsewhere runs a
//! coordinator-side command (`kura incident`, `recover`, `report`, ...) as if at the
//! coordinator.
//!
//! * The daemon crate does not know the CLI's definitions: the binary injects a
//!   [`RemoteCli`] whose `classify` parses the arguments with the CLI's own clap
//!   types and says what the command does ([`Classified`]); the route asks
//!   `kura_fleet::role::allowed` with that action.
//! * The command runs as a child process of the coordinator's own executable, with
//!   the coordinator's config (`KURA_CONFIG`) and state (`--state`), in the config's
//!   directory, stdin closed. A short command is waited for ([`SHORT_TIMEOUT`]) and
//!   its stdout, stderr and exit code go back as they are. A recovery or a drill is
//!   started and left running: the answer comes once its run is recorded, with the
//!   run id (follow it with `recover status --run N`), and its output goes to a log
//!   file under the state directory's `fleet/remote/`.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kura_fleet::proto::CliReply;
use kura_fleet::role::Action;
use kura_recovery::state::recovery::RunKind;

use crate::daemon::Daemon;

/// How long a remote command other than a recovery or a drill may run.
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(100);
/// How long a started recovery or drill may take to record its run.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How the coordinator runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Wait for its end (at most [`SHORT_TIMEOUT`]) and answer with its output.
    Wait,
    /// Start it, answer once its run of this kind is recorded, let it run on.
    Start(RunKind),
    /// A switch that may take minutes (`failover`, `failback`, a standby apply):
    /// answer with its output when it ends within [`SHORT_TIMEOUT`], else let it run
    /// on (it is never killed half way) and answer where its output goes.
    Detach,
}

/// What a command line does, as the CLI's own definitions tell.
#[derive(Clone, Debug)]
pub struct Classified {
    /// What `allowed(role, action)` decides on: `Read` or `Change`.
    pub action: Action<'static>,
    /// The command's name (`incident update`): what the log shows, never the arguments.
    pub name: String,
    pub mode: Mode,
    /// `--json` was given (the started answer is JSON then).
    pub json: bool,
    /// The command opens `--repo`: it gets the config's `[repository]` and its password file.
    pub repository: bool,
    /// The plan files it reads: they must lie in the config's directory.
    pub plans: Vec<PathBuf>,
}

/// Refuses a plan outside the config's directory (relative ones are taken from
/// there): a command line must not make the coordinator read, and echo in its
/// errors, any other file it can read.
pub(crate) fn check_plans(config: &Path, plans: &[PathBuf]) -> Result<(), String> {
    let dir = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let root = std::fs::canonicalize(dir).map_err(|e| format!("the config's directory {}: {e}", dir.display()))?;
    for p in plans {
        let full = std::fs::canonicalize(dir.join(p))
            .map_err(|e| format!("the plan {} on the coordinator: {e}", dir.join(p).display()))?;
        if !full.starts_with(&root) {
            return Err(format!(
                "the plan {} is outside the coordinator's config directory {}: remote commands read plans from \
                 there only (e.g. {}/plans/)",
                full.display(),
                root.display(),
                root.display()
            ));
        }
    }
    Ok(())
}

/// Parses and classifies a command line (without the program name); an `Err` is a
/// sentence for the operator (a usage error, a command with no remote form, an
/// option naming a file on the operator's machine).
pub type Classify = Arc<dyn Fn(&[String]) -> Result<Classified, String> + Send + Sync>;

/// Injected by the binary: the executable to run and how to classify its commands.
#[derive(Clone)]
pub struct RemoteCli {
    pub exe: PathBuf,
    pub classify: Classify,
}

/// The child process for `args`, with the coordinator's config and state.
fn command(d: &Daemon, exe: &Path, args: &[String], c: &Classified) -> tokio::process::Command {
    let cfg = d.config();
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--state")
        .arg(&d.state_path)
        .args(args)
        .env("KURA_CONFIG", &cfg.path)
        // Never forward the command again.
        .env_remove("KURA_COORDINATOR")
        .env_remove("KURA_IDENTITY")
        .stdin(Stdio::null());
    if c.repository {
        cmd.env("KURA_REPOSITORY", cfg.repository.location.to_string())
            .env("KURA_PASSWORD_FILE", &cfg.repository.password_file);
    }
    if let Some(dir) = cfg.path.parent().filter(|p| !p.as_os_str().is_empty()) {
        cmd.current_dir(dir);
    }
    cmd
}

/// The exit code of a finished child (a signal: 2, as an error).
fn code(status: std::process::ExitStatus) -> u8 {
    status.code().map_or(2, |c| u8::try_from(c).unwrap_or(2))
}

fn failed(msg: String) -> CliReply {
    CliReply { stdout: String::new(), stderr: format!("error: {msg}\n"), code: 2 }
}

/// Runs `args` as `c` says; errors of the coordinator itself are answers with code 2.
pub(crate) async fn run(d: &Arc<Daemon>, cli: &RemoteCli, args: &[String], c: &Classified) -> CliReply {
    match c.mode {
        Mode::Wait => wait(d, cli, args, c).await,
        Mode::Start(kind) => start(d, cli, args, c, kind).await,
        Mode::Detach => detach(d, cli, args, c).await,
    }
}

async fn wait(d: &Daemon, cli: &RemoteCli, args: &[String], c: &Classified) -> CliReply {
    let mut cmd = command(d, &cli.exe, args, c);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => return failed(format!("the coordinator could not start {}: {e}", cli.exe.display())),
    };
    // A timeout drops the child, which kills it.
    match tokio::time::timeout(SHORT_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => CliReply {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: code(out.status),
        },
        Ok(Err(e)) => failed(format!("`kura {}` on the coordinator: {e}", c.name)),
        Err(_) => failed(format!(
            "`kura {}` took longer than {} s on the coordinator and was stopped; run it there",
            c.name,
            SHORT_TIMEOUT.as_secs()
        )),
    }
}

/// The newest run of `kind` in the state database.
async fn newest_run(d: &Daemon, kind: RunKind) -> Result<Option<i64>, String> {
    d.db.query(move |st| Ok(st.recovery_runs(Some(kind), None)?.last().map(|r| r.id))).await.map_err(|e| e.to_string())
}

/// An owner-only log file for a started command's output.
fn log_file(d: &Daemon, what: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let dir = kura_recovery::fleet_dir::FleetDir::for_state(&d.state_path).root().join("remote");
    kura_store::private_file::create_dir(&dir).map_err(std::io::Error::other)?;
    let name = format!("{what}-{}.log", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")).to_lowercase();
    let path = dir.join(name);
    let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
    Ok((path, f))
}

async fn start(d: &Arc<Daemon>, cli: &RemoteCli, args: &[String], c: &Classified, kind: RunKind) -> CliReply {
    let before = match newest_run(d, kind).await {
        Ok(b) => b,
        Err(e) => return failed(e),
    };
    let (log, file) = match log_file(d, &format!("{kind:?}")) {
        Ok(x) => x,
        Err(e) => return failed(format!("a log file for `kura {}` on the coordinator: {e}", c.name)),
    };
    let mut cmd = command(d, &cli.exe, args, c);
    let out = match file.try_clone() {
        Ok(o) => o,
        Err(e) => return failed(e.to_string()),
    };
    cmd.stdout(out).stderr(file).kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => return failed(format!("the coordinator could not start {}: {e}", cli.exe.display())),
    };
    let began = tokio::time::Instant::now();
    let run = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(Some(status)) = child.try_wait() {
            // It ended before (or right after) recording a run: its whole output.
            let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
            return CliReply { stdout: String::new(), stderr: text, code: code(status) };
        }
        match newest_run(d, kind).await {
            Ok(Some(id)) if Some(id) > before => break Some(id),
            Ok(_) if began.elapsed() < START_TIMEOUT => {}
            _ => break None,
        }
    };
    let name = c.name.clone();
    tokio::spawn(async move {
        // Reaps the child when it ends (the daemon does not wait for it to stop).
        if let Ok(status) = child.wait().await {
            tracing::info!(command = %name, code = code(status), "remote command ended");
        }
    });
    started(c, kind, run, &log)
}

async fn detach(d: &Daemon, cli: &RemoteCli, args: &[String], c: &Classified) -> CliReply {
    let what = c.name.replace(' ', "-");
    let files = log_file(d, &format!("{what}-out")).and_then(|o| Ok((o, log_file(d, &format!("{what}-err"))?)));
    let ((out_path, out), (err_path, err)) = match files {
        Ok(x) => x,
        Err(e) => return failed(format!("a log file for `kura {}` on the coordinator: {e}", c.name)),
    };
    let mut cmd = command(d, &cli.exe, args, c);
    cmd.stdout(out).stderr(err).kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => return failed(format!("the coordinator could not start {}: {e}", cli.exe.display())),
    };
    match tokio::time::timeout(SHORT_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => {
            let stdout = tokio::fs::read_to_string(&out_path).await.unwrap_or_default();
            let stderr = tokio::fs::read_to_string(&err_path).await.unwrap_or_default();
            let _ = tokio::fs::remove_file(&out_path).await;
            let _ = tokio::fs::remove_file(&err_path).await;
            CliReply { stdout, stderr, code: code(status) }
        }
        Ok(Err(e)) => failed(format!("`kura {}` on the coordinator: {e}", c.name)),
        Err(_) => {
            let name = c.name.clone();
            tokio::spawn(async move {
                if let Ok(status) = child.wait().await {
                    tracing::info!(command = %name, code = code(status), "remote command ended");
                }
            });
            let text = format!(
                "`kura {}` is still running on the coordinator after {} s and goes on there; follow it with \
                 `kura standby status` (its output: {} and {} on the coordinator)",
                c.name,
                SHORT_TIMEOUT.as_secs(),
                out_path.display(),
                err_path.display()
            );
            let stdout = if c.json {
                let v = serde_json::json!({ "running": c.name, "stdout": out_path, "stderr": err_path });
                format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
            } else {
                format!("{text}\n")
            };
            CliReply { stdout, stderr: String::new(), code: 0 }
        }
    }
}

fn started(c: &Classified, kind: RunKind, run: Option<i64>, log: &Path) -> CliReply {
    let kind_name = format!("{kind:?}").to_lowercase();
    let stdout = if c.json {
        let v = serde_json::json!({ "started": kind_name, "run": run, "log": log });
        format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
    } else {
        match run {
            Some(id) => format!(
                "started {kind_name} run {id} on the coordinator; follow it with `kura recover status --run {id}` \
                 (its output: {} on the coordinator)\n",
                log.display()
            ),
            None => format!(
                "started `kura {}` on the coordinator, but it recorded no run within {} s; its output: {}\n",
                c.name,
                START_TIMEOUT.as_secs(),
                log.display()
            ),
        }
    };
    CliReply { stdout, stderr: String::new(), code: 0 }
}
