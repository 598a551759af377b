//! `kura plan forecast`: predicted restore times and resources before any incident.

use std::process::ExitCode;

use anyhow::Result;

use super::recover::{load_plan, open_repo, Loaded, PlanArgs};
use super::{output, Ctx};
use kura::human::human_secs;
use kura::orchestrate::forecast::{self, Confidence, ForecastOptions, ThroughputSource};
use kura::report::Format;

impl Args {
    /// The plan file it reads.
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The plan file (TOML; see docs/PLANS.md)
    file: std::path::PathBuf,
    /// The config declaring the systems [default: the plan's `config`, ./kura.toml, /etc/kura/kura.toml]
    #[arg(long, env = "KURA_CONFIG", value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// Predict a restore from the local repository or the remote site
    #[arg(long, value_parser = super::recover::site_parser(), default_value = "local")]
    from: kura::state::recovery::Site,
    /// Systems restored at the same time
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Byte rate assumed for systems never drilled, e.g. "80MiB/s" [default: the cost model learned from all drills, else 50MiB/s]
    #[arg(long, value_parser = parse_rate)]
    throughput: Option<f64>,
    /// Write the forecast as a report: md, html, json or csv (see docs/REPORTS.md) [default: a table]
    #[arg(long)]
    format: Option<String>,
    /// With --format: write the report here (atomically) instead of to stdout
    #[arg(long, short, requires = "format")]
    output: Option<std::path::PathBuf>,
}

fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim().trim_end_matches("/s");
    let (num, mult) =
        [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("GB", 1_000_000_000), ("MB", 1_000_000), ("B", 1)]
            .iter()
            .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n.trim(), *m)))
            .unwrap_or((t, 1));
    num.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(|v| v * mult as f64)
        .ok_or_else(|| format!("{s:?} is not a rate: use e.g. 80MiB/s"))
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let common = PlanArgs { plan: Some(a.file.clone()), config: a.config.clone(), from: None, parallel: a.parallel };
    let Loaded { config, plan } = load_plan(&common)?;
    let format: Option<Format> = a.format.as_deref().map(str::parse).transpose()?;
    let (repo, _) = open_repo(ctx, &config, a.from)?;
    let state = ctx.state_read_only()?;
    let opts = ForecastOptions { from: a.from, parallel: a.parallel, throughput: a.throughput, now: ctx.now() };
    let out = forecast::assemble(&state, &repo, &plan, opts)?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(format) = format {
        let facts = out.facts(&plan, ctx.now());
        return super::report::emit(ctx, &facts, format, a.output);
    }
    let (parallel, total) = (out.parallel, out.total_secs);
    if ctx.json {
        output::print_json(&out)?;
    } else {
        println!("forecast (PREDICTED) for plan {}, {} in parallel:", out.plan, parallel);
        println!(
            "{:<16} {:>3} {:>10} {:>12} {:>10} {:>10} {:>9}  fits",
            "system", "pri", "size", "throughput", "start", "done", "deadline"
        );
        for r in &out.systems {
            let src = match r.throughput_source {
                ThroughputSource::Drills { count } => format!("{count} drill{}", if count == 1 { "" } else { "s" }),
                ThroughputSource::Default => "model".into(),
                ThroughputSource::Failovers { count } => {
                    format!("{count} measured failover{}", if count == 1 { "" } else { "s" })
                }
            };
            println!(
                "{:<16} {:>3} {:>10} {:>10}/s {:>10} {:>10} {:>9}  {} ({src})",
                r.name,
                r.priority,
                output::bytes(r.bytes),
                output::bytes(r.throughput_bytes_per_sec as u64),
                human_secs(r.start_secs as i64),
                human_secs(r.end_secs.ceil() as i64),
                r.deadline_secs.map(human_secs).unwrap_or_else(|| "none".into()),
                match (r.fits, r.margin_secs) {
                    (Some(true), Some(m)) => format!("yes, {} spare", human_secs(m)),
                    (Some(false), Some(m)) => format!("NO, late by {}", human_secs(-m)),
                    _ => "no deadline".into(),
                }
            );
        }
        println!("\nconfidence (what each figure learned from):");
        for r in &out.systems {
            println!("  {:<16} {}", r.name, confidence_line(&r.confidence, r.files, r.restore_secs));
        }
        let c = &out.costs;
        println!(
            "cost model ({} drills): {} ms per restore, {}/s, {:.0} µs per file or directory, {:.2} ms per pack object",
            out.drills_learned_from,
            (c.fixed_secs * 1000.0).round(),
            output::bytes(if c.secs_per_byte > 0.0 { (1.0 / c.secs_per_byte) as u64 } else { 0 }),
            c.secs_per_file * 1e6,
            c.secs_per_object * 1000.0
        );
        println!("\nwhole plan done after {} (predicted)", human_secs(total.ceil() as i64));
        if !out.deadlines_not_met.is_empty() {
            println!("deadlines that cannot be met as planned: {}", out.deadlines_not_met.join(", "));
        }
        let r = &out.resources;
        println!(
            "resources: {} to restore; {} in {} pack objects to fetch from the {} repository",
            output::bytes(r.bytes_to_restore),
            output::bytes(r.bytes_to_fetch),
            r.objects_to_fetch,
            r.from
        );
        for (t, b) in &r.disk_per_target {
            println!("  disk at {t}: {}", output::bytes(*b));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One system's confidence in words: its level, its restore figure, what it learned from.
fn confidence_line(c: &Confidence, files: u64, restore_secs: f64) -> String {
    format!("{}: restore {restore_secs:.2} s for {files} files; {}", c.level.as_str(), c.learned_from())
}
