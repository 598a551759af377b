//! `kura check`.

use std::process::ExitCode;

use anyhow::Result;
use kura::check::{self, ReadData};

use super::{output, Ctx, EXIT_PARTIAL};

#[derive(clap::Args)]
pub struct Args {
    /// Read and verify every pack (all stored data)
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read and verify part of the data: `N%` (random) or `N/M` (part N of M)
    #[arg(long, value_name = "N%|N/M")]
    read_data_subset: Option<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let read = match (&a.read_data, &a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => ReadData::parse_subset(s)?,
        (false, None) => ReadData::None,
    };
    let repo = ctx.open()?;
    let bar = output::Bar::new(ctx.show_progress() && read != ReadData::None, "reading packs");
    let res = check::run(&repo, read, &bar);
    bar.finish();
    let r = res?;
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
