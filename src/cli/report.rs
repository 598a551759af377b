//! `kura report`: recovery-time compliance reports from the state database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};

use super::incident::parse_time;
use super::Ctx;
use kura::report::{self, collect, Format};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["incident", "drill", "since"])))]
pub struct Args {
    /// Report on an incident and its recovery
    #[arg(long)]
    incident: Option<i64>,
    /// Report on a drill
    #[arg(long)]
    drill: Option<i64>,
    /// Report on every incident and drill from this date (RFC 3339 or "YYYY-MM-DD")
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// End of the period (exclusive) [default: now]
    #[arg(long, value_parser = parse_time, requires = "since")]
    until: Option<DateTime<Utc>>,
    /// md, html, json or csv
    #[arg(long, default_value = "md")]
    format: String,
    /// Write the report here (atomically) instead of to stdout
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let format: Format = a.format.parse()?;
    let state = ctx.state_read_only()?;
    let now = ctx.now();
    let facts = match (a.incident, a.drill, a.since) {
        (Some(id), _, _) => collect::incident(&state, id, now)?,
        (_, Some(id), _) => collect::drill(&state, id, now)?,
        (_, _, Some(since)) => {
            let until = a.until.unwrap_or(now);
            if until <= since {
                bail!("--until must be after --since");
            }
            collect::period(&state, since, until, now)?
        }
        _ => unreachable!("clap requires one subject"),
    };
    emit(ctx, &facts, format, a.output)
}

/// Prints the report, or writes it to `output` (atomically) and says where; shared
/// with `kura plan forecast --format`.
pub fn emit(ctx: &Ctx, facts: &report::ReportFacts, format: Format, output: Option<PathBuf>) -> Result<ExitCode> {
    match output {
        Some(path) => {
            let n = report::write_report(facts, format, &path)?;
            let shown = path.canonicalize().unwrap_or(path);
            if ctx.json {
                super::output::print_json(&serde_json::json!({ "output": shown, "bytes": n }))?;
            } else {
                println!(
                    "wrote the {} report to {} ({})",
                    format.extension(),
                    shown.display(),
                    super::output::bytes(n)
                );
            }
        }
        None => print!("{}", report::render(facts, format)),
    }
    Ok(ExitCode::SUCCESS)
}
