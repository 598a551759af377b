//! `kura diff`.

use std::process::ExitCode;

use anyhow::Result;

use super::filter::FilterArgs;
use super::{output, Ctx};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  kura diff 4e70c24e latest\n  kura diff 4e70c24e 9b1d0f3a --json")]
pub struct Args {
    /// The earlier snapshot (id, unique prefix or `latest`)
    before: String,
    /// The later snapshot
    after: String,
    /// Also list paths whose only change is their mode, owner or modification time
    #[arg(long)]
    metadata: bool,
    /// Filters for both snapshots: `kura diff 4e70c24e latest --host web1`
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let filter = a.filter.filter();
    let (id_a, snap_a) = repo.find_snapshot_matching(&a.before, &filter)?;
    let (id_b, snap_b) = repo.find_snapshot_matching(&a.after, &filter)?;
    let index = repo.load_index()?;
    let mut d = kura::diff::diff(&repo, &index, &snap_a.tree, &snap_b.tree)?;
    if !a.metadata {
        d.changes.retain(|c| c.change != kura::diff::Change::Metadata);
    }
    if ctx.json {
        output::print_json(&d)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("comparing snapshot {} to {}", id_a.short(), id_b.short());
    for c in &d.changes {
        let slash = if c.node_type == kura::repo::tree::NodeType::Dir { "/" } else { "" };
        println!("{}    {}{slash}", c.change.mark(), c.path);
    }
    let s = &d.summary;
    println!(
        "\n{} added, {} removed, {} modified, {} changed type, {} with new metadata; {} added, {} removed",
        s.added,
        s.removed,
        s.modified,
        s.type_changed,
        s.metadata,
        output::bytes(s.bytes_added),
        output::bytes(s.bytes_removed)
    );
    Ok(ExitCode::SUCCESS)
}
