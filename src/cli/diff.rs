//! `kura diff`: two snapshots, or a snapshot and a live directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use kura::diff::{Change, Diff};

use super::filter::FilterArgs;
use super::{output, Ctx};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  kura diff 4e70c24e latest\n  kura diff 4e70c24e 9b1d0f3a --json\n  kura diff latest /srv/www      (a live directory: files compared by size and time, not read)\n  kura diff 4e70c24e latest /srv/www/uploads"
)]
pub struct Args {
    /// The earlier snapshot (id, unique prefix or `latest`)
    before: String,
    /// The later snapshot, or a live directory (a path that exists, e.g. /srv/www or ./data)
    after: String,
    /// Only list changes at or below this path
    path: Option<String>,
    /// Also list paths whose only change is their owner or modification time
    #[arg(long)]
    metadata: bool,
    /// Filters for both snapshots: `kura diff 4e70c24e latest --host web1`
    #[command(flatten)]
    filter: FilterArgs,
}

/// A directory on this machine, when `arg` names one (an absolute or `./` path).
fn live_dir(arg: &str) -> Option<PathBuf> {
    let looks = arg.starts_with('/') || arg.starts_with("./") || arg.starts_with("../") || arg == ".";
    let p = Path::new(arg);
    (looks && p.is_dir()).then(|| std::path::absolute(p).ok()).flatten()
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let filter = a.filter.filter();
    let (id_a, snap_a) = repo.find_snapshot_matching(&a.before, &filter)?;
    let index = repo.load_index()?;
    let (mut d, other): (Diff, String) = match live_dir(&a.after) {
        Some(dir) => {
            let d = kura::diff::diff_live(&repo, &index, &snap_a.tree, &dir, &id_a.short())
                .with_context(|| format!("comparing snapshot {} with {}", id_a.short(), dir.display()))?;
            (d, format!("the live directory {}", dir.display()))
        }
        None => {
            let (id_b, snap_b) = repo.find_snapshot_matching(&a.after, &filter)?;
            (kura::diff::diff(&repo, &index, &snap_a.tree, &snap_b.tree)?, id_b.short())
        }
    };
    if !a.metadata {
        d.changes.retain(|c| c.change != Change::Metadata);
    }
    if let Some(p) = &a.path {
        let p = p.trim_end_matches('/');
        let under = |x: &str| x == p || x.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
        d.changes.retain(|c| under(&c.path) || c.from.as_deref().is_some_and(under));
        d.summary = kura::diff::summarize(&d.changes);
    }
    if ctx.json {
        output::print_json(&d)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("comparing snapshot {} to {other}", id_a.short());
    for c in &d.changes {
        let slash = if c.node_type == kura::repo::tree::NodeType::Dir { "/" } else { "" };
        match (&c.from, c.mode_before, c.mode_after) {
            (Some(from), _, _) => println!("{}    {from} -> {}{slash}", c.change.mark(), c.path),
            (None, Some(m0), Some(m1)) => println!("{}    {}{slash} ({m0:o} -> {m1:o})", c.change.mark(), c.path),
            _ => println!("{}    {}{slash}", c.change.mark(), c.path),
        }
    }
    let s = &d.summary;
    println!(
        "\n{} added, {} removed, {} modified, {} renamed ({} to a new extension with new content), {} changed type, \
         {} changed mode, {} with new metadata; {} added, {} removed",
        s.added,
        s.removed,
        s.modified,
        s.renamed,
        s.renamed_new_extension,
        s.type_changed,
        s.mode_changed,
        s.metadata,
        output::bytes(s.bytes_added),
        output::bytes(s.bytes_removed)
    );
    Ok(ExitCode::SUCCESS)
}
