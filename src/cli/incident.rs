//! `kura incident ...`: record an incident and its timeline.

use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::{output, Ctx};
use kura::incident::{Event, Fields, Incident};

#[derive(Subcommand)]
pub enum IncidentCommand {
    /// Record a new incident; its clock starts at --down-since (default --discovered-at, default now)
    Open(OpenArgs),
    /// Record the standard's fields: real or false alarm, scope, damage, cause, response, ...
    Update(UpdateArgs),
    /// Mark the incident's cause as resolved: recovery may start after this
    ResolveCause {
        id: i64,
        /// What was done about the cause
        #[arg(long)]
        note: String,
    },
    /// Close the incident
    Close {
        id: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// List incidents
    List,
    /// Show an incident: its fields and its whole timeline
    Show { id: i64 },
    /// Record the post-incident review: findings and improvement actions
    Review {
        id: i64,
        #[arg(long)]
        findings: String,
        /// An improvement action (repeatable)
        #[arg(long = "action")]
        actions: Vec<String>,
    },
    /// Record the recurrence-prevention plan, in its technical and organizational parts
    PreventionPlan {
        id: i64,
        /// A technical measure (repeatable)
        #[arg(long = "technical")]
        technical: Vec<String>,
        /// An organizational measure (repeatable)
        #[arg(long = "organizational")]
        organizational: Vec<String>,
    },
    /// Write the complete record (fields, timeline, recovery results, review, prevention plan)
    Export {
        id: i64,
        /// md or json
        #[arg(long, default_value = "md")]
        format: String,
        /// Write here instead of stdout
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Check the timeline's hash chain: detects rows edited or removed in the database
    Verify { id: i64 },
}

#[derive(clap::Args)]
pub struct OpenArgs {
    #[arg(long)]
    title: String,
    /// e.g. ransomware, intrusion, outage, data-leak
    #[arg(long)]
    category: Option<String>,
    #[command(flatten)]
    times: Times,
}

/// The incident's three moments (shared by `open` and `update`).
#[derive(clap::Args)]
pub struct Times {
    /// When the damage was discovered (RFC 3339, or "YYYY-MM-DD HH:MM" local time)
    #[arg(long, value_parser = parse_time)]
    discovered_at: Option<DateTime<Utc>>,
    /// When the systems went down; deadlines count from here
    #[arg(long, value_parser = parse_time)]
    down_since: Option<DateTime<Utc>>,
    /// When the intruder got in: recovery restores only backups taken before this
    #[arg(long, value_parser = parse_time)]
    compromised_since: Option<DateTime<Utc>>,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    id: i64,
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    category: Option<String>,
    /// Is it a real incident (true) or a false alarm (false)?
    #[arg(long)]
    real: Option<bool>,
    #[command(flatten)]
    times: Times,
    /// How far it spread
    #[arg(long)]
    scope: Option<String>,
    /// What was damaged
    #[arg(long)]
    damage: Option<String>,
    #[arg(long)]
    cause: Option<String>,
    /// What was done in response
    #[arg(long)]
    response: Option<String>,
    /// An attack from outside in which the company is the victim (reported to the board)
    #[arg(long)]
    outside_attack: Option<bool>,
    /// Harm done to people or companies outside (reported to the board)
    #[arg(long)]
    harm_to_outsiders: Option<bool>,
    /// A free-text note on the timeline
    #[arg(long)]
    note: Option<String>,
}

/// RFC 3339, "YYYY-MM-DD HH:MM[:SS]" or "YYYY-MM-DD" in local time, or "now".
pub fn parse_time(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if s == "now" {
        return Ok(Utc::now());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")));
    match naive {
        Ok(n) => Local
            .from_local_datetime(&n)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{s:?} does not exist in the local time zone")),
        Err(_) => Err(format!(
            "{s:?} is not a time: use RFC 3339 (2026-03-01T02:30:00Z), \"2026-03-01 02:30\" (local time) or \"now\""
        )),
    }
}

pub fn run(ctx: &Ctx, cmd: IncidentCommand) -> Result<ExitCode> {
    let reads_only = matches!(
        cmd,
        IncidentCommand::List
            | IncidentCommand::Show { .. }
            | IncidentCommand::Export { .. }
            | IncidentCommand::Verify { .. }
    );
    let mut state = if reads_only { ctx.state_read_only()? } else { ctx.state()? };
    let now = ctx.now();
    match cmd {
        IncidentCommand::Open(a) => {
            let discovered = a.times.discovered_at.unwrap_or(now);
            let fields = Fields {
                title: Some(a.title),
                category: a.category,
                discovered_at: Some(discovered),
                down_since: Some(a.times.down_since.unwrap_or(discovered)),
                compromised_since: a.times.compromised_since,
                ..Default::default()
            };
            let id = state.open_incident(now, Event::Opened { fields })?;
            let inc = state.incident(id)?;
            if ctx.json {
                output::print_json(&inc)?;
            } else {
                println!("incident {id} opened: {}", inc.title());
                println!("incident clock starts at {}", local(inc.clock_start()));
                println!("next: record the facts with `kura incident update {id} ...`, then `kura incident resolve-cause {id} --note ...` before recovery");
            }
        }
        IncidentCommand::Update(a) => {
            let fields = Fields {
                title: a.title,
                category: a.category,
                real: a.real,
                discovered_at: a.times.discovered_at,
                down_since: a.times.down_since,
                compromised_since: a.times.compromised_since,
                scope: a.scope,
                damage: a.damage,
                cause: a.cause,
                response: a.response,
                outside_attack: a.outside_attack,
                harm_to_outsiders: a.harm_to_outsiders,
            };
            let empty = fields == Fields::default();
            if empty && a.note.is_none() {
                bail!("nothing to update: give at least one field, e.g. --cause or --scope (see --help)");
            }
            state.require_incident(a.id)?;
            if !empty {
                state.append_event(a.id, now, &Event::Updated { fields })?;
            }
            if let Some(text) = a.note {
                state.append_event(a.id, now, &Event::Note { text })?;
            }
            show_brief(ctx, &state.incident(a.id)?)?;
        }
        IncidentCommand::ResolveCause { id, note } => {
            let inc = state.incident(id)?;
            if inc.status == kura::incident::Status::Closed {
                bail!("incident {id} is closed");
            }
            state.append_event(id, now, &Event::CauseResolved { note })?;
            let inc = state.incident(id)?;
            if ctx.json {
                output::print_json(&inc)?;
            } else {
                println!("incident {id}: cause resolved at {}; recovery may start:", local(now));
                println!("  kura recover --incident {id} --plan PLAN.toml");
            }
        }
        IncidentCommand::Close { id, note } => {
            state.require_incident(id)?;
            state.append_event(id, now, &Event::Closed { note })?;
            show_brief(ctx, &state.incident(id)?)?;
        }
        IncidentCommand::List => {
            let list: Vec<Incident> =
                state.incident_ids()?.into_iter().map(|id| state.incident(id)).collect::<kura::Result<_>>()?;
            if ctx.json {
                output::print_json(&list)?;
            } else if list.is_empty() {
                println!("no incidents recorded in {}", state.path().display());
            } else {
                println!("{:>4}  {:<15} {:<17} {:<12} title", "id", "status", "down since", "category");
                for i in &list {
                    println!(
                        "{:>4}  {:<15} {:<17} {:<12} {}",
                        i.id,
                        status_str(i),
                        local(i.clock_start()),
                        i.fields.category.as_deref().unwrap_or("-"),
                        i.title()
                    );
                }
            }
        }
        IncidentCommand::Show { id } => {
            let inc = state.incident(id)?;
            let timeline = state.timeline(id)?;
            if ctx.json {
                #[derive(Serialize)]
                struct Out<'a> {
                    incident: &'a Incident,
                    timeline: &'a [kura::incident::Entry],
                }
                output::print_json(&Out { incident: &inc, timeline: &timeline })?;
            } else {
                print!("{}", super::export::incident_fields_text(&inc));
                println!("\ntimeline:");
                for e in &timeline {
                    println!("  {}  {}", local(e.at), e.event.describe());
                }
            }
        }
        IncidentCommand::Review { id, findings, actions } => {
            state.require_incident(id)?;
            state.append_event(id, now, &Event::Reviewed { findings, actions })?;
            show_brief(ctx, &state.incident(id)?)?;
        }
        IncidentCommand::PreventionPlan { id, technical, organizational } => {
            if technical.is_empty() && organizational.is_empty() {
                bail!("give at least one --technical or --organizational measure");
            }
            state.require_incident(id)?;
            state.append_event(id, now, &Event::PreventionPlan { technical, organizational })?;
            show_brief(ctx, &state.incident(id)?)?;
        }
        IncidentCommand::Export { id, format, output } => {
            let text = super::export::incident(&state, id, &format)?;
            match output {
                Some(p) => {
                    std::fs::write(&p, text)?;
                    if !ctx.json {
                        println!("wrote the record of incident {id} to {}", p.display());
                    }
                }
                None => print!("{text}"),
            }
        }
        IncidentCommand::Verify { id } => {
            state.require_incident(id)?;
            let rows = state.raw_timeline(id)?;
            let result = kura::incident::verify_chain(id, &rows);
            if ctx.json {
                output::print_json(&serde_json::json!({
                    "incident": id,
                    "entries": rows.len(),
                    "ok": result.is_ok(),
                    "bad_entry": result.as_ref().err().map(|e| e.0),
                    "reason": result.as_ref().err().map(|e| e.1.clone()),
                }))?;
            }
            match result {
                Ok(()) => {
                    if !ctx.json {
                        println!("incident {id}: timeline intact ({} entries, hash chain verified)", rows.len());
                    }
                }
                Err((seq, why)) => {
                    if !ctx.json {
                        println!("incident {id}: TAMPERED: timeline entry {seq}: {why}");
                    }
                    return Ok(ExitCode::from(super::EXIT_PARTIAL));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_brief(ctx: &Ctx, inc: &Incident) -> Result<()> {
    if ctx.json {
        output::print_json(inc)
    } else {
        println!("incident {} ({}): {}", inc.id, status_str(inc), inc.title());
        Ok(())
    }
}

pub fn status_str(i: &Incident) -> &'static str {
    match i.status {
        kura::incident::Status::Open => "open",
        kura::incident::Status::CauseResolved => "cause-resolved",
        kura::incident::Status::Closed => "closed",
    }
}

/// A time in the local zone, to the minute, for people.
pub fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string()
}
