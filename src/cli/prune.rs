//! `kura prune` and `kura repair`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use kura::prune::{self, PruneOptions, PruneReport};

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct Args {
    /// Show what would be removed and repacked, change nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Repack a pack when more than PCT percent of it is unused
    #[arg(long, value_name = "PCT", default_value_t = 25.0)]
    max_unused: f64,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    if !(0.0..=100.0).contains(&a.max_unused) {
        anyhow::bail!("--max-unused must be between 0 and 100, got {}", a.max_unused);
    }
    let repo = ctx.open()?;
    let bar = output::Bar::new(ctx.show_progress(), "repacking");
    let res = prune::run(&repo, &PruneOptions { dry_run: a.dry_run, max_unused_pct: a.max_unused }, &bar);
    bar.finish();
    let r = res?;
    if ctx.json {
        output::print_json(&r)?;
    } else {
        print_report(&r);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_report(r: &PruneReport) {
    let verb = if r.dry_run { "would be" } else { "were" };
    println!("{} snapshots use {} of {} blobs in {} packs", r.snapshots, r.blobs_used, r.blobs, r.packs);
    let when = if r.dry_run {
        "deleted in the same run if no other operation holds a lock, else by a later prune"
    } else if r.marked_deleted_now {
        "deleted in this run: no other operation held a lock"
    } else {
        "a later prune deletes them"
    };
    println!(
        "{} packs ({}) {verb} marked for deletion, {} of them after repacking ({} read); {when}",
        r.packs_marked,
        output::bytes(r.bytes_marked),
        r.packs_repacked,
        output::bytes(r.bytes_repacked)
    );
    println!("{} packs {verb} deleted: {} freed", r.packs_deleted, output::bytes(r.bytes_freed));
    if r.packs_reinstated > 0 {
        println!("{} packs marked earlier {verb} put back: a backup uses them again", r.packs_reinstated);
    }
    if r.packs_retained > 0 {
        println!("{} packs stay pending: object-lock retention keeps them until it ends", r.packs_retained);
    }
    if r.temp_files_removed > 0 {
        println!("{} temp files left by interrupted writes were removed from tmp/", r.temp_files_removed);
    }
    if r.packs_waiting > 0 {
        println!(
            "{} packs ({}) wait: the first prune after these operations end deletes them:",
            r.packs_waiting,
            output::bytes(r.bytes_waiting)
        );
        for w in &r.waiting_for {
            println!("    {w}");
        }
    }
}

#[derive(Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers; salvage packs whose header is unreadable
    Index,
    /// Read whole packs; replace each damaged one by the blobs that still authenticate
    Packs {
        /// Only the packs whose id starts with one of these (as `check --read-data` names them)
        #[arg(value_name = "PACK")]
        packs: Vec<String>,
        /// Show what would be replaced, change nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Write repaired copies of snapshots that need lost data, keeping what is still readable
    Snapshots {
        /// Show what would be dropped, change nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
}

fn print_salvaged(s: &kura::repair::SalvagedPack) {
    println!(
        "pack {} is damaged ({}): {} blobs kept, {} lost (found by {})",
        s.pack, s.reason, s.blobs_kept, s.blobs_lost, s.found_by
    );
    if !s.quarantined_as.is_empty() {
        println!("    moved to {}", s.quarantined_as);
    }
}

const AFTER_LOSS: &str = "lost blobs are out of the index: the next backup of the same data stores them again; \
                          `kura repair snapshots` writes copies of the snapshots that need them without the lost files";

pub fn repair(ctx: &Ctx, cmd: RepairCommand) -> Result<ExitCode> {
    let repo = ctx.open()?;
    match cmd {
        RepairCommand::Index => {
            let r = kura::repair::repair_index(&repo)?;
            if ctx.json {
                output::print_json(&r)?;
            } else {
                println!(
                    "indexed {} blobs in {} packs; replaced {} index files",
                    r.blobs_indexed, r.packs_indexed, r.old_index_files
                );
                if r.temp_files_removed > 0 {
                    println!("removed {} temp files left by interrupted writes from tmp/", r.temp_files_removed);
                }
                for p in &r.unreadable_packs {
                    println!("warning: unreadable pack: {p}");
                }
                r.salvaged.iter().for_each(print_salvaged);
                for q in &r.quarantined {
                    println!("quarantined {q}");
                }
                if r.blobs_lost() > 0 {
                    println!("{AFTER_LOSS}");
                }
            }
            Ok(if r.blobs_lost() > 0 { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
        }
        RepairCommand::Packs { packs, dry_run } => {
            let r = kura::repair::repair_packs(&repo, &packs, dry_run)?;
            if ctx.json {
                output::print_json(&r)?;
            } else {
                println!(
                    "read {} packs ({}), {} damaged{}",
                    r.packs_read,
                    output::bytes(r.bytes_read),
                    r.damaged.len(),
                    if dry_run { " (dry run: nothing changed)" } else { "" }
                );
                r.damaged.iter().for_each(print_salvaged);
                if r.blobs_lost() > 0 && !dry_run {
                    println!("{AFTER_LOSS}");
                }
            }
            Ok(if r.blobs_lost() > 0 { ExitCode::from(EXIT_PARTIAL) } else { ExitCode::SUCCESS })
        }
        RepairCommand::Snapshots { dry_run } => {
            let r = kura::repair::repair_snapshots(&repo, dry_run)?;
            if ctx.json {
                output::print_json(&r)?;
            } else {
                println!("checked {} snapshots, {} need repair", r.snapshots_checked, r.repaired.len());
                for s in &r.repaired {
                    let new = if r.dry_run { &s.new } else { &s.new[..8.min(s.new.len())] };
                    println!("snapshot {} -> {new}", &s.old[..8]);
                    for d in &s.dropped {
                        println!("    dropped {d}");
                    }
                }
                if r.repaired.is_empty() {
                    println!(
                        "(a blob counts as present while its pack is indexed and stored: if `kura check --read-data` \
                         named damaged packs, run `kura repair packs` first)"
                    );
                }
                if !r.repaired.is_empty() && !r.dry_run {
                    println!(
                        "the original snapshots are kept: remove them with `kura forget <id>` once the copies suffice"
                    );
                }
                for q in &r.quarantined {
                    println!("quarantined {q}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
