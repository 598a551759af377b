//! `kura forget`: remove snapshots by a retention policy.
//!
//! Only snapshot files are deleted. The data they alone referenced stays in the packs
//! until `kura prune`, so a mistaken forget loses no file contents until then (the
//! snapshot itself is gone, though). The decision for every group is computed before
//! the first deletion; the policy lives in `kura::forget` (docs/RETENTION.md).

use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use kura::forget::{self, GroupBy, Policy, Reason, Within};
use kura::repo::snapshot::{Filter, Snapshot};
use kura::types::FileId;
use serde::Serialize;

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct Args {
    /// Remove exactly these snapshots (ids, unique prefixes or `latest`, among those the
    /// filters select) instead of applying a policy: for example the original that
    /// `kura repair snapshots` kept
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, help_heading = "Policy")]
    keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one (UTC)
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, help_heading = "Policy")]
    keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days that have one (UTC)
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, help_heading = "Policy")]
    keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one (UTC)
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, help_heading = "Policy")]
    keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months that have one (UTC)
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, help_heading = "Policy")]
    keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years that have one (UTC)
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, help_heading = "Policy")]
    keep_yearly: u32,
    /// Keep every snapshot newer than DURATION before the group's newest one
    /// (y years, m months, d days, h hours: 2d, 36h, 1y2m3d)
    #[arg(long, value_name = "DURATION", help_heading = "Policy")]
    keep_within: Option<Within>,
    /// Keep every snapshot with this tag (repeatable: any of them)
    #[arg(long = "keep-tag", value_name = "TAG", help_heading = "Policy")]
    keep_tags: Vec<String>,
    /// Apply the policy separately to each group of snapshots with the same host, paths, or both
    #[arg(long, value_name = "host|paths|host,paths", default_value = "host,paths")]
    group_by: GroupBy,
    /// Only consider snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only consider snapshots with this tag (repeatable: all must match)
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only consider snapshots that include this path (repeatable: all must match)
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Show what would be kept and removed, and why; remove nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Run `kura prune` right after
    #[arg(long)]
    prune: bool,
}

impl Args {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tags.clone(),
            group_by: self.group_by,
        }
    }

    /// The same filter as `kura snapshots`.
    fn filter(&self) -> Filter {
        Filter { host: self.host.clone(), tags: self.tags.clone(), paths: self.paths.clone(), ..Default::default() }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    groups: Vec<GroupOut<'a>>,
    /// Snapshot files deleted by this run (0 in a dry run).
    removed: usize,
    failed: Vec<Failed>,
    /// With `--prune`: what prune did (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<kura::prune::PruneReport>,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paths: Option<&'a [String]>,
    keep: Vec<Item<'a>>,
    remove: Vec<Item<'a>>,
}

#[derive(Serialize)]
struct Item<'a> {
    id: String,
    short_id: String,
    time: &'a DateTime<Utc>,
    host: &'a str,
    paths: &'a [String],
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<&'a [Reason]>,
}

#[derive(Serialize)]
struct Failed {
    id: String,
    error: String,
}

fn item<'a>((id, s): &'a (FileId, Snapshot), reasons: Option<&'a [Reason]>) -> Item<'a> {
    Item {
        id: id.to_hex(),
        short_id: id.short(),
        time: &s.time,
        host: &s.host,
        paths: &s.paths,
        tags: &s.tags,
        reasons,
    }
}

/// `kura forget ID...`: removes the named snapshots, nothing else.
fn forget_named(ctx: &Ctx, a: &Args) -> Result<ExitCode> {
    if !a.policy().is_empty() {
        bail!("give either snapshot ids or a --keep-* policy, not both");
    }
    let repo = ctx.open()?;
    let plan = forget::plan_named(repo.snapshots()?, &a.snapshots, &a.filter())?.hold(&holds(ctx, &repo)?);
    for h in &plan.held {
        eprintln!("kept snapshot {}: {} (`kura signals release` lifts the hold)", h.id.short(), h.reason);
    }
    let chosen = plan.to_remove();
    let mut removed = Vec::new();
    if !a.dry_run {
        let out = forget::execute(&repo, &plan);
        if let Some((_, e)) = out.failed.into_iter().next() {
            return Err(e.into());
        }
        removed = out.removed;
    }
    if ctx.json {
        let named: Vec<String> = chosen.iter().map(|i| i.to_hex()).collect();
        output::print_json(&serde_json::json!({"dry_run": a.dry_run, "snapshots": named, "removed": removed.len()}))?;
    } else {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        for id in chosen {
            println!("{verb} snapshot {}", id.short());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The holds the state database keeps on this repository's snapshots (a system's
/// last clean one after a suspect backup): the same plan method the daemon calls.
fn holds(ctx: &Ctx, repo: &kura::repo::Repository) -> Result<Vec<forget::Held>> {
    match ctx.state_if_exists()? {
        Some(state) => Ok(kura::detect::holds_for_forget(&state, &repo.config().id)?),
        None => Ok(Vec::new()),
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    if !a.snapshots.is_empty() {
        return forget_named(ctx, &a);
    }
    let policy = a.policy();
    if policy.is_empty() {
        bail!(
            "no policy given: name what to keep with --keep-last, --keep-hourly, --keep-daily, --keep-weekly, \
             --keep-monthly, --keep-yearly, --keep-within or --keep-tag (forget refuses to remove every snapshot)"
        );
    }
    let repo = ctx.open()?;
    // Every group is decided before anything is deleted.
    let plan = forget::plan(repo.snapshots()?, &a.filter(), &policy)?.hold(&holds(ctx, &repo)?);
    let (list, decisions) = (&plan.considered, &plan.groups);

    let mut removed = 0;
    let mut failed = Vec::new();
    if !a.dry_run {
        let out = forget::execute(&repo, &plan);
        removed = out.removed.len();
        failed = out.failed.into_iter().map(|(id, e)| Failed { id: id.to_hex(), error: e.to_string() }).collect();
    }

    for f in &failed {
        eprintln!("warning: could not remove snapshot {}: {}", &f.id[..8], f.error);
    }
    let code = if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) };
    // Prune runs even when this run removed nothing: a forget killed between its two
    // steps left unused data behind, and running the command again must free it.
    let pruned = if a.prune && !a.dry_run {
        let bar = output::Bar::new(ctx.show_progress(), "repacking");
        let r = kura::prune::run(&repo, &kura::prune::PruneOptions::default(), &bar);
        bar.finish();
        Some(r?)
    } else {
        None
    };
    if ctx.json {
        let groups = decisions
            .iter()
            .map(|g| GroupOut {
                host: g.host.as_deref(),
                paths: g.paths.as_deref(),
                keep: g.keep.iter().map(|k| item(&list[k.index], Some(&k.reasons))).collect(),
                remove: g.remove.iter().map(|&i| item(&list[i], None)).collect(),
            })
            .collect();
        output::print_json(&Report { dry_run: a.dry_run, groups, removed, failed, prune: pruned })?;
    } else {
        print_text(&a, list, decisions, removed);
        if let Some(r) = &pruned {
            super::prune::print_report(r);
        }
    }
    Ok(code)
}

fn print_text(a: &Args, list: &[(FileId, Snapshot)], decisions: &[forget::GroupDecision], removed: usize) {
    let verb = if a.dry_run { "would remove" } else { "remove" };
    let line = |action: &str, (id, s): &(FileId, Snapshot), why: String| {
        let text = format!(
            "  {action:<7} {:<9} {:<19} {:<12} {:<14} {why}",
            id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.host,
            s.tags.join(","),
        );
        println!("{}", text.trim_end());
    };
    for g in decisions {
        let mut name = Vec::new();
        if let Some(h) = &g.host {
            name.push(format!("host {h}"));
        }
        if let Some(p) = &g.paths {
            name.push(format!("paths {}", p.join(" ")));
        }
        println!("{}: keep {}, {verb} {}", name.join(", "), g.keep.len(), g.remove.len());
        println!("  {:<7} {:<9} {:<19} {:<12} {:<14} REASONS", "ACTION", "ID", "TIME (UTC)", "HOST", "TAGS");
        for k in &g.keep {
            let why = k.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
            line("keep", &list[k.index], why);
        }
        for &i in &g.remove {
            line("remove", &list[i], String::new());
        }
    }
    let total: usize = decisions.iter().map(|g| g.remove.len()).sum();
    if a.dry_run {
        println!("dry run: would remove {total} of {} snapshots; nothing was changed", list.len());
    } else if total == 0 {
        println!("no snapshots to remove ({} kept)", list.len());
    } else {
        println!(
            "removed {removed} of {} snapshots; their data stays until `kura prune` frees what no snapshot uses",
            list.len()
        );
    }
}
