//! `kura incident ...`: record an incident and its timeline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::{output, Ctx};
use kura::incident::chain::{self, Anchored, SiteAnchors, Verification};
use kura::incident::{Event, Fields, Incident};
use kura::repo::Repository;
use kura::state::State;

#[derive(clap::Args)]
pub struct Args {
    /// The config whose [repository] keys and anchors the timeline (and whose [remote]
    /// `verify` also checks) [default: ./kura.toml, /etc/kura/kura.toml; --repo wins]
    #[arg(long, env = "KURA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: IncidentCommand,
}

impl Args {
    /// Whether the command only reads incidents (list, show, export, verify): it
    /// opens the state read-only, and a remote viewer may run it.
    pub fn reads_only(&self) -> bool {
        self.cmd.reads_only()
    }
}

impl IncidentCommand {
    fn reads_only(&self) -> bool {
        matches!(
            self,
            IncidentCommand::List
                | IncidentCommand::Show { .. }
                | IncidentCommand::Export { .. }
                | IncidentCommand::Verify { .. }
        )
    }
}

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
    /// Fill the incident's scope and damage from the backups: each system's last
    /// clean snapshot against its live data (or newest snapshot); affected systems,
    /// files encrypted, added and deleted, the first suspect time (docs/DETECTION.md)
    Scope { id: i64 },
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
    /// Check the timeline's keyed chain against its anchors in the repository and at the
    /// remote site: detects rows edited, removed or recomputed in the database
    Verify { id: i64 },
    /// Anchor entries written while the repository could not be opened (all incidents
    /// without ID); refused for a chain that does not verify
    Anchor { id: Option<i64> },
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

/// The repository named by `--repo`, else by the config's [repository]; and the
/// config's [remote], when there is one. Errors are kept as text: commands that
/// write go on without the repository.
pub struct Sites {
    pub local: std::result::Result<Arc<Repository>, String>,
    pub remote: Option<(String, std::result::Result<Arc<Repository>, String>)>,
}

fn find_config(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    ["kura.toml", "/etc/kura/kura.toml"].into_iter().map(PathBuf::from).find(|p| p.is_file())
}

pub fn open_sites(ctx: &Ctx, config: Option<&Path>, with_remote: bool) -> Sites {
    let cfg = find_config(config).map(|p| {
        kura::config::load(&p).map_err(|problems| format!("the config {} is not valid:\n{problems}", p.display()))
    });
    let local = match (ctx.repo_location(), &cfg) {
        (Some(loc), _) => ctx.open().map_err(|e| format!("repository {loc}: {e:#}")),
        (None, Some(Ok(c))) => {
            ctx.open_at(&c.repository.location, Some(&c.repository.password_file)).map_err(|e| format!("{e:#}"))
        }
        (None, Some(Err(e))) => Err(e.clone()),
        (None, None) => Err("no repository: give --config FILE (its [repository]) or --repo LOCATION".into()),
    };
    let remote = match (&cfg, with_remote) {
        (Some(Ok(c)), true) => c.remote.as_ref().map(|r| {
            (r.location.to_string(), ctx.open_at(&r.location, Some(&r.password_file)).map_err(|e| format!("{e:#}")))
        }),
        _ => None,
    };
    Sites { local, remote }
}

/// Anchors an incident after a write; problems are warnings (the entry is stored).
pub fn anchor_after_write(repo: &Repository, state: &State, id: i64, now: DateTime<Utc>) {
    match anchor_incident(repo, state, id, now) {
        Ok(Anchored::Refused { reason }) => eprintln!(
            "warning: incident {id} was not anchored in the repository {}: {reason}; run `kura incident verify {id}`",
            repo.location()
        ),
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: incident {id} could not be anchored in the repository {}: {e:#}; `kura incident anchor {id}` \
             retries",
            repo.location()
        ),
    }
}

fn anchor_incident(repo: &Repository, state: &State, id: i64, now: DateTime<Utc>) -> Result<Anchored> {
    Ok(chain::anchor(repo, &state.db_id()?, id, &state.chain_rows(id)?, now)?)
}

/// Verifies the chain of `id` with the key of `repo`, against its anchors there and
/// at the remote site (when one could be opened).
pub fn verify_incident(
    state: &State,
    id: i64,
    repo: &Repository,
    remote: Option<&(String, std::result::Result<Arc<Repository>, String>)>,
) -> Result<Verification> {
    let rows = state.chain_rows(id)?;
    let db = state.db_id()?;
    let first = rows.first().map(|r| r.0.hash.as_str());
    let mut sites = vec![SiteAnchors {
        site: format!("the repository {}", repo.location()),
        remote: false,
        anchors: chain::find_anchors(repo, &db, id, first)?,
    }];
    let mut unreachable = None;
    match remote {
        Some((_, Ok(r))) => sites.push(SiteAnchors {
            site: format!("the remote site {}", r.location()),
            remote: true,
            anchors: chain::find_anchors(r, &db, id, first)?,
        }),
        Some((loc, Err(e))) => unreachable = Some(format!("the remote site {loc} was not checked: {e}")),
        None => {}
    }
    let mut v = chain::verify(id, &rows, &chain::chain_key(repo.key()), &sites);
    if let Some(msg) = unreachable {
        v.warnings.push(chain::Finding { kind: "remote-not-checked", entry: None, message: msg });
    }
    Ok(v)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let Args { config, cmd } = args;
    let reads_only = cmd.reads_only();
    let mut state = if reads_only { ctx.state_read_only()? } else { ctx.state()? };
    let now = ctx.now();
    let writes = !reads_only && !matches!(cmd, IncidentCommand::Anchor { .. });
    let mut repo = None;
    if writes {
        match open_sites(ctx, config.as_deref(), false).local {
            Ok(r) => {
                state.set_chain_key(r.key());
                repo = Some(r);
            }
            Err(e) => eprintln!(
                "warning: the repository could not be opened: {e}\n  the entry is written unkeyed and not anchored; \
                 once the repository can be opened, `kura incident anchor` anchors it (docs/RECOVERY.md)"
            ),
        }
    }
    let written: i64 = match cmd {
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
            id
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
            // Confirmed real: the detection's evidence fills the times not given.
            let defaults = match a.real {
                Some(true) => kura::detect::confirmed_defaults(&state, a.id, &fields)?,
                _ => None,
            };
            if !empty {
                state.append_event(a.id, now, &Event::Updated { fields })?;
            }
            if let Some((fields, text)) = defaults {
                state.append_event(a.id, now, &Event::Updated { fields })?;
                state.append_event(a.id, now, &Event::Note { text })?;
            }
            if let Some(text) = a.note {
                state.append_event(a.id, now, &Event::Note { text })?;
            }
            show_brief(ctx, &state.incident(a.id)?)?;
            a.id
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
            id
        }
        IncidentCommand::Scope { id } => {
            let Some(cfg_path) = find_config(config.as_deref()) else {
                bail!("incident scope needs the config that declares the systems: give --config FILE")
            };
            let Some(repo) = repo.as_ref() else { bail!("incident scope reads the backups: the repository must open") };
            super::scan::scope_incident(ctx, &mut state, repo, &cfg_path, id, now)?;
            id
        }
        IncidentCommand::Close { id, note } => {
            state.require_incident(id)?;
            state.append_event(id, now, &Event::Closed { note })?;
            show_brief(ctx, &state.incident(id)?)?;
            id
        }
        IncidentCommand::List => {
            let list: Vec<Incident> =
                state.incident_ids()?.into_iter().map(|id| state.incident(id)).collect::<kura_recovery::Result<_>>()?;
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
            return Ok(ExitCode::SUCCESS);
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
            return Ok(ExitCode::SUCCESS);
        }
        IncidentCommand::Review { id, findings, actions } => {
            state.require_incident(id)?;
            state.append_event(id, now, &Event::Reviewed { findings, actions })?;
            show_brief(ctx, &state.incident(id)?)?;
            id
        }
        IncidentCommand::PreventionPlan { id, technical, organizational } => {
            if technical.is_empty() && organizational.is_empty() {
                bail!("give at least one --technical or --organizational measure");
            }
            state.require_incident(id)?;
            state.append_event(id, now, &Event::PreventionPlan { technical, organizational })?;
            show_brief(ctx, &state.incident(id)?)?;
            id
        }
        IncidentCommand::Export { id, format, output } => {
            state.require_incident(id)?;
            let sites = open_sites(ctx, config.as_deref(), true);
            let text = super::export::incident(&state, id, &format, &sites)?;
            match output {
                Some(p) => {
                    std::fs::write(&p, text)?;
                    if !ctx.json {
                        println!("wrote the record of incident {id} to {}", p.display());
                    }
                }
                None => print!("{text}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        IncidentCommand::Verify { id } => {
            state.require_incident(id)?;
            let sites = open_sites(ctx, config.as_deref(), true);
            let repo = match &sites.local {
                Ok(r) => r,
                Err(e) => bail!(
                    "incident {id} cannot be verified without the repository, which holds the chain's key and its \
                     anchors: {e}"
                ),
            };
            let v = verify_incident(&state, id, repo, sites.remote.as_ref())?;
            if ctx.json {
                output::print_json(&serde_json::json!({
                    "incident": id,
                    "ok": v.ok(),
                    "entries": v.entries,
                    "head": v.head,
                    "keyed": v.keyed,
                    "unkeyed": v.unkeyed,
                    "legacy": v.legacy,
                    "anchored": v.anchored,
                    "problems": v.problems,
                    "warnings": v.warnings,
                }))?;
            } else {
                print_verification(&v);
            }
            return Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::from(super::EXIT_PARTIAL) });
        }
        IncidentCommand::Anchor { id } => {
            let sites = open_sites(ctx, config.as_deref(), false);
            let repo = match &sites.local {
                Ok(r) => r,
                Err(e) => bail!("nothing was anchored: {e}"),
            };
            let ids = match id {
                Some(id) => {
                    state.require_incident(id)?;
                    vec![id]
                }
                None => state.incident_ids()?,
            };
            let mut refused = false;
            let mut out = vec![];
            for id in ids {
                let a = anchor_incident(repo, &state, id, now)?;
                if !ctx.json {
                    match &a {
                        Anchored::UpToDate { entries } => {
                            println!("incident {id}: already anchored ({entries} entries)")
                        }
                        Anchored::Written { entries } => {
                            println!("incident {id}: anchored {entries} entries in {}", repo.location())
                        }
                        Anchored::Refused { reason } => println!("incident {id}: NOT anchored: {reason}"),
                    }
                }
                refused |= matches!(a, Anchored::Refused { .. });
                out.push(serde_json::json!({ "incident": id, "anchor": a }));
            }
            if ctx.json {
                output::print_json(&out)?;
            }
            return Ok(if refused { ExitCode::from(super::EXIT_PARTIAL) } else { ExitCode::SUCCESS });
        }
    };
    if let Some(repo) = &repo {
        anchor_after_write(repo, &state, written, now);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_verification(v: &Verification) {
    let id = v.incident;
    let anchored: Vec<String> = v.anchored.iter().map(|(site, n)| format!("{n} in {site}")).collect();
    if v.ok() {
        println!(
            "incident {id}: timeline intact ({} entries, {} keyed, {} unkeyed, {} legacy; head {}; anchored: {})",
            v.entries,
            v.keyed,
            v.unkeyed,
            v.legacy,
            &v.head[..v.head.len().min(16)],
            anchored.join(", ")
        );
    } else {
        println!("incident {id}: TAMPERED:");
        for p in &v.problems {
            println!("  {}", p.message);
        }
    }
    for w in &v.warnings {
        println!("  warning: {}", w.message);
    }
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
