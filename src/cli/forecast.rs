//! `kura plan forecast`: predicted restore times and resources before any incident.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::recover::{load_plan, open_repo, Loaded, PlanArgs};
use super::{output, Ctx};
use kura::human::human_secs;
use kura::orchestrate::forecast::{self, SystemInput, ThroughputSource};
use kura::orchestrate::{choose_snapshot, target_for};
use kura::plan::Source;

#[derive(clap::Args)]
pub struct Args {
    /// The plan file (TOML; see docs/PLANS.md)
    file: std::path::PathBuf,
    /// The config declaring the systems [default: the plan's `config`, ./kura.toml, /etc/kura/kura.toml]
    #[arg(long, env = "KURA_CONFIG", value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// Predict a restore from the local repository or the remote site
    #[arg(long, value_parser = ["local", "remote"], default_value = "local")]
    from: String,
    /// Systems restored at the same time
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Throughput assumed for systems never drilled, e.g. "80MiB/s" [default: the median of all past drills, else 50MiB/s]
    #[arg(long, value_parser = parse_rate)]
    throughput: Option<f64>,
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

#[derive(Serialize)]
struct Resources {
    bytes_to_restore: u64,
    disk_per_target: BTreeMap<String, u64>,
    /// Distinct stored bytes read from the repository (after dedup, compressed and encrypted).
    bytes_to_fetch: u64,
    /// Pack objects read (GETs of whole packs or ranges of them).
    objects_to_fetch: usize,
    from: String,
}

#[derive(Serialize)]
struct Out {
    plan: String,
    parallel: usize,
    predicted: bool,
    systems: Vec<forecast::Row>,
    /// Predicted completion of the whole plan, seconds after the clock starts.
    total_secs: f64,
    deadlines_not_met: Vec<String>,
    resources: Resources,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let common = PlanArgs { plan: Some(a.file.clone()), config: a.config.clone(), from: None, parallel: a.parallel };
    let Loaded { config, plan } = load_plan(&common)?;
    let from = a.from.clone();
    let (repo, _) = open_repo(ctx, &config, &from)?;
    let state = ctx.state_read_only()?;
    let snapshots = repo.snapshots()?;
    let index = repo.load_index()?;
    let all: Vec<f64> =
        plan.systems.iter().flat_map(|s| state.drill_throughputs(&s.name).unwrap_or_default()).collect();
    let default = a.throughput.or_else(|| forecast::median(all)).unwrap_or(50.0 * 1048576.0);
    let mut inputs = vec![];
    let mut disk: BTreeMap<String, u64> = BTreeMap::new();
    let mut blobs: HashMap<kura::types::BlobId, u32> = HashMap::new();
    let mut packs: HashSet<kura::types::PackId> = HashSet::new();
    for s in &plan.systems {
        let bytes = match choose_snapshot(&snapshots, &s.source, None) {
            Some((id, snap)) => {
                let sub = s.subpath.clone().or_else(|| (snap.paths.len() == 1).then(|| snap.paths[0].clone()));
                let needs = kura::restore::needs(&repo, &index, id, snap, sub)?;
                for (pack, blob, len) in needs.blobs {
                    packs.insert(pack);
                    blobs.insert(blob, len);
                }
                needs.bytes
            }
            None => {
                let what = match &s.source {
                    Source::Tag(t) => format!("tagged {t}"),
                    Source::HostPaths { host, .. } => format!("of host {host}"),
                };
                eprintln!("warning: {}: no snapshot {what}; predicted as 0 bytes", s.name);
                0
            }
        };
        *disk.entry(target_for(s, None).display().to_string()).or_default() += bytes;
        let measured = state.drill_throughputs(&s.name)?;
        let count = measured.len();
        let overhead = last_overhead(&state, &s.name)?;
        inputs.push(match forecast::median(measured) {
            Some(t) => SystemInput {
                bytes,
                throughput: t,
                source: ThroughputSource::Drills { count },
                overhead_secs: overhead,
            },
            None => {
                SystemInput { bytes, throughput: default, source: ThroughputSource::Default, overhead_secs: overhead }
            }
        });
    }
    let parallel = a.parallel.max(1);
    let rows = forecast::simulate(&plan, &inputs, parallel);
    let total = rows.iter().map(|r| r.end_secs).fold(0.0, f64::max);
    let out = Out {
        plan: plan.name.clone(),
        parallel,
        predicted: true,
        deadlines_not_met: rows.iter().filter(|r| r.fits == Some(false)).map(|r| r.name.clone()).collect(),
        total_secs: total,
        resources: Resources {
            bytes_to_restore: inputs.iter().map(|i| i.bytes).sum(),
            disk_per_target: disk,
            bytes_to_fetch: blobs.values().map(|&l| l as u64).sum(),
            objects_to_fetch: packs.len(),
            from,
        },
        systems: rows,
    };
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
                ThroughputSource::Drills { count } => format!("{count} drills"),
                ThroughputSource::Default => "default".into(),
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

/// Seconds outside the restore (hooks) in the last successful drill of a system.
fn last_overhead(state: &kura::state::State, name: &str) -> Result<f64> {
    for run in state.recovery_runs(Some(kura::state::recovery::RunKind::Drill), None)?.iter().rev() {
        if let Some(s) = state
            .run_systems(run.id)?
            .into_iter()
            .find(|s| s.name == name && s.state == kura::orchestrate::queue::Phase::Done)
        {
            if let (Some(a), Some(b), Some(ms)) = (s.started_at, s.ended_at, s.restore_ms) {
                return Ok(((b - a).num_milliseconds() as f64 - ms as f64).max(0.0) / 1000.0);
            }
        }
    }
    Ok(0.0)
}
