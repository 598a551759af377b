//! `kura scan` (indicators of compromise in snapshots) and `kura clean-point` (a
//! system's snapshots ranked clean, suspect or infected; the newest clean one).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use kura::detect::indicators::Indicators;
use kura::detect::scan::{self, SnapshotScan};
use kura::repo::snapshot::Snapshot;
use kura::types::FileId;

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Snapshots to scan (ids, unique prefixes or `latest`)
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Scan every snapshot of this system (its `system:NAME` tag)
    #[arg(long, conflicts_with = "snapshots")]
    system: Option<String>,
    /// Indicator file: `sha256 HEX [LABEL]`, `name GLOB [LABEL]` and `yara PATH` (YARA rule file or
    /// directory) lines (docs/DETECTION.md)
    #[arg(long, value_name = "FILE")]
    indicators: PathBuf,
    /// A config (kura.toml) whose [repository] is scanned when --repo is not given
    #[arg(long, env = "KURA_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct CleanPointArgs {
    /// The system (its snapshots carry the tag `system:NAME`)
    system: String,
    /// Only snapshots taken before this time (RFC 3339, e.g. 2026-05-01T12:00:00Z)
    #[arg(long, value_name = "TIME")]
    before: Option<DateTime<Utc>>,
    /// A config (kura.toml): its [repository] when --repo is not given, and its [detect] settings
    #[arg(long, env = "KURA_CONFIG")]
    config: Option<PathBuf>,
}

fn system_filter(name: &str) -> impl Fn(&Snapshot) -> bool + '_ {
    move |s: &Snapshot| s.has_tag(&format!("system:{name}"))
}

pub fn scan(ctx: &Ctx, a: ScanArgs) -> Result<ExitCode> {
    let ind = Indicators::load(&a.indicators)?;
    let (repo, _) = super::signals::open(ctx, a.config.as_deref())?;
    let all = repo.snapshots()?;
    let chosen: Vec<(FileId, Snapshot)> = match (&a.system, a.snapshots.is_empty()) {
        (Some(sys), _) => {
            let mine = system_filter(sys);
            let v: Vec<_> = all.iter().filter(|(_, s)| mine(s)).cloned().collect();
            if v.is_empty() {
                bail!("no snapshot carries the tag system:{sys}; `kura snapshots --tag system:{sys}` lists them");
            }
            v
        }
        (None, false) => {
            let mut v = Vec::new();
            for q in &a.snapshots {
                let one = kura::repo::snapshot::select(&all, q)?.clone();
                if !v.iter().any(|(id, _)| *id == one.0) {
                    v.push(one);
                }
            }
            v
        }
        (None, true) => bail!("name the snapshots to scan, or give --system NAME"),
    };
    let index = repo.load_index()?;
    let mut state = ctx.state()?;
    let repo_id = repo.config().id.clone();
    let mut results: Vec<SnapshotScan> = Vec::new();
    for snap in &chosen {
        let r = scan::scan_snapshot(&repo, &index, snap, &ind, &mut state)?;
        state.record_scan(&repo_id, &r, ctx.now())?;
        if !ctx.json {
            let verdict = if r.infected() { format!("INFECTED: {} hits", r.hits.len()) } else { "clean".into() };
            println!(
                "{} {}: {} files, {} read ({}), {verdict}",
                &r.snapshot[..8],
                r.time.format("%Y-%m-%d %H:%M:%S UTC"),
                r.files,
                r.files_read,
                output::bytes(r.bytes_read)
            );
            for h in r.hits.iter().take(20) {
                println!("  {} matches {} ({})", h.path, h.indicator, h.by);
            }
        }
        results.push(r);
    }
    let infected = results.iter().filter(|r| r.infected()).count();
    if ctx.json {
        output::print_json(&results)?;
    } else {
        println!("{} snapshots scanned with {} indicators, {infected} infected", results.len(), ind.rules);
    }
    Ok(if infected > 0 { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
}

pub fn clean_point(ctx: &Ctx, a: CleanPointArgs) -> Result<ExitCode> {
    let (repo, rules) = super::signals::open(ctx, a.config.as_deref())?;
    let state = ctx.state_if_exists()?;
    let mine = system_filter(&a.system);
    let cp = kura::detect::clean_point_of(state.as_ref(), &repo, &mine, &rules, a.before)?;
    if cp.ranked.is_empty() {
        bail!(
            "no snapshot of system {} (tag system:{}){}",
            a.system,
            a.system,
            match a.before {
                Some(b) => format!(" before {b}"),
                None => String::new(),
            }
        );
    }
    if ctx.json {
        output::print_json(&cp)?;
    } else {
        for r in &cp.ranked {
            let mark = if cp.clean.as_deref() == Some(&r.id) { "  <- clean point" } else { "" };
            let status = serde_json::to_value(r.status)?.as_str().unwrap_or_default().to_string();
            println!(
                "{} {} {status:<9} {}{mark}",
                &r.id[..8],
                r.time.format("%Y-%m-%d %H:%M:%S UTC"),
                r.evidence.join("; ")
            );
        }
        match (&cp.clean, cp.clean_time) {
            (Some(id), Some(t)) => {
                println!("clean point of {}: {} ({})", a.system, &id[..8], t.format("%Y-%m-%d %H:%M:%S UTC"))
            }
            _ => println!("no clean snapshot of {}", a.system),
        }
    }
    Ok(if cp.clean.is_some() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) })
}

/// `kura incident scope ID`: every system of the config scoped against its clean
/// point; the incident's scope and damage fields are set, the evidence noted.
pub fn scope_incident(
    ctx: &Ctx,
    state: &mut kura::state::State,
    repo: &kura::repo::Repository,
    config: &std::path::Path,
    id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    use kura::incident::{Event, Fields};
    state.require_incident(id)?;
    let cfg = kura::config::load(config)
        .map_err(|problems| anyhow::anyhow!("the config {} is not valid:\n{problems}", config.display()))?;
    let mut scopes = Vec::new();
    for sys in &cfg.systems {
        scopes.push(kura::detect::scope::scope_system(Some(state), repo, sys, &cfg.detect.rules)?);
    }
    let (scope, damage) = kura::detect::scope::render(&scopes);
    state.append_event(
        id,
        now,
        &Event::Updated {
            fields: Fields { scope: Some(scope.clone()), damage: Some(damage.clone()), ..Default::default() },
        },
    )?;
    let evidence = serde_json::to_string(&scopes)?;
    state.append_event(
        id,
        now,
        &Event::Note { text: format!("scope from the backups (kura incident scope): {evidence}") },
    )?;
    super::incident::anchor_after_write(repo, state, id, now);
    if ctx.json {
        output::print_json(
            &serde_json::json!({ "incident": id, "scope": scope, "damage": damage, "systems": scopes }),
        )?;
    } else {
        println!("incident {id}\n  scope:  {scope}\n  damage: {damage}");
    }
    Ok(())
}
