//! Commands run on a remote coordinator (`--coordinator URL --identity DIR`, docs/FLEET.md).
//!
//! * `status`, `jobs` and `run` speak the daemon's typed requests (`daemon.rs`).
//! * The coordinator-side commands (incidents, recover, report, drill, plan, the
//!   snapshots and signals of its repository) go as a command line to `POST /v1/cli`;
//!   the coordinator parses it with these same clap definitions ([`classify_args`]),
//!   asks `kura_fleet::role::allowed` with the action [`route`] names, runs it with its
//!   own config and state, and sends back stdout, stderr and the exit code.
//! * Commands that work on this machine's files (backup, restore, mount, key, agent,
//!   ...) have no remote form and are refused with `--coordinator`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use kura::daemon::fleet::cli::{Classified, Mode, RemoteCli};
use kura::fleet::proto::{CliReply, CliRequest, PROTOCOL_VERSION};
use kura::fleet::role::Action;
use kura::state::recovery::RunKind;

use super::{drill::DrillCommand, Cli, Command};

/// The coordinator and the identity to reach it with.
#[derive(Clone, Debug)]
pub struct Remote {
    pub url: String,
    pub identity: PathBuf,
}

impl Remote {
    /// The identity directory's certificate, talking to `url`.
    pub fn identity(&self) -> Result<kura::agent::identity::Identity> {
        let mut id = kura::agent::identity::Identity::load(&self.identity)?;
        id.url = self.url.clone();
        Ok(id)
    }
}

/// Where a command runs when a coordinator is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `status`, `jobs`, `run`: the daemon's typed requests.
    Typed,
    /// A command line the coordinator runs.
    Remote { action: Action<'static>, mode: Mode, repository: bool },
    /// Works on this machine only.
    LocalOnly,
}

fn read() -> Route {
    Route::Remote { action: Action::Read, mode: Mode::Wait, repository: false }
}

fn change() -> Route {
    Route::Remote { action: Action::Change, mode: Mode::Wait, repository: false }
}

/// The one rule: which commands run remotely, and whether each reads or changes.
pub fn route(cmd: &Command) -> Route {
    let repository = Route::Remote { action: Action::Read, mode: Mode::Wait, repository: true };
    match cmd {
        Command::Status(_) | Command::Jobs(_) | Command::Run(_) => Route::Typed,
        Command::Report(_) | Command::Plan(_) | Command::CleanPoint(_) => read(),
        Command::Incident(a) if a.reads_only() => read(),
        Command::Incident(_) => change(),
        Command::Recover(a) if a.is_status() => read(),
        Command::Recover(_) => {
            Route::Remote { action: Action::Change, mode: Mode::Start(RunKind::Recovery), repository: false }
        }
        Command::Drill(DrillCommand::Run(_)) => {
            Route::Remote { action: Action::Change, mode: Mode::Start(RunKind::Drill), repository: false }
        }
        Command::Drill(DrillCommand::List | DrillCommand::Show { .. }) => read(),
        Command::Drill(DrillCommand::Review { .. }) => change(),
        Command::Signals(a) if a.reads_only() => read(),
        Command::Signals(_) => change(),
        Command::Snapshots(_) | Command::Ls(_) | Command::Find(_) | Command::Diff(_) => repository,
        Command::Standby(a) if a.reads_only() => read(),
        Command::Standby(_) | Command::Failover(_) | Command::Failback(_) => {
            Route::Remote { action: Action::Change, mode: Mode::Detach, repository: false }
        }
        _ => Route::LocalOnly,
    }
}

/// The plan files a remote command reads: they must lie in the coordinator's
/// config directory (the daemon checks), so that a command line cannot make the
/// coordinator read and echo any other file.
fn plan_files(cmd: &Command) -> Vec<PathBuf> {
    match cmd {
        Command::Recover(a) if !a.is_status() => a.common.plan.iter().cloned().collect(),
        Command::Drill(DrillCommand::Run(a)) => a.common.plan.iter().cloned().collect(),
        Command::Plan(p) => vec![p.file().to_path_buf()],
        _ => vec![],
    }
}

/// Options that would name something on the operator's machine (or replace the
/// coordinator's own config, state or repository); refused on a remote command line.
const LOCAL_OPTIONS: [(&str, &str); 9] = [
    ("repo", "the coordinator reads the repository of its own config"),
    ("password_file", "the coordinator uses the passphrases of its own config"),
    ("state", "the coordinator uses its own state database"),
    ("cache_dir", "the coordinator keeps its own cache"),
    ("config", "the coordinator uses its own config"),
    ("output", "the output comes back to you: redirect it on your side instead"),
    ("socket", "the command goes to the coordinator, not to a socket"),
    ("coordinator", "the coordinator does not forward commands"),
    ("identity", "the coordinator does not forward commands"),
];

/// The subcommand path (`incident update`) and the first refused option, if any.
fn walk(m: &clap::ArgMatches) -> (String, Option<String>) {
    let mut names = Vec::new();
    let mut refused = None;
    let mut cur = Some(m);
    while let Some(m) = cur {
        for id in m.ids() {
            let id = id.as_str();
            let why = LOCAL_OPTIONS.iter().find(|(o, _)| *o == id).map(|(_, w)| w);
            if let (Some(why), None) = (why, &refused) {
                if m.value_source(id) == Some(ValueSource::CommandLine) {
                    refused = Some(format!("--{} is not allowed on a remote command: {why}", id.replace('_', "-")));
                }
            }
        }
        cur = m.subcommand().map(|(name, sub)| {
            names.push(name.to_string());
            sub
        });
    }
    (names.join(" "), refused)
}

/// The coordinator's side: parses `args` with the CLI's own definitions and
/// classifies the command. An `Err` is a sentence for the operator.
pub fn classify_args(args: &[String]) -> std::result::Result<Classified, String> {
    let argv = std::iter::once("kura".to_string()).chain(args.iter().cloned());
    let m = Cli::command().try_get_matches_from(argv).map_err(|e| e.render().to_string())?;
    let cli = Cli::from_arg_matches(&m).map_err(|e| e.render().to_string())?;
    let (name, refused) = walk(&m);
    if let Some(why) = refused {
        return Err(why);
    }
    match route(&cli.command) {
        Route::Remote { action, mode, repository } => {
            Ok(Classified { action, name, mode, json: cli.json, repository, plans: plan_files(&cli.command) })
        }
        Route::Typed => Err(format!("`kura {name}` reaches the coordinator as its own request, not as a command line")),
        Route::LocalOnly => Err(format!("`kura {name}` works on the machine it runs on and has no remote form")),
    }
}

/// What the daemon is given at startup: this executable and [`classify_args`].
pub fn remote_cli() -> Option<RemoteCli> {
    match std::env::current_exe() {
        Ok(exe) => Some(RemoteCli { exe, classify: std::sync::Arc::new(classify_args) }),
        Err(e) => {
            tracing::warn!(error = %e, "the own executable is unknown: remote command lines are off");
            None
        }
    }
}

/// This process's arguments without the program name and without `--coordinator`
/// and `--identity` (and their values).
fn forwarded(args: impl Iterator<Item = std::ffi::OsString>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        let a = a.into_string().map_err(|a| anyhow::anyhow!("argument {a:?} is not UTF-8: it cannot be sent"))?;
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match a.as_str() {
            "--coordinator" | "--identity" => skip_value = true,
            s if s.starts_with("--coordinator=") || s.starts_with("--identity=") => {}
            _ => out.push(a),
        }
    }
    Ok(out)
}

/// The operator's side: sends this command line, prints what it printed there,
/// exits with its code.
pub fn run(remote: &Remote) -> Result<ExitCode> {
    use std::io::Write;
    let args = forwarded(std::env::args_os().skip(1))?;
    let id = remote.identity()?;
    let reply: CliReply = id
        .post("/v1/cli", &CliRequest { version: PROTOCOL_VERSION, args })?
        .with_context(|| format!("the coordinator {} sent an empty answer", remote.url))?;
    std::io::stdout().write_all(reply.stdout.as_bytes())?;
    std::io::stderr().write_all(reply.stderr.as_bytes())?;
    Ok(ExitCode::from(reply.code))
}

/// Before anything runs here: a coordinator given to a command without a remote form.
pub fn refuse_local_only() -> Result<ExitCode> {
    bail!(
        "this command works on the machine it runs on and has no remote form: leave out --coordinator \
         (and unset KURA_COORDINATOR); docs/FLEET.md lists the remote commands"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn reads_and_changes_are_told_apart_by_the_parsed_command() {
        let c = classify_args(&args("--json incident list")).unwrap();
        assert_eq!((c.action, c.mode, c.json, c.name.as_str()), (Action::Read, Mode::Wait, true, "incident list"));
        assert_eq!(classify_args(&args("incident update 3 --cause x")).unwrap().action, Action::Change);
        assert_eq!(classify_args(&args("recover status --run 2")).unwrap().action, Action::Read);
        let r = classify_args(&args("recover --incident 1 --plan p.toml")).unwrap();
        assert_eq!((r.action, r.mode), (Action::Change, Mode::Start(RunKind::Recovery)));
        assert_eq!(classify_args(&args("report --incident 1 --format csv")).unwrap().action, Action::Read);
        assert!(classify_args(&args("snapshots")).unwrap().repository);
        assert_eq!(classify_args(&args("plan show plans/a.toml")).unwrap().plans, vec![PathBuf::from("plans/a.toml")]);
        assert_eq!(classify_args(&args("standby status")).unwrap().action, Action::Read);
        for line in ["failover db --incident 1", "failback db", "standby apply db", "standby drill"] {
            let c = classify_args(&args(line)).unwrap();
            assert_eq!((c.action, c.mode), (Action::Change, Mode::Detach), "{line}");
        }
    }

    #[test]
    fn local_files_and_local_commands_are_refused() {
        let e = classify_args(&args("report --incident 1 --output /tmp/r.md")).unwrap_err();
        assert!(e.contains("--output"), "{e}");
        let e = classify_args(&args("--repo /x snapshots")).unwrap_err();
        assert!(e.contains("--repo"), "{e}");
        assert!(classify_args(&args("backup /etc")).unwrap_err().contains("no remote form"));
        assert!(classify_args(&args("incident lisst")).is_err());
    }

    #[test]
    fn the_coordinator_options_are_not_forwarded() {
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>().into_iter();
        let got = forwarded(os(&["--coordinator", "https://c:9443", "--json", "--identity=/id", "incident", "list"]));
        assert_eq!(got.unwrap(), args("--json incident list"));
    }
}
