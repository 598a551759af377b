//! `kura config check`: read a config, check the machine against it, start nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use kura::config::{self, Config};
use kura::plan::{Problem, Severity};
use serde::Serialize;

use super::{output, Ctx};

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a config file: syntax, fields, priorities, cron schedules, and that the
    /// paths and passphrase files it names exist. Every problem is reported with its
    /// file, line and field; exit 2 if there is an error
    Check {
        /// The config file (kura.toml; see docs/CONFIG.md)
        path: PathBuf,
    },
}

pub fn run(ctx: &Ctx, cmd: ConfigCommand) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Check { path } => check(ctx, path),
    }
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    file: &'a std::path::Path,
    systems: Vec<SystemJson<'a>>,
    jobs: Vec<&'static str>,
    problems: &'a [Problem],
}

#[derive(Serialize)]
struct SystemJson<'a> {
    name: &'a str,
    priority: u8,
    schedule: Option<&'a str>,
}

/// Prints problems as `file:line: severity: field: message`, on stderr.
pub fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("{p}");
    }
}

fn job_names(c: &Config) -> Vec<&'static str> {
    let j = &c.jobs;
    [
        (j.replicate.is_some(), "replicate"),
        (j.prune.is_some(), "prune"),
        (j.check.is_some(), "check"),
        (j.drill.is_some(), "drill"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n)
    .collect()
}

fn check(ctx: &Ctx, path: PathBuf) -> Result<ExitCode> {
    let (config, problems) = match config::load(&path) {
        Ok(c) => {
            let env = c.check_environment();
            (Some(c), env.0)
        }
        Err(p) => (None, p.0),
    };
    let errors = problems.iter().filter(|p| p.severity == Severity::Error).count();
    let ok = config.is_some() && errors == 0;
    if ctx.json {
        let systems = config
            .iter()
            .flat_map(|c| &c.systems)
            .map(|s| SystemJson {
                name: &s.name,
                priority: s.priority.get(),
                schedule: s.schedule.as_ref().map(|s| s.expr.as_str()),
            })
            .collect();
        let jobs = config.as_ref().map(job_names).unwrap_or_default();
        output::print_json(&Report { ok, file: &path, systems, jobs, problems: &problems })?;
    } else {
        print_problems(&problems);
        match (&config, ok) {
            (Some(c), true) => {
                let per: Vec<String> = kura::types::Priority::ALL
                    .iter()
                    .map(|p| format!("p{p}: {}", c.systems.iter().filter(|s| s.priority == *p).count()))
                    .collect();
                let scheduled = c.systems.iter().filter(|s| s.schedule.is_some()).count();
                let jobs = job_names(c);
                println!(
                    "config OK: {} systems ({}), {scheduled} with a backup schedule; jobs: {}",
                    c.systems.len(),
                    per.join(", "),
                    if jobs.is_empty() { "none".to_string() } else { jobs.join(", ") }
                );
            }
            _ => eprintln!(
                "{}: {errors} error{} found; nothing was started",
                path.display(),
                if errors == 1 { "" } else { "s" }
            ),
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
