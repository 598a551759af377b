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
    /// clean, suspect, learning, unmeasured (docs/DETECTION.md)
    verdict: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    false_positive: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let filter = a.filter.filter();
    let all = repo.snapshots()?;
    let fps = super::signals::false_positives(ctx, &repo.config().id)?;
    let assessed = kura::detect::assess_all(&all, &fps, &kura::detect::Rules::default());
    let verdict = |id: &kura::types::FileId| assessed.iter().find(|a| a.id == *id);
    let list = filter.select(all);
    if ctx.json {
        let rows: Vec<Row> = list
            .iter()
            .map(|(id, s)| Row {
                id: id.to_hex(),
                short_id: id.short(),
                snapshot: s,
                verdict: verdict(id).map_or("unmeasured", |a| a.verdict.label()),
                false_positive: verdict(id).is_some_and(|a| a.false_positive),
            })
            .collect();
        output::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<9} {:<19} {:<12} {:>10} {:<14} PATHS", "ID", "TIME", "HOST", "SIZE", "TAGS");
    for (id, s) in &list {
        let size = s.summary.as_ref().map_or(0, |x| x.bytes_total);
        let mut flag = if s.partial { " (partial)" } else { "" }.to_string();
        if verdict(id).is_some_and(|a| a.is_suspect()) {
            flag.push_str(" SUSPECT (kura signals)");
        }
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
