//! `kura snapshots`.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::filter::FilterArgs;
use super::{output, Ctx};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Serialize)]
struct Row<'a> {
    id: String,
    short_id: String,
    #[serde(flatten)]
    snapshot: &'a kura::repo::snapshot::Snapshot,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let list = a.filter.filter().select(repo.snapshots()?);
    if ctx.json {
        let rows: Vec<Row> =
            list.iter().map(|(id, s)| Row { id: id.to_hex(), short_id: id.short(), snapshot: s }).collect();
        output::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<9} {:<19} {:<12} {:>10} {:<14} PATHS", "ID", "TIME", "HOST", "SIZE", "TAGS");
    for (id, s) in &list {
        let size = s.summary.as_ref().map_or(0, |x| x.bytes_total);
        let flag = if s.partial { " (partial)" } else { "" };
        println!(
            "{:<9} {:<19} {:<12} {:>10} {:<14} {}{flag}",
            id.short(),
            s.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S"),
            s.host,
            output::bytes(size),
            s.tags.join(","),
            s.paths.join(" "),
        );
    }
    println!("{} snapshots", list.len());
    Ok(ExitCode::SUCCESS)
}
