//! `kura check`.

use std::process::ExitCode;

use anyhow::Result;
use kura::check::rotation::{Rotation, MAX_PARTS};
use kura::check::{self, ReadData};

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct Args {
    /// Read and verify every pack (all stored data)
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read and verify part of the data: `N%` (random), `N/M` (part N of M), or
    /// `next/M` (the part after the one the last `next/M` check read: M runs cover all)
    #[arg(long, value_name = "N%|N/M|next/M")]
    read_data_subset: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    // Check reads what the repository holds, never a cached copy.
    let repo = ctx.open_with_cache(false)?;
    // The daemon's check job keeps the same rotation (check::rotation).
    let rotation = Rotation::for_repository(&repo.config().id);
    let mut turn = None;
    let read = match (&a.read_data, &a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) if s.starts_with("next/") => {
            let bad = || anyhow::anyhow!("--read-data-subset {s:?}: expected next/M with 1 <= M <= {MAX_PARTS}");
            let m: u32 = s[5..].parse().map_err(|_| bad())?;
            let t = rotation.next(m).map_err(|_| bad())?;
            if !ctx.json {
                println!("reading part {} of {}", t.part.n, t.part.of);
            }
            let read = t.part.read_data();
            turn = Some(t);
            read
        }
        (false, Some(s)) => ReadData::parse_subset(s)?,
        (false, None) => ReadData::None,
    };
    let bar = output::Bar::new(ctx.show_progress() && read != ReadData::None, "reading packs");
    let lock = kura::repo::lock::reader_lock(&repo, "check");
    let res = check::run(&repo, read, &bar);
    drop(lock);
    bar.finish();
    let r = res?;
    if let Some(t) = turn {
        // Only a clean check moves the rotation on: a damaged part is read again.
        t.finish(&r)?;
    }
    if ctx.json {
        output::print_json(&r)?;
    } else {
        println!(
            "checked {} snapshots, {} trees, {} packs; read {} packs ({})",
            r.snapshots,
            r.trees,
            r.packs,
            r.packs_read,
            output::bytes(r.bytes_read)
        );
        for w in &r.warnings {
            println!("warning: {w}");
        }
        for e in &r.errors {
            println!("error: {e}");
        }
        for d in &r.damaged_packs {
            println!("error: pack {} is damaged: {}", d.pack, d.reason);
            for f in &d.affects {
                println!("    affects {f}");
            }
        }
        if r.is_clean() {
            println!("no errors were found");
        } else {
            println!("the repository has errors: see above; `kura repair` can rebuild what is recoverable");
        }
    }
    Ok(if r.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) })
}
