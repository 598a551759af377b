//! `kura signals`: each snapshot's change and entropy signals and its verdict
//! (kura_recovery::detect); marking false positives; holds on clean snapshots.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kura::detect::{self, Assessed, Rules, Verdict};
use kura::repo::snapshot::Filter;
use kura::repo::Repository;

use super::{output, Ctx};

#[derive(clap::Args)]
pub struct Args {
    /// A config (kura.toml): its [repository] when --repo is not given, and its
    /// [detect] settings (baseline window, minimum history)
    #[arg(long, env = "KURA_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Only snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only snapshots that include this path (repeatable: all must match)
    #[arg(long = "path")]
    paths: Vec<String>,
    #[command(subcommand)]
    cmd: Option<SignalsCommand>,
}

impl Args {
    /// Whether the command only reads (the list, the holds); marking a false positive
    /// and releasing a hold change what forget and detection do.
    pub fn reads_only(&self) -> bool {
        matches!(self.cmd, None | Some(SignalsCommand::Holds))
    }
}

#[derive(Subcommand)]
pub enum SignalsCommand {
    /// Mark a suspect snapshot a false positive: the baseline learns from it (a change
    /// like it no longer alarms), and its draft incident is recorded as a false alarm
    FalsePositive {
        /// Snapshot id or unique prefix
        snapshot: String,
        /// Why it is normal (recorded)
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List the snapshots held from forget and prune
    Holds,
    /// Release the hold on a snapshot: forget and prune may remove it again
    Release {
        /// Snapshot id or unique prefix
        snapshot: String,
        /// Why it is released (recorded)
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// The repository and the rules to judge with.
pub fn open(ctx: &Ctx, config: Option<&std::path::Path>) -> Result<(Arc<Repository>, Rules)> {
    let cfg = match config {
        Some(p) => Some(
            kura::config::load(p)
                .map_err(|problems| anyhow::anyhow!("the config {} is not valid:\n{problems}", p.display()))?,
        ),
        None => None,
    };
    let repo = match (&cfg, ctx.repo_location()) {
        (Some(c), None) => ctx.open_at(&c.repository.location, Some(&c.repository.password_file))?,
        _ => ctx.open()?,
    };
    Ok((repo, cfg.map(|c| c.detect.rules).unwrap_or_default()))
}

/// The false-positive marks of a repository, from the state database if there is one.
pub fn false_positives(ctx: &Ctx, repo_id: &str) -> Result<std::collections::HashSet<String>> {
    match ctx.state_if_exists()? {
        Some(state) => Ok(state.false_positives(repo_id)?),
        None => Ok(Default::default()),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let (repo, rules) = open(ctx, a.config.as_deref())?;
    match a.cmd {
        None => list(ctx, &repo, &rules, Filter { host: a.host, tags: a.tags, paths: a.paths, ..Default::default() }),
        Some(SignalsCommand::FalsePositive { snapshot, note }) => false_positive(ctx, &repo, &snapshot, &note),
        Some(SignalsCommand::Holds) => holds(ctx, &repo),
        Some(SignalsCommand::Release { snapshot, note }) => release(ctx, &repo, &snapshot, &note),
    }
}

fn list(ctx: &Ctx, repo: &Repository, rules: &Rules, filter: Filter) -> Result<ExitCode> {
    let snaps = repo.snapshots()?;
    let fps = false_positives(ctx, &repo.config().id)?;
    // In the order of `snaps`, one verdict each.
    let all = detect::assess_all(&snaps, &fps, rules);
    let shown: Vec<&Assessed> =
        all.iter().zip(&snaps).filter(|(_, (_, s))| filter.matches(s)).map(|(a, _)| a).collect();
    if ctx.json {
        output::print_json(&shown)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<9} {:<19} {:<10} {:>7} {:>8} {:>6} {:>6} {:>10} {:>7} {:>5}  VERDICT",
        "ID", "TIME", "HOST", "FILES", "CHANGED", "RENAME", "DELETE", "NEW DATA", "INCOMPR", "NOTES"
    );
    for a in &shown {
        let t = a.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S");
        let Some(s) = &a.signals else {
            println!(
                "{:<9} {t:<19} {:<10} {:>7} {:>8} {:>6} {:>6} {:>10} {:>7} {:>5}  {}",
                a.id.short(),
                a.host,
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                verdict_text(a)
            );
            continue;
        };
        println!(
            "{:<9} {t:<19} {:<10} {:>7} {:>7.1}% {:>6} {:>6} {:>10} {:>6.1}% {:>5}  {}",
            a.id.short(),
            a.host,
            s.files,
            s.change_rate() * 100.0,
            s.renamed + s.ext_changed,
            s.deleted,
            output::bytes(s.bytes_new),
            s.incompressible_share() * 100.0,
            s.note_names,
            verdict_text(a)
        );
    }
    let suspect = shown.iter().filter(|a| a.is_suspect()).count();
    println!("{} snapshots, {suspect} suspect", shown.len());
    Ok(ExitCode::SUCCESS)
}

/// `suspect: [rule] detail; ...`, `clean`, `learning (3 of 5)`, `suspect (false positive)`.
pub fn verdict_text(a: &Assessed) -> String {
    match &a.verdict {
        Verdict::Suspect { .. } if a.false_positive => "suspect, marked false positive".into(),
        Verdict::Suspect { reasons } => {
            let r: Vec<String> = reasons.iter().map(|r| format!("[{}] {}", r.rule.as_str(), r.detail)).collect();
            format!("SUSPECT: {}", r.join("; "))
        }
        Verdict::Learning { have, need } => format!("learning ({have} of {need})"),
        v => v.label().into(),
    }
}

fn false_positive(ctx: &Ctx, repo: &Repository, query: &str, note: &str) -> Result<ExitCode> {
    let snaps = repo.snapshots()?;
    let (id, snap) = kura::repo::snapshot::select(&snaps, query)?;
    let repo_id = repo.config().id.clone();
    let mut state = ctx.state()?;
    state.set_chain_key(repo.key());
    let now = ctx.now();
    state.mark_false_positive(&repo_id, &id.to_hex(), snap.time, note, now)?;
    // Its draft incident answers the standard's first question: a false alarm.
    let incident = state.verdicts(&repo_id)?.into_iter().find(|v| v.snapshot == id.to_hex()).and_then(|v| v.incident);
    if let Some(i) = incident {
        let fields = kura::incident::Fields { real: Some(false), ..Default::default() };
        state.append_event(i, now, &kura::incident::Event::Updated { fields })?;
        state.append_event(
            i,
            now,
            &kura::incident::Event::Note { text: format!("snapshot {} marked a false positive: {note}", id.short()) },
        )?;
        super::incident::anchor_after_write(repo, &state, i, now);
    }
    if ctx.json {
        output::print_json(
            &serde_json::json!({ "snapshot": id.to_hex(), "false_positive": true, "incident": incident }),
        )?;
    } else {
        println!("snapshot {} marked a false positive; the baseline now counts it as normal", id.short());
        if let Some(i) = incident {
            println!("incident {i} recorded as a false alarm");
        }
        println!("holds stay until released: `kura signals holds`, `kura signals release SNAPSHOT`");
    }
    Ok(ExitCode::SUCCESS)
}

fn holds(ctx: &Ctx, repo: &Repository) -> Result<ExitCode> {
    let list = match ctx.state_if_exists()? {
        Some(state) => state.active_holds(&repo.config().id)?,
        None => Vec::new(),
    };
    if ctx.json {
        output::print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    for h in &list {
        println!(
            "{} {} since {}: {}",
            &h.snapshot[..8],
            h.system.as_deref().unwrap_or("-"),
            h.since.format("%Y-%m-%d %H:%M:%S UTC"),
            h.reason
        );
    }
    println!("{} held snapshots", list.len());
    Ok(ExitCode::SUCCESS)
}

fn release(ctx: &Ctx, repo: &Repository, query: &str, note: &str) -> Result<ExitCode> {
    let mut state = ctx.state()?;
    let repo_id = repo.config().id.clone();
    let q = query.to_ascii_lowercase();
    let held: Vec<String> =
        state.active_holds(&repo_id)?.into_iter().map(|h| h.snapshot).filter(|s| s.starts_with(&q)).collect();
    let snapshot = match held.as_slice() {
        [one] => one.clone(),
        [] => bail!("no held snapshot matches {query:?}; `kura signals holds` lists them"),
        _ => bail!("{query:?} matches several held snapshots; give more of the id"),
    };
    let n = state.release_hold(&repo_id, &snapshot, note, ctx.now()).context("releasing the hold")?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "snapshot": snapshot, "released": n }))?;
    } else {
        println!("released the hold on snapshot {}", &snapshot[..8]);
    }
    Ok(ExitCode::SUCCESS)
}
